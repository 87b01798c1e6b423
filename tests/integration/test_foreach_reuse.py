"""Per-mini-batch reuse on real kernels: a rerun after items were added, or after a failure,
or after the runner was SIGKILLed mid-step, runs only the batches without a result (counted
by the side effects each batch writes)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.conftest import MLPIPE, run_cli, wait_exited, wait_for, write_notebook
from tests.foreachkit import marks, run, value

SCORE = ("%%step score --foreach nums --batch-size 5 --workers 2 --inputs nums --outputs sq\n"
         "import os\nopen(os.environ['MARK'] + '/log', 'a').write(f'{nums[0]}\\n')\n"
         "sq = [n * n for n in nums]")


def ran(mark: Path) -> list[int]:
    """The first item of each batch that ran, in no particular order; then forgotten."""
    log = mark / "log"
    lines = sorted(int(v) for v in log.read_text().split()) if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def test_a_rerun_with_items_added_runs_only_the_changed_batches(tmp_path, monkeypatch):
    _mark = marks(tmp_path, monkeypatch)
    runner, _ = run(tmp_path, ["%%step make --outputs nums\nnums = list(range(20))", SCORE])
    assert runner.state == "succeeded" and ran(_mark) == [0, 5, 10, 15]
    runner, records = run(tmp_path, ["%%step make --outputs nums\nnums = list(range(22))",
                                     SCORE])
    assert runner.state == "succeeded"
    assert ran(_mark) == [20]  # the four earlier batches are unchanged
    assert value(runner, "score", "sq") == [n * n for n in range(22)]
    assert records.steps["score"]["reason"] == ("input `nums` changed; 4 of 5 mini-batches "
                                                "reused")
    assert records.steps["score"]["fanout"]["batches"]["cached"] == 4


def test_a_rerun_after_a_failure_runs_only_the_failed_batches(tmp_path, monkeypatch):
    _mark = marks(tmp_path, monkeypatch)
    flaky = SCORE.replace("sq = ", "if nums[0] == 5 and os.path.exists(os.environ['MARK'] + "
                                   "'/fail'):\n    raise RuntimeError('flaky')\nsq = ")
    (_mark / "fail").touch()
    cells = ["%%step make --outputs nums\nnums = list(range(20))", flaky]
    runner, records = run(tmp_path, cells)
    assert runner.state == "failed" and ran(_mark) == [0, 5, 10, 15]
    (_mark / "fail").unlink()
    runner, records = run(tmp_path, cells)
    assert runner.state == "succeeded" and ran(_mark) == [5]
    assert value(runner, "score", "sq") == [n * n for n in range(20)]
    assert records.steps["score"]["reason"].endswith("; 3 of 4 mini-batches reused")


def test_a_rerun_after_the_runner_was_killed_runs_only_unfinished_batches(tmp_path, monkeypatch):
    _mark = marks(tmp_path, monkeypatch)
    write_notebook(tmp_path / "p.ipynb", [
        "%load_ext mlpipe_jupyter",
        "%%step make --outputs nums\nnums = list(range(6))",
        "%%step score --foreach nums --workers 1 --inputs nums --outputs sq\n"
        "import os, time\nmark = os.environ['MARK']\n"
        "open(mark + '/log', 'a').write(f'{nums[0]}\\n')\n"
        "while nums[0] == 3 and not os.path.exists(mark + '/go'):\n    time.sleep(0.05)\n"
        "sq = [n * n for n in nums]"])
    env = {**os.environ, "MARK": str(_mark)}
    env.pop("MLPIPE_HOME", None)
    runner = subprocess.Popen([MLPIPE, "run", "p.ipynb", "--executor", "local"], cwd=tmp_path,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: "3" in (_mark / "log").read_text().split() if (_mark / "log").exists()
                 else False, "batch 3 to start", timeout=120)
    finally:
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
    wait_exited(runner.pid, what="the killed runner")
    assert ran(_mark) == [0, 1, 2, 3]
    (_mark / "go").touch()
    result = run_cli("run", "p.ipynb", "--executor", "local", cwd=tmp_path,
                     env={"MARK": str(_mark)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert ran(_mark) == [3, 4, 5]  # 0, 1 and 2 finished before the kill
    assert "3 of 6 mini-batches reused" in result.stdout


def test_a_rerun_after_failures_within_the_threshold_runs_only_the_failed_batches(
        tmp_path, monkeypatch):
    _mark = marks(tmp_path, monkeypatch)
    flaky = SCORE.replace("--workers 2", "--workers 2 --max-failures 1").replace(
        "sq = ", "if nums[0] == 5 and os.path.exists(os.environ['MARK'] + '/fail'):\n"
                 "    raise RuntimeError('flaky')\nsq = ")
    (_mark / "fail").touch()
    cells = ["%%step make --outputs nums\nnums = list(range(20))", flaky]
    runner, records = run(tmp_path, cells)
    assert runner.state == "succeeded" and ran(_mark) == [0, 5, 10, 15]
    assert value(runner, "score", "sq") == [n * n for n in range(20) if not 5 <= n < 10]
    (_mark / "fail").unlink()
    runner, records = run(tmp_path, cells)  # not reused whole: its batch 5-9 is missing
    assert runner.state == "succeeded" and ran(_mark) == [5]
    assert value(runner, "score", "sq") == [n * n for n in range(20)]
    assert records.steps["score"]["reason"].startswith("1 mini-batch failed in run ")
    assert records.steps["score"]["reason"].endswith("; 3 of 4 mini-batches reused")
    runner, records = run(tmp_path, cells)  # complete now: reused whole
    assert records.steps["score"]["state"] == "cached" and ran(_mark) == []


def test_no_cache_runs_every_batch_again_and_keeps_the_new_results(tmp_path, monkeypatch):
    _mark = marks(tmp_path, monkeypatch)
    score = SCORE.replace("sq = [n * n for n in nums]",
                          "sq = [n * n + len(open(os.environ['MARK'] + '/extra').read()) "
                          "for n in nums]")
    cells = ["%%step make --outputs nums\nnums = list(range(10))", score]
    (_mark / "extra").write_text("")
    runner, _ = run(tmp_path, cells)
    assert runner.state == "succeeded" and ran(_mark) == [0, 5]
    (_mark / "extra").write_text("x")  # a change the key cannot see: what --no-cache is for
    runner, records = run(tmp_path, cells, no_cache=True)
    assert runner.state == "succeeded" and ran(_mark) == [0, 5]  # no earlier batch reused
    assert records.steps["score"]["fanout"]["batches"]["cached"] == 0
    assert records.steps["score"]["reason"] == "--no-cache"
    assert value(runner, "score", "sq") == [n * n + 1 for n in range(10)]
    runner, _ = run(tmp_path, ["%%step make --outputs nums\nnums = list(range(12))", score])
    assert ran(_mark) == [10]  # the others reused: the results of the --no-cache run
    assert value(runner, "score", "sq") == [n * n + 1 for n in range(12)]
