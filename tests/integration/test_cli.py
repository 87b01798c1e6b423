"""The `mlpipe` CLI on real notebooks with real kernels (local executor)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import NOTEBOOKS, run_cli, write_notebook


@pytest.fixture
def examples(tmp_path):
    for path in NOTEBOOKS.iterdir():
        if path.is_file():
            shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_wine_pipeline_end_to_end(examples):
    before = (examples / "wine_quality.ipynb").read_bytes()
    result = run_cli("run", "wine_quality.ipynb", "-p", "learning_rate=0.05", "--executor",
                     "local", cwd=examples)
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("load", "split", "fit", "evaluate"):
        assert f"✔ {step}" in result.stdout
    assert "succeeded in" in result.stdout
    runs = json.loads(run_cli("runs", "--json", cwd=examples).stdout)
    assert len(runs) == 1
    run = runs[0]
    assert set(run) >= {"id", "notebook", "state", "started", "finished", "params", "steps"}
    assert run["state"] == "succeeded" and run["params"]["learning_rate"] == 0.05
    assert [s["name"] for s in run["steps"]] == ["load", "split", "fit", "evaluate"]
    for step in run["steps"]:
        assert set(step) >= {"name", "state", "reason", "started", "finished", "error"}
        assert step["state"] == "succeeded" and step["error"] is None
    shown = json.loads(run_cli("show", run["id"], "--json", cwd=examples).stdout)
    assert shown == run
    metrics_digest = run["steps"][-1]["outputs"]["reports/metrics.json"]
    metrics_file = examples / ".mlpipe/artifacts" / metrics_digest / "data/reports/metrics.json"
    metrics = json.loads(metrics_file.read_text())
    assert 0.8 < metrics["accuracy"] <= 1.0
    run_dir = examples / ".mlpipe/runs" / run["id"]
    assert {p.name for p in run_dir.iterdir()} == {"load", "split", "fit", "evaluate"}
    for step in run["steps"]:
        assert (run_dir / step["name"] / "step.ipynb").exists()
        assert (run_dir / step["name"] / "output.ipynb").exists()
    log = run_cli("logs", run["id"], "evaluate", cwd=examples)
    assert log.returncode == 0
    assert (examples / "wine_quality.ipynb").read_bytes() == before
    human = run_cli("show", run["id"], cwd=examples)
    assert "evaluate" in human.stdout and "succeeded" in human.stdout



def test_batch_scoring_example_end_to_end(examples):
    """notebooks/batch_scoring.ipynb: its fan-out step scores every row in 10 mini-batches on
    two workers; a second run reuses every step."""
    result = run_cli("run", "batch_scoring.ipynb", "--executor", "local", cwd=examples)
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads(run_cli("runs", "--json", cwd=examples).stdout)[0]
    score = next(s for s in run["steps"] if s["name"] == "score")
    assert score["batches"] == {"total": 10, "succeeded": 10, "failed": 0, "cached": 0}
    assert score["failures"] == []
    digest = run["steps"][-1]["outputs"]["reports/summary.json"]
    summary = json.loads((examples / ".mlpipe/artifacts" / digest
                          / "data/reports/summary.json").read_text())
    assert summary["rows"] == 20000 and sum(summary["per_class"].values()) == 20000
    assert summary["mean_confidence"] > 0.8
    again = run_cli("run", "batch_scoring.ipynb", "--executor", "local", cwd=examples)
    assert again.returncode == 0 and again.stdout.count("reused from run") >= 4

def test_branching_pipeline_runs_branches_in_parallel(examples):
    result = run_cli("run", "model_comparison.ipynb", "--executor", "local",
                     "--max-parallel", "2", cwd=examples)
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads(run_cli("runs", "--json", cwd=examples).stdout)[0]
    steps = {s["name"]: s for s in run["steps"]}
    # the two branches overlapped in time
    gbm, forest = steps["fit_gbm"], steps["fit_forest"]
    assert gbm["started"] < forest["finished"] and forest["started"] < gbm["finished"]
    assert steps["compare"]["started"] >= max(gbm["finished"], forest["finished"])
    digest = steps["compare"]["outputs"]["reports/comparison.json"]
    report = json.loads((examples / ".mlpipe/artifacts" / digest /
                         "data/reports/comparison.json").read_text())
    assert report["best"] in ("gbm", "forest")


FAILING = [
    "%load_ext mlpipe_jupyter",
    "%%step source --outputs n\nn = 4",
    "%%step bad --inputs n --outputs half\nx = 1\nhalf = n / 0",
    "%%step after_bad --inputs half\nprint(half)",
    "%%step good --inputs n --outputs double\ndouble = n * 2",
    "%%step after_good --inputs double --outputs out.txt\nopen('out.txt', 'w').write(str(double))",
]


def test_failed_branch_skips_downstream_and_other_branch_finishes(tmp_path):
    write_notebook(tmp_path / "fail.ipynb", FAILING)
    result = run_cli("run", "fail.ipynb", "--executor", "local", cwd=tmp_path)
    assert result.returncode == 1
    out = result.stdout
    assert "step `bad` failed in the step code, line 2: ZeroDivisionError: division by zero" in out
    assert "log:" in out and "executed notebook:" in out
    run = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)[0]
    states = {s["name"]: s["state"] for s in run["steps"]}
    assert states == {"source": "succeeded", "bad": "failed", "after_bad": "skipped",
                      "good": "succeeded", "after_good": "succeeded"}
    assert run["state"] == "failed"
    bad = next(s for s in run["steps"] if s["name"] == "bad")
    assert bad["error"]["ename"] == "ZeroDivisionError"
    assert bad["error"]["cell"] == "the step code"
    skipped = next(s for s in run["steps"] if s["name"] == "after_bad")
    assert skipped["reason"] == "upstream `bad` failed"


def test_declared_output_not_produced_fails_the_step(tmp_path):
    write_notebook(tmp_path / "nb.ipynb", ["%%step lazy --outputs model report.csv\nx = 1"])
    result = run_cli("run", "nb.ipynb", "--executor", "local", cwd=tmp_path)
    assert result.returncode == 1
    assert "step `lazy` did not produce its declared outputs `model`, `report.csv`" in \
        result.stdout
    assert not any((tmp_path / ".mlpipe/artifacts").glob("*/meta.json"))


@pytest.mark.parametrize("cells, message", [
    (["%%step a --inputs y --outputs x\nx = y", "%%step b --inputs x --outputs y\ny = x"],
     "cycle between steps: a -> b -> a"),
    (["%%step a --outputs x\nx = 1", "%%step b --outputs x\nx = 2"],
     "steps `a` and `b` both declare output `x`"),
    (["%%step a --inputs ghost\nprint(ghost)"],
     "step `a` reads variable `ghost`, but no step outputs it"),
    (["%%step a --after nobody\nx = 1"], "step `a` --after: no step named `nobody`"),
    (["%%step a\nx = 1", "%%step a\nx = 2"], "nb.ipynb, cell 2: duplicate step name `a`"),
    (["%%step 9lives\nx = 1"], "nb.ipynb, cell 1: %%step: invalid step name `9lives`"),
    (["%%step a --outputs /srv/x.csv\nx = 1"], "`/srv/x.csv` is an absolute path"),
    (["%%step a --outputs ../x.csv\nx = 1"], "`../x.csv` escapes the step's working directory"),
    (["%%step a --colour red\nx = 1"], "nb.ipynb, cell 1: %%step a: unknown option --colour"),
    (["%%pipeline_params\nx = open('f')"], "`x` must be a JSON-compatible literal"),
])
def test_validation_errors_through_the_cli(tmp_path, cells, message):
    write_notebook(tmp_path / "nb.ipynb", cells)
    result = run_cli("run", "nb.ipynb", "--executor", "local", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1  # one line
    assert not (tmp_path / ".mlpipe/runs").exists() or not any(
        (tmp_path / ".mlpipe/runs").iterdir())


def test_unknown_parameter_and_missing_notebook(tmp_path):
    write_notebook(tmp_path / "nb.ipynb", ["%%pipeline_params\nalpha = 1", "%%step a\nx = alpha"])
    result = run_cli("run", "nb.ipynb", "-p", "beta=2", cwd=tmp_path)
    assert result.returncode == 2
    assert "-p beta: unknown parameter (pipeline parameters: alpha)" in result.stderr
    missing = run_cli("run", "nope.ipynb", cwd=tmp_path)
    assert missing.returncode == 2 and "nope.ipynb: no such notebook" in missing.stderr


def test_logs_and_show_errors(tmp_path):
    assert "no run history" in run_cli("runs", cwd=tmp_path).stderr
    write_notebook(tmp_path / "nb.ipynb", ["%%step hello\nprint('hello from the step')"])
    assert run_cli("run", "nb.ipynb", "--executor", "local", cwd=tmp_path).returncode == 0
    run_id = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)[0]["id"]
    assert "hello from the step" in run_cli("logs", run_id, "hello", cwd=tmp_path).stdout
    missing = run_cli("logs", run_id, "ghost", cwd=tmp_path)
    assert missing.returncode == 2 and "has no step `ghost`" in missing.stderr
    assert run_cli("show", "19990101", cwd=tmp_path).returncode == 2


def test_reading_the_history_writes_nothing(tmp_path):
    write_notebook(tmp_path / "nb.ipynb", ["%%step hello\nprint('hello from the step')"])
    assert run_cli("run", "nb.ipynb", "--executor", "local", cwd=tmp_path).returncode == 0
    home = tmp_path / ".mlpipe"

    def files() -> dict[str, tuple[int, bytes]]:
        return {str(p.relative_to(home)): (p.stat().st_mtime_ns, p.read_bytes())
                for p in home.rglob("*") if p.is_file()}

    before = files()
    run_id = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)[0]["id"]
    for args in (["runs"], ["show", run_id], ["show", run_id, "--json"],
                 ["logs", run_id, "hello"]):
        assert run_cli(*args, cwd=tmp_path).returncode == 0, args
    assert files() == before  # no -wal or -shm beside mlpipe.db, nothing rewritten


def test_export(tmp_path, examples):
    out = tmp_path / "exported"
    result = run_cli("export", "wine_quality.ipynb", "--to", str(out), cwd=examples)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "pipeline.json").read_text())
    assert manifest["order"] == ["load", "split", "fit", "evaluate"]
    nb = json.loads((out / "fit.ipynb").read_text())
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    assert "learning_rate = 0.1" in params["source"]
