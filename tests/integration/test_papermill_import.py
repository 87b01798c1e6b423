"""The runner imports papermill without what a step notebook never needs (rfc3987_syntax's
grammar compile: 0.8 s; pyarrow.fs), however the kernel pool's thread is timed against it, and
a user's interactive session keeps everything its own code may import."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import write_notebook

PROBE = ("import atexit, json, sys\n"
         "atexit.register(lambda: print(json.dumps({m: m in sys.modules for m in\n"
         "    ('papermill', 'rfc3987_syntax', 'pyarrow.fs', 'ipykernel')})))\n"
         "sys.argv = ['mlpipe', 'run', 'nb.ipynb', '--executor', 'local', '--no-cache']\n"
         "from mlpipe_jupyter.ui.cli import main\n"
         "main()\n")


def test_a_run_never_imports_what_steps_do_not_need(tmp_path):
    write_notebook(tmp_path / "nb.ipynb", ["%%step a --outputs n\nn = 1"])
    for _ in range(6):  # the race with the pool's thread showed in about 1 run in 3
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                              cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen == {"papermill": True, "rfc3987_syntax": False, "pyarrow.fs": False,
                        "ipykernel": True}, seen


def test_in_a_user_session_nothing_is_hidden():
    code = ("import sys\n"
            "from IPython.core.interactiveshell import InteractiveShell\n"
            "InteractiveShell.instance()\n"
            "from mlpipe_jupyter.step.engine import import_papermill\n"
            "import_papermill()\n"
            "import importlib.util\n"
            "print(importlib.util.find_spec('rfc3987_syntax') is None or "
            "'rfc3987_syntax' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
