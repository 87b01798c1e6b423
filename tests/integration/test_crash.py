"""A runner killed with SIGKILL, or interrupted with Ctrl-C, leaves a consistent history, no
visible partial artifact and no kernel behind; the next run reuses what had succeeded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from tests.conftest import MLPIPE, run_cli, wait_exited, wait_for, write_notebook

CELLS = [
    "%%step first --outputs a\na = list(range(1000))",
    "%%step second --inputs a --outputs b\nimport os, time\n"
    "open('../../kernel-pid-' + os.environ['MLPIPE_RUN_ID'], 'w').write(str(os.getpid()))\n"
    "time.sleep(60)\nb = a",
]


def start_run(cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MLPIPE_HOME"}
    return subprocess.Popen([MLPIPE, "run", "p.ipynb", "--executor", "local"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def wait_for_second_running(cwd: Path, timeout: float = 60) -> tuple[str, int]:
    def started() -> Path | None:
        pids = list((cwd / ".mlpipe/runs").glob("*/kernel-pid-*"))
        return pids[0] if pids and pids[0].read_text() else None

    found = wait_for(started, "step `second` to start", timeout, every=0.2)
    return found.name.removeprefix("kernel-pid-"), int(found.read_text())


def test_sigkill_mid_run(tmp_path):
    write_notebook(tmp_path / "p.ipynb", CELLS)
    proc = start_run(tmp_path)
    run_id, kernel_pid = wait_for_second_running(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    # the next command that opens the store marks the run failed: interrupted
    run = json.loads(run_cli("show", run_id, "--json", cwd=tmp_path).stdout)
    assert run["state"] == "failed" and run["reason"] == "interrupted"
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["first"]["state"] == "succeeded"
    assert steps["second"]["state"] == "failed" and steps["second"]["reason"] == "interrupted"
    # the kernel notices its parent died and exits; no half-published artifact is visible
    wait_exited(kernel_pid, what="the step's kernel, its runner gone")
    artifacts = tmp_path / ".mlpipe/artifacts"
    assert all((d / "meta.json").is_file() for d in artifacts.iterdir()
               if not d.name.startswith("."))  # .staging, .stamps: the store's own
    assert not (artifacts / ".staging" / run_id).exists()
    # re-running reuses the step that had succeeded
    cells = [CELLS[0], CELLS[1].replace("time.sleep(60)", "")]
    write_notebook(tmp_path / "p.ipynb", cells)
    result = run_cli("run", "p.ipynb", "--executor", "local", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    latest = json.loads(run_cli("runs", "--json", "-n", "1", cwd=tmp_path).stdout)[0]
    assert {s["name"]: s["state"] for s in latest["steps"]} == {"first": "cached",
                                                                "second": "succeeded"}


def test_ctrl_c_cancels_and_stops_kernels(tmp_path):
    write_notebook(tmp_path / "p.ipynb", CELLS)
    proc = start_run(tmp_path)
    run_id, kernel_pid = wait_for_second_running(tmp_path)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    assert f"interrupted: run {run_id} cancelled" in out
    wait_exited(kernel_pid, 5, what="the step's kernel")
    run = json.loads(run_cli("show", run_id, "--json", cwd=tmp_path).stdout)
    assert run["state"] == "cancelled"
    assert {s["name"]: s["state"] for s in run["steps"]} == {"first": "succeeded",
                                                             "second": "cancelled"}
