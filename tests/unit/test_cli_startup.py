"""The CLI starts fast: `--help` and `runs` import nothing heavy; heavy modules load only when
a command needs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = {"papermill", "nbformat", "nbclient", "jupyter_client", "zmq", "tornado", "networkx",
         "IPython", "docker", "pandas", "numpy", "pyarrow", "ipywidgets", "anywidget"}


def imported_by(*argv: str, cwd) -> set[str]:
    code = ("import atexit, json, sys\n"
            "atexit.register(lambda: print('\\n' + json.dumps(sorted(sys.modules))))\n"
            f"sys.argv = ['mlpipe', *{list(argv)!r}]\n"
            "from mlpipe_jupyter.ui.cli import main\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)
    return {m.split(".")[0] for m in json.loads(done.stdout.strip().splitlines()[-1])}


@pytest.mark.parametrize("argv, also_light", [
    (("--help",), {"rich"}),
    (("runs", "--json"), {"rich"}),
    (("runs",), set()),
])
def test_light_commands_import_nothing_heavy(tmp_path, argv, also_light):
    found = imported_by(*argv, cwd=tmp_path)
    assert "mlpipe_jupyter" in found
    assert not found & (HEAVY | also_light)
