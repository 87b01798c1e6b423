"""The local executor's warm kernel pool: a fresh kernel per step, in the step's directory with
its environment, and no kernel left behind after a run, a timeout or a cancel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from mlpipe_jupyter.kernels.pool import KernelPool, PoolClosed
from mlpipe_jupyter.model.notebook import read_pipeline
from mlpipe_jupyter.run.runner import PipelineRunner, RunOptions
from tests.conftest import run_cli, wait_for, write_notebook
from tests.kernelkit import marked_processes, wait_gone

FRESH = [
    "%load_ext mlpipe_jupyter",
    "%%step a --outputs pid_a\n"
    "import os, sys\n"
    "leak = 1\n"
    "sys.mlpipe_leak = 1\n"
    "pid_a = os.getpid()",
    "%%step b --inputs pid_a --outputs seen --env COLOUR=green\n"
    "import os, sys\n"
    "seen = {'leak': 'leak' in globals(), 'sys_leak': hasattr(sys, 'mlpipe_leak'),\n"
    "        'same_pid': os.getpid() == pid_a, 'cwd': os.getcwd(),\n"
    "        'colour': os.environ.get('COLOUR'), 'step': os.environ.get('MLPIPE_STEP'),\n"
    "        'dh': str(_dh[0]), 'names': sorted(n for n in globals() if 'mlpipe' in n)}",
    "%%step c --after b --outputs hashseed --env PYTHONHASHSEED=0\n"
    "import sys\n"
    "hashseed = sys.flags.hash_randomization",
    "%%step d --after c --outputs out.txt\n"
    "fh = open('out.txt', 'w')\n"
    "fh.write('x' * 100)  # never closed: the kernel's exit flushes it",
]


def test_each_step_gets_a_fresh_kernel_in_its_directory(tmp_path):
    mark = uuid.uuid4().hex
    write_notebook(tmp_path / "nb.ipynb", FRESH)
    result = run_cli("run", "nb.ipynb", "--executor", "local", "--max-parallel", "1",
                     cwd=tmp_path, env={"MLPIPE_TEST_MARK": mark})
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)[0]
    outputs = {s["name"]: s["outputs"] for s in run["steps"]}
    art = tmp_path / ".mlpipe/artifacts"
    seen = json.loads((art / outputs["b"]["seen"] / "data/value.json").read_text())
    workdir = tmp_path / ".mlpipe/runs" / run["id"] / "b/work"
    assert seen == {"leak": False, "sys_leak": False, "same_pid": False, "cwd": str(workdir),
                    "colour": "green", "step": "b", "dh": str(workdir),
                    "names": ["_mlpipe_io", "_mlpipe_runtime"]}
    # PYTHONHASHSEED is read at interpreter start: that step got a kernel started for it
    assert json.loads((art / outputs["c"]["hashseed"] / "data/value.json").read_text()) == 0
    assert (art / outputs["d"]["out.txt"] / "data/out.txt").read_text() == "x" * 100
    assert wait_gone(mark) == []


def test_timeout_kills_the_kernel_and_nothing_stays(tmp_path):
    mark = uuid.uuid4().hex
    write_notebook(tmp_path / "nb.ipynb", [
        "%%step first --outputs n\nn = 1",
        "%%step slow --inputs n --timeout 2\nimport time\ntime.sleep(60)",
        "%%step after --after slow\nx = 1",
    ])
    started = time.monotonic()
    result = run_cli("run", "nb.ipynb", "--executor", "local", cwd=tmp_path,
                     env={"MLPIPE_TEST_MARK": mark})
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    run = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)[0]
    states = {s["name"]: s["state"] for s in run["steps"]}
    assert states == {"first": "succeeded", "slow": "failed", "after": "skipped"}
    assert "timed out after 2 s" in run["steps"][1]["error"]["message"]
    assert wait_gone(mark) == []


def test_cancel_stops_running_and_pooled_kernels(tmp_path, monkeypatch):
    mark = uuid.uuid4().hex
    monkeypatch.setenv("MLPIPE_TEST_MARK", mark)  # inherited by every kernel of this run
    monkeypatch.delenv("MLPIPE_HOME", raising=False)
    path = write_notebook(tmp_path / "nb.ipynb", [
        "%%step first --outputs n\nn = 1",
        "%%step slow --inputs n\nimport time\ntime.sleep(60)",
        "%%step later --after slow\nx = 1",
    ])
    runner = PipelineRunner(read_pipeline(path), notebook=str(path), base_dir=tmp_path,
                            options=RunOptions(executor="local", max_parallel=1))
    final: list[str] = []
    thread = threading.Thread(target=lambda: final.append(runner.run()))
    thread.start()
    wait_for(lambda: runner.states.get("slow") == "running", "step `slow` running")
    # the step's kernel and a warm one started for `later`
    wait_for(lambda: len(marked_processes(mark)) >= 2,
             lambda: f"two kernels: {marked_processes(mark)}", 30)
    runner.cancel()
    thread.join(30)
    assert not thread.is_alive()
    assert final == ["cancelled"]
    assert runner.states == {"first": "succeeded", "slow": "cancelled", "later": "cancelled"}
    assert wait_gone(mark) == []


def test_pool_hands_out_each_kernel_once_and_shuts_down(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    pool = KernelPool(size=1, expected=2)
    try:
        a = pool.acquire(first, {"MLPIPE_STEP": "one"}, timeout=60)
        wait_for(lambda: len(pool.alive()) == 2, "the warm kernel", 30)
        b = pool.acquire(second, {"MLPIPE_STEP": "two"}, timeout=60)
        assert b.warm and not a.warm
        assert a.process.pid != b.process.pid
        assert Path(os.readlink(f"/proc/{b.process.pid}/cwd")) == second
        assert len(pool.alive()) == 2  # nothing more is expected: no third kernel
        pool.release(a)
        assert a.process.poll() is not None
    finally:
        pool.shutdown()
    assert pool.alive() == []
    assert b.process.poll() is not None
    with pytest.raises(PoolClosed):
        pool.acquire(first, {})


def test_a_fully_reused_run_starts_no_kernel(tmp_path, monkeypatch):
    monkeypatch.delenv("MLPIPE_HOME", raising=False)
    write_notebook(tmp_path / "nb.ipynb", ["%%step a --outputs n\nn = 1",
                                           "%%step b --inputs n --outputs m\nm = n + 1"])
    assert run_cli("run", "nb.ipynb", "--executor", "local", cwd=tmp_path).returncode == 0
    code = ("import atexit, json, sys\n"
            "atexit.register(lambda: print(json.dumps(sorted(sys.modules))))\n"
            "sys.argv = ['mlpipe', 'run', 'nb.ipynb', '--executor', 'local']\n"
            "from mlpipe_jupyter.ui.cli import main\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reused from run" in done.stdout
    modules = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not modules & {"papermill", "nbclient", "jupyter_client", "mlpipe_jupyter.kernels.pool"}
