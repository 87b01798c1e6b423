"""Reuse that explains itself, partial runs, retries, timeouts, --fail-fast, on real kernels
through the real CLI (local executor)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_notebook

PIPELINE = [
    "%load_ext mlpipe_jupyter",
    "%%pipeline_params\nalpha = 2\nunused = 'x'",
    "%%step load --inputs data.csv --outputs rows\n"
    "rows = [int(v) for v in open('data.csv').read().split()]",
    "%%step fit --outputs model\nmodel = {'w': alpha * sum(rows)}",
    "%%step report --inputs model --outputs out.json\n"
    "import json\njson.dump(model, open('out.json', 'w'))",
]


def states(cwd: Path) -> dict[str, tuple[str, str]]:
    run = json.loads(run_cli("runs", "--json", "-n", "1", cwd=cwd).stdout)[0]
    return {s["name"]: (s["state"], s["reason"]) for s in run["steps"]}


def run_ok(cwd: Path, *args: str, executor: str = "local") -> str:
    result = run_cli("run", "p.ipynb", "--executor", executor, *args, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def pipeline(tmp_path):
    (tmp_path / "data.csv").write_text("1 2 3")
    write_notebook(tmp_path / "p.ipynb", PIPELINE)
    return tmp_path


def test_reuse_matrix(pipeline):
    first_out = run_ok(pipeline)
    first = states(pipeline)
    assert {n: s for n, (s, _) in first.items()} == dict.fromkeys(first, "succeeded")
    assert all(reason == "no earlier run" for _, reason in first.values())
    assert "no earlier run" in first_out  # reasons show in the CLI summary
    first_id = json.loads(run_cli("runs", "--json", cwd=pipeline).stdout)[0]["id"]

    # nothing changed: all cached, pointing at the run they reused
    run_ok(pipeline)
    assert states(pipeline) == dict.fromkeys(
        first, ("cached", f"reused from run {first_id}"))

    # a parameter no step reads: nothing re-runs
    run_ok(pipeline, "-p", "unused='y'")
    assert {s for s, _ in states(pipeline).values()} == {"cached"}

    # a parameter `fit` reads: fit re-runs and says why; load does not
    run_ok(pipeline, "-p", "alpha=3")
    now = states(pipeline)
    assert now["load"][0] == "cached"
    assert now["fit"] == ("succeeded", "parameter `alpha` changed")
    assert now["report"] == ("succeeded", "input `model` changed")

    # the input file's content changed under the same name
    (pipeline / "data.csv").write_text("1 2 4")
    run_ok(pipeline, "-p", "alpha=3")
    now = states(pipeline)
    assert now["load"] == ("succeeded", "input `data.csv` changed")
    assert now["fit"] == ("succeeded", "input `rows` changed")

    # code of one step changed: it and what its new output feeds re-run
    cells = list(PIPELINE)
    cells[3] = "%%step fit --outputs model\nmodel = {'w': alpha * sum(rows) + 1}"
    write_notebook(pipeline / "p.ipynb", cells)
    run_ok(pipeline, "-p", "alpha=3")
    now = states(pipeline)
    assert now["load"][0] == "cached"
    assert now["fit"] == ("succeeded", "code changed")
    assert now["report"] == ("succeeded", "input `model` changed")

    # a change that does not change the output: downstream is reused (content addressing)
    cells[3] = "%%step fit --outputs model\n# same result\nmodel = {'w': alpha * sum(rows) + 1}"
    write_notebook(pipeline / "p.ipynb", cells)
    run_ok(pipeline, "-p", "alpha=3")
    now = states(pipeline)
    assert now["fit"] == ("succeeded", "code changed")
    assert now["report"][0] == "cached"

    shown = run_cli("show", json.loads(run_cli("runs", "--json", cwd=pipeline).stdout)[0]["id"],
                    cwd=pipeline).stdout
    assert "code changed" in shown and "reused from run" in shown


def test_no_cache_on_run_and_on_step(pipeline):
    run_ok(pipeline)
    run_ok(pipeline, "--no-cache")
    assert {v for v in states(pipeline).values()} == {("succeeded", "--no-cache")}
    cells = list(PIPELINE)
    cells[3] = cells[3].replace("--outputs model", "--outputs model --no-cache")
    write_notebook(pipeline / "p.ipynb", cells)
    run_ok(pipeline)
    now = states(pipeline)
    assert now["load"][0] == "cached" and now["fit"] == ("succeeded", "--no-cache")


EXECUTORS = ["local", "docker"]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_partial_runs(pipeline, executor):
    refused = run_cli("run", "p.ipynb", "--executor", executor, "--only", "report", cwd=pipeline)
    assert refused.returncode == 2  # refused before it starts: nothing ran, nothing recorded
    assert "step `load` is not selected and has no earlier successful run" in refused.stderr
    run_ok(pipeline, executor=executor)
    out = run_ok(pipeline, "--only", "fit", "-p", "alpha=5", executor=executor)
    now = states(pipeline)
    assert set(now) == {"load", "fit"}  # report is neither run nor needed
    assert now["load"][0] == "cached" and now["fit"] == ("succeeded", "parameter `alpha` changed")
    assert "fit" in out
    run_ok(pipeline, "--from", "fit", "-p", "alpha=6", executor=executor)
    now = states(pipeline)
    assert now["load"][0] == "cached"
    assert now["fit"][0] == now["report"][0] == "succeeded"
    bad = run_cli("run", "p.ipynb", "--executor", executor, "--from", "nope", cwd=pipeline)
    assert bad.returncode == 2 and "--from: no step named `nope`" in bad.stderr


@pytest.mark.parametrize("executor", EXECUTORS)
def test_retry_then_success(tmp_path, executor):
    write_notebook(tmp_path / "p.ipynb", [
        "%%step flaky --retries 2 --outputs n\nimport os\n"
        "n = int(os.environ['MLPIPE_ATTEMPT'])\n"
        "if n == 1:\n    raise RuntimeError('first attempt fails')",
    ])
    run_ok(tmp_path, executor=executor)
    run = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)[0]
    step = run["steps"][0]
    assert step["state"] == "succeeded" and step["attempt"] == 2
    log = run_cli("logs", run["id"], "flaky", cwd=tmp_path).stdout
    assert "--- attempt 1 of 3 ---" in log and "--- attempt 2 of 3 ---" in log
    assert "attempt 1 failed: step `flaky` failed in the step code" in log
    assert "RuntimeError: first attempt fails" in log
    assert "retrying in 1 s" in log


def test_timeout_stops_the_kernel(tmp_path):
    pid_file = tmp_path / "kernel-pid"
    write_notebook(tmp_path / "p.ipynb", [
        f"%%step slow --timeout 2\nimport os, time\nopen({str(pid_file)!r}, 'w')"
        ".write(str(os.getpid()))\ntime.sleep(60)",
    ])
    started = time.time()
    result = run_cli("run", "p.ipynb", "--executor", "local", cwd=tmp_path)
    took = time.time() - started
    assert result.returncode == 1
    assert "step `slow` timed out after 2 s" in result.stdout
    assert took < 20
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists()  # the step's kernel is gone
    run = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)[0]
    assert run["steps"][0]["state"] == "failed"
    assert run["steps"][0]["reason"] == "step `slow` timed out after 2 s"


BRANCHES = [
    "%%step quick_fail\nraise ValueError('boom')",
    "%%step long_branch\nimport time\ntime.sleep(12)",
]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_fail_fast_stops_other_branches(tmp_path, executor):
    write_notebook(tmp_path / "p.ipynb", BRANCHES)
    if executor == "docker":  # the runtime image is built before the clock starts
        assert run_cli("image", "build", "p.ipynb", cwd=tmp_path).returncode == 0
    started = time.time()
    result = run_cli("run", "p.ipynb", "--executor", executor, "--fail-fast",
                     "--max-parallel", "2", cwd=tmp_path)
    assert result.returncode == 1
    assert time.time() - started < 10
    now = states(tmp_path)
    assert now["quick_fail"][0] == "failed"
    assert now["long_branch"] == ("cancelled", "stopped by --fail-fast")


def test_without_fail_fast_other_branches_finish(tmp_path):
    write_notebook(tmp_path / "p.ipynb", BRANCHES)
    result = run_cli("run", "p.ipynb", "--executor", "local", "--max-parallel", "2", cwd=tmp_path)
    assert result.returncode == 1
    now = states(tmp_path)
    assert now["quick_fail"][0] == "failed" and now["long_branch"][0] == "succeeded"
