"""Every usual kernelspec of the stock IPython kernel on this interpreter gets a forked step
kernel (stepkernel.stock_kernel_argv), and any other still starts exactly as it says.

A step's kernel is the kernelspec named `python3` (the step notebook's metadata; the pool's
default), found as jupyter_client finds it: the first `kernels/python3` on JUPYTER_PATH, then
the user's data directory (JUPYTER_PREFER_ENV_PATH=0 puts it before the environment's), then
sys.prefix's. Each test points all of these at its own tmp dirs, so the spec it means is the one
used (each checks the resource directory it was read from) and nothing is installed anywhere
else; HOME and IPYTHONDIR too, so `ipykernel install --user` writes into the tmp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlpipe_jupyter.kernels.fork import ForkedProcess
from mlpipe_jupyter.kernels.pool import KernelPool
from tests.conftest import run_cli, write_notebook
from tests.kernelkit import ask

INSTALLED = [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f",
             "{connection_file}"]  # what `python -m ipykernel install` writes, in any place
PROBE = ("import os, sys\n"
         "result = {'ppid': os.getppid(), 'xoptions': dict(sys._xoptions),\n"
         "          'frozen_os': os.__spec__.origin == 'frozen',\n"
         "          'debugpy': 'debugpy' in sys.modules, 'prefix': sys.prefix,\n"
         "          'wrapped': os.environ.get('MLPIPE_TEST_WRAPPED')}")
FROZEN_OFF = {"frozen_modules": "off"}


@pytest.fixture
def jupyter_dirs(tmp_path, monkeypatch) -> dict[str, Path]:
    dirs = {name: tmp_path / name for name in ("home", "data", "config", "ipython", "path")}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.setenv("HOME", str(dirs["home"]))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(dirs["data"]))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(dirs["config"]))
    monkeypatch.setenv("IPYTHONDIR", str(dirs["ipython"]))
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "0")
    monkeypatch.setenv("JUPYTER_PATH", str(dirs["path"]))
    for var in ("JUPYTER_RUNTIME_DIR", "PYTHONHASHSEED"):
        monkeypatch.delenv(var, raising=False)
    return dirs


def write_spec(kernels: Path, argv: list[str]) -> Path:
    spec = kernels / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps(
        {"argv": argv, "display_name": "Python 3 (test)", "language": "python"}))
    return spec


def ipykernel_install(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "ipykernel", "install", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# Each form: (the spec's resource directory, the interpreter options its kernel gets, what
# JUPYTER_PATH must be for jupyter_client to find it first: None to unset)
Form = tuple[Path, dict, "str | None"]


def shipped(dirs: dict[str, Path], tmp: Path) -> Form:
    """ipykernel's own spec, as its wheel puts it in share/jupyter (argv[0] `python`)."""
    source = Path(sys.prefix) / "share/jupyter/kernels/python3"
    assert json.loads((source / "kernel.json").read_text())["argv"][:3] == [
        "python", "-m", "ipykernel_launcher"]
    shutil.copytree(source, dirs["path"] / "kernels/python3")
    return dirs["path"] / "kernels/python3", {}, str(dirs["path"])


def prefix(dirs: dict[str, Path], tmp: Path) -> Form:
    ipykernel_install("--prefix", str(tmp / "prefix"))
    return (tmp / "prefix/share/jupyter/kernels/python3", FROZEN_OFF,
            str(tmp / "prefix/share/jupyter"))


def user(dirs: dict[str, Path], tmp: Path) -> Form:
    ipykernel_install("--user")  # into JUPYTER_DATA_DIR, first once JUPYTER_PATH is unset
    return dirs["data"] / "kernels/python3", FROZEN_OFF, None


def sys_prefix(dirs: dict[str, Path], tmp: Path) -> Form:
    """`--sys-prefix` as it runs, its sys.prefix (where it writes) moved to a tmp dir."""
    code = ("import sys\n"
            f"sys.prefix = {str(tmp / 'venv')!r}\n"
            "from ipykernel.kernelspec import InstallIPythonKernelSpecApp\n"
            "InstallIPythonKernelSpecApp.launch_instance(['--sys-prefix'])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return tmp / "venv/share/jupyter/kernels/python3", FROZEN_OFF, str(tmp / "venv/share/jupyter")


def this_interpreter_elsewhere(tmp: Path) -> str:
    """This interpreter by an absolute path that is not sys.executable, as a conda env's spec
    names it: through a symlink to the venv's directory (a symlink to a venv's python alone
    would start its base interpreter), or a symlink to the binary outside a venv."""
    if sys.prefix != sys.base_prefix:
        (tmp / "env").symlink_to(sys.prefix, target_is_directory=True)
        return str(tmp / "env/bin" / Path(sys.executable).name)
    (tmp / "bin").mkdir()
    (tmp / "bin/python").symlink_to(sys.executable)
    return str(tmp / "bin/python")


def conda_style(dirs: dict[str, Path], tmp: Path) -> Form:
    python = this_interpreter_elsewhere(tmp)
    assert python != sys.executable
    spec = write_spec(dirs["path"] / "kernels", [python, *INSTALLED[1:]])
    return spec, FROZEN_OFF, str(dirs["path"])


@pytest.mark.parametrize("form", [shipped, prefix, user, sys_prefix, conda_style],
                         ids=lambda f: f.__name__)
def test_a_stock_kernelspec_is_forked(form, jupyter_dirs, tmp_path, monkeypatch):
    resource_dir, xoptions, jupyter_path = form(jupyter_dirs, tmp_path)
    if jupyter_path is None:
        monkeypatch.delenv("JUPYTER_PATH")
    else:
        monkeypatch.setenv("JUPYTER_PATH", jupyter_path)
    if form is not shipped and form is not conda_style:  # written by ipykernel itself
        assert json.loads((resource_dir / "kernel.json").read_text())["argv"] == INSTALLED
    work = tmp_path / "work"
    work.mkdir()
    pool = KernelPool(size=0, expected=1)
    try:
        kernel = pool.acquire(work, {})
        assert Path(kernel.km.kernel_spec.resource_dir) == resource_dir  # the spec meant
        assert isinstance(kernel.process, ForkedProcess)
        zygote = pool._zygote.process.pid
        parent = Path(f"/proc/{zygote}/cmdline").read_text().split("\0")
        seen = ask(pool, kernel, PROBE)
        assert seen["ppid"] == zygote and "mlpipe_jupyter.kernels.zygote" in parent
        # the spec's flags are the kernel's: the zygote was started with them
        assert seen["xoptions"] == xoptions
        assert ("-Xfrozen_modules=off" in parent) == bool(xoptions)
        assert seen["frozen_os"] == (not xoptions)  # os imported from its source, or not
        assert not seen["debugpy"]  # the step launcher, as for any stock kernel
    finally:
        pool.shutdown()


def test_a_spec_changed_after_the_zygote_started_starts_as_it_says(jupyter_dirs, tmp_path):
    """The zygote has the flags of the spec when the run started; a kernel whose spec then
    says otherwise is not forked (it would not get those flags), but still gets the step
    launcher, with its own flags."""
    spec = write_spec(jupyter_dirs["path"] / "kernels", ["python", "-m", "ipykernel_launcher",
                                                          "-f", "{connection_file}"])
    pool = KernelPool(size=0, expected=2)
    try:
        assert pool._zygote is not None and pool._zygote.flags == ()
        write_spec(spec.parent, INSTALLED)
        kernel = pool.acquire(tmp_path, {})
        assert not isinstance(kernel.process, ForkedProcess)
        seen = ask(pool, kernel, PROBE)
        assert seen["ppid"] == os.getpid() and seen["xoptions"] == FROZEN_OFF
        assert not seen["debugpy"]  # started through mlpipe_jupyter.kernels.stepkernel all the same
    finally:
        pool.shutdown()


def unknown_flag(tmp: Path) -> tuple[list[str], dict]:
    """A flag not honoured in a fork: the kernel starts with it, through ipykernel_launcher."""
    return [sys.executable, "-X", "importtime", "-m", "ipykernel_launcher", "-f",
            "{connection_file}"], {"xoptions": {"importtime": True}, "debugpy": True}


def another_interpreter(tmp: Path) -> tuple[list[str], dict]:
    """A venv of its own (the same base interpreter) that sees this one's packages."""
    other = tmp / "other"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(other)], check=True, timeout=120)
    site = next(other.glob("lib/python*/site-packages"))
    ours = [p for p in sys.path if p.endswith("site-packages")]
    (site / "ours.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n"
                                           for p in ours))
    return [str(other / "bin/python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"], {
        "prefix": str(other), "debugpy": True}


def wrapper_script(tmp: Path) -> tuple[list[str], dict]:
    (tmp / "bin").mkdir(exist_ok=True)
    script = tmp / "bin/kernel-python"
    script.write_text(f"#!/bin/sh\nMLPIPE_TEST_WRAPPED=yes exec {sys.executable} \"$@\"\n")
    script.chmod(0o755)
    return [str(script), "-m", "ipykernel_launcher", "-f", "{connection_file}"], {
        "wrapped": "yes", "debugpy": True}


@pytest.mark.parametrize("when", ["from the start", "after the zygote started"])
@pytest.mark.parametrize("form", [unknown_flag, another_interpreter, wrapper_script],
                         ids=lambda f: f.__name__)
def test_any_other_kernelspec_is_not_forked_and_runs(form, when, jupyter_dirs, tmp_path):
    argv, expected = form(tmp_path)
    kernels = jupyter_dirs["path"] / "kernels"
    if when == "after the zygote started":
        write_spec(kernels, ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    else:
        write_spec(kernels, argv)
    pool = KernelPool(size=0, expected=1)
    try:
        # a spec of no stock kernel starts no zygote; one there already forks nothing of this
        assert (pool._zygote is None) == (when == "from the start")
        write_spec(kernels, argv)
        kernel = pool.acquire(tmp_path, {})
        assert kernel.km.kernel_spec.argv == argv
        assert not isinstance(kernel.process, ForkedProcess)
        seen = ask(pool, kernel, PROBE)
        assert seen["ppid"] == os.getpid()
        assert {k: seen[k] for k in expected} == expected
    finally:
        pool.shutdown()


def test_a_run_forks_step_kernels_with_an_installed_spec(jupyter_dirs, tmp_path, monkeypatch):
    """The whole path: `mlpipe run`, its step notebook's kernel `python3` found through
    JUPYTER_PATH as `ipykernel install --prefix` left it; the step sees the zygote as its
    parent."""
    monkeypatch.delenv("MLPIPE_HOME", raising=False)
    ipykernel_install("--prefix", str(tmp_path / "prefix"))
    write_notebook(tmp_path / "nb.ipynb", [
        "%%step probe --outputs parent\n"
        "import os, sys\n"
        "parent = {'cmdline': open(f'/proc/{os.getppid()}/cmdline').read().split('\\0'),\n"
        "          'xoptions': dict(sys._xoptions)}"])
    result = run_cli("run", "nb.ipynb", "--executor", "local", cwd=tmp_path,
                     env={"JUPYTER_PATH": str(tmp_path / "prefix/share/jupyter")})
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)[0]
    digest = run["steps"][0]["outputs"]["parent"]
    seen = json.loads((tmp_path / ".mlpipe/artifacts" / digest / "data/value.json").read_text())
    assert "mlpipe_jupyter.kernels.zygote" in seen["cmdline"]
    assert "-Xfrozen_modules=off" in seen["cmdline"]
    assert seen["xoptions"] == FROZEN_OFF
