"""The wheel as a user gets it: built from this repo with the prebuilt JupyterLab extension in
it, installed into a new venv, and there both of mlpipe's Jupyter extensions are found and
enabled by Jupyter's own commands.

The new venv gets a real install from the lock: the wheel, its declared dependencies and
JupyterLab, `pip install -c requirements/constraints.txt`. A venv that borrowed the project
venv's packages (a .pth file) would be faster, but it would hide a dependency the wheel forgot to
declare and would have no console scripts of its own (`jupyter labextension` runs
`jupyter-labextension` from the venv's bin/). The pins are the versions `make` installed, so
pip takes every one from its cache: about 30 s here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT

LOCK = ROOT / "requirements" / "constraints.txt"
BUILT_LABEXT = ROOT / "mlpipe_jupyter" / "labextension" / "package.json"
LABEXT_IN_WHEEL = "data/share/jupyter/labextensions/mlpipe-jupyter/package.json"
SERVER_CONFIG_IN_WHEEL = "data/etc/jupyter/jupyter_server_config.d/mlpipe_jupyter.json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    out = ANSI.sub("", done.stdout + done.stderr)
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}):\n{out[-4000:]}"
    return out


def _sections(listing: str) -> dict[str, list[str]]:
    """`jupyter ... list` output as {header line: [the indented lines under it]}."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in listing.splitlines():
        if line.strip() and not line[0].isspace():
            current = line.strip()
            found.setdefault(current, [])
        elif line.strip():
            found.setdefault(current, []).append(line.strip())
    return found


def test_wheel_installs_both_jupyter_extensions_enabled(tmp_path):
    assert BUILT_LABEXT.is_file(), (
        f"{BUILT_LABEXT.relative_to(ROOT)} is missing: the JupyterLab extension is not built, "
        "and a wheel built now would not carry it. Run `make labextension` (make test does).")
    left_before = {d: (ROOT / d).exists() for d in ("build", "dist")}
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "JUPYTER_PATH",
                        "JUPYTER_CONFIG_PATH", "MLPIPE_HOME")}
    # nothing from this user's Jupyter dirs: only what the new venv itself holds
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "jupyter-config")
    env["JUPYTER_DATA_DIR"] = str(tmp_path / "jupyter-data")

    # the locked build backend, in the project venv (no isolated build env to download)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist),
          str(ROOT)], env, cwd=tmp_path)
    wheels = list(dist.glob("mlpipe_jupyter-*.whl"))
    assert len(wheels) == 1, wheels
    wheel = wheels[0]
    assert {d: (ROOT / d).exists() for d in ("build", "dist")} == left_before, (
        "building the wheel left build/ or dist/ in the repo")

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        data_dirs = {n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".data")}
        assert len(data_dirs) == 1, f"no shared data (share/, etc/) in the wheel: {names}"
        data = data_dirs.pop()
        assert f"{data}/{LABEXT_IN_WHEEL}" in names, names
        assert f"{data}/{SERVER_CONFIG_IN_WHEEL}" in names, names
        labext = json.loads(zf.read(f"{data}/{LABEXT_IN_WHEEL}"))
        config = json.loads(zf.read(f"{data}/{SERVER_CONFIG_IN_WHEEL}"))
    assert labext["name"] == "mlpipe-jupyter"
    assert labext["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")  # built
    assert config == {"ServerApp": {"jpserver_extensions": {"mlpipe_jupyter": True}}}

    # a new venv without pip of its own: the project venv's (locked) pip installs into it
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], env, cwd=tmp_path)
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
          "-q", "-c", str(LOCK), str(wheel), "jupyterlab"], env, cwd=tmp_path, timeout=600)
    installed = _run([str(venv / "bin" / "python"), "-c",
                      "import mlpipe_jupyter, sys; print(mlpipe_jupyter.__file__)"],
                     env, cwd=tmp_path)
    assert Path(installed.strip()).is_relative_to(venv), installed  # the wheel's, not the repo's

    labexts = _sections(_run([str(venv / "bin" / "jupyter"), "labextension", "list"],
                             env, cwd=tmp_path))
    venv_share = str(venv / "share" / "jupyter" / "labextensions")
    assert venv_share in labexts, labexts
    mine = [line for line in labexts[venv_share] if line.startswith("mlpipe-jupyter ")]
    assert len(mine) == 1 and re.match(r"mlpipe-jupyter v\S+ enabled OK", mine[0]), labexts

    servers = _sections(_run([str(venv / "bin" / "jupyter"), "server", "extension", "list"],
                             env, cwd=tmp_path))
    venv_config = f"Config dir: {venv / 'etc' / 'jupyter'}"
    assert venv_config in servers, servers
    assert "mlpipe_jupyter enabled" in servers[venv_config], servers
    assert any(re.fullmatch(r"mlpipe_jupyter \S+ OK", line) for line in servers[venv_config]), (
        servers)  # validated: the extension imports and has its entry points
