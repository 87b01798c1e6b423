"""Finding results through the real CLI on real kernels (local executor): `.mlpipe/latest/`,
outputs with their paths and sizes in `mlpipe show`, every reason a step re-ran, `mlpipe runs`
on an 80-column terminal with the parameters a run changed, logs of a reused step."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from mlpipe_jupyter.ui.listing import human_size
from tests.conftest import run_cli, write_notebook

MAKE = "%%step make --outputs data\ndata = list(range(alpha * 10))"
REPORT = ("%%step report --inputs data --outputs reports/summary.txt\nimport os\n"
          "os.makedirs('reports', exist_ok=True)\n"
          "open('reports/summary.txt', 'w').write(f'{label}:{sum(data)}')\n"
          "print('report written')")


def pipeline(cwd: Path, make: str = MAKE, report: str = REPORT) -> None:
    write_notebook(cwd / "p.ipynb", ["%load_ext mlpipe_jupyter",
                                     "%%pipeline_params\nalpha = 1\nlabel = 'base'",
                                     make, report])


def run(cwd: Path, *args: str, ok: bool = True) -> str:
    result = run_cli("run", "p.ipynb", "--executor", "local", *args, cwd=cwd)
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return result.stdout


def newest(cwd: Path) -> dict:
    return json.loads(run_cli("runs", "--json", "-n", "1", cwd=cwd).stdout)[0]


def test_latest_holds_the_last_successful_runs_files(tmp_path):
    pipeline(tmp_path)
    out = run(tmp_path, "-p", "alpha=2")
    first = newest(tmp_path)["id"]
    latest = tmp_path / ".mlpipe" / "latest" / "p"
    assert f"copies in {latest}{os.sep} (always the last successful run's files)" in out
    summary = latest / "reports" / "summary.txt"
    assert summary.read_text() == "base:190"
    assert latest.is_symlink() and Path(os.readlink(latest)).name == first
    assert not summary.is_symlink()  # a copy: editing it cannot touch the artifact store
    digest = newest(tmp_path)["steps"][1]["outputs"]["reports/summary.txt"]
    stored = tmp_path / ".mlpipe/artifacts" / digest / "data/reports/summary.txt"
    assert not summary.samefile(stored)

    # a failed run leaves it alone
    pipeline(tmp_path, report=REPORT + "\nraise ValueError('broken report')")
    out = run(tmp_path, ok=False)
    assert "copies in" not in out
    assert Path(os.readlink(latest)).name == first and summary.read_text() == "base:190"

    # the next successful run replaces it whole
    pipeline(tmp_path, report=REPORT.replace("summary.txt", "total.txt"))
    run(tmp_path)
    assert Path(os.readlink(latest)).name == newest(tmp_path)["id"] != first
    assert (latest / "reports" / "total.txt").read_text() == "base:45"
    assert not summary.exists()


def test_show_lists_every_output_with_its_path_and_size(tmp_path):
    pipeline(tmp_path)
    run(tmp_path)
    found = newest(tmp_path)
    shown = run_cli("show", found["id"], cwd=tmp_path, env={"COLUMNS": "400"})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    artifacts = tmp_path / ".mlpipe" / "artifacts"
    expected = {("make", "data"): "data/value.json",
                ("report", "reports/summary.txt"): "data/reports/summary.txt"}
    for (step, name), tail in expected.items():
        digest = next(s for s in found["steps"] if s["name"] == step)["outputs"][name]
        path = artifacts / digest / tail
        line = next(line for line in lines if str(path) in line)
        assert re.match(rf"\s*{step}\s+{re.escape(name)}\s+"
                        rf"{re.escape(human_size(path.stat().st_size))}\s+{re.escape(str(path))}",
                        line), line
    assert "reports/summary.txt" in shown.stdout and "7 B" in shown.stdout  # `base:45`


def test_every_reason_a_step_re_ran_is_listed(tmp_path):
    pipeline(tmp_path)
    run(tmp_path)
    # the code of `make` and the value of a parameter it reads change together
    pipeline(tmp_path, make=MAKE + "\ndata = data[::-1]")
    out = run(tmp_path, "-p", "alpha=2")
    assert "code changed (and 1 more)" in out  # the live display keeps it short
    found = newest(tmp_path)
    steps = {s["name"]: s for s in found["steps"]}
    assert steps["make"]["reasons"] == ["code changed", "parameter `alpha` changed"]
    assert steps["report"]["reasons"] == ["input `data` changed"]
    shown = json.loads(run_cli("show", found["id"], "--json", cwd=tmp_path).stdout)
    assert shown["steps"][0]["reasons"] == ["code changed", "parameter `alpha` changed"]
    human = run_cli("show", found["id"], cwd=tmp_path).stdout
    make_at = human.index("make")
    assert human.index("code changed", make_at) < human.index("parameter `alpha` changed",
                                                              make_at)
    assert "input `data` changed" in human


def test_runs_fit_80_columns_one_line_each_with_changed_params(tmp_path):
    pipeline(tmp_path)
    run(tmp_path)
    run(tmp_path, "-p", "alpha=2")
    run(tmp_path, "-p", "alpha=2", "-p", "label='" + "a long label " * 10 + "'")
    ids = [r["id"] for r in json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)]
    listing = run_cli("runs", cwd=tmp_path, env={"COLUMNS": "80"})
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert len(lines) == 1 + len(ids)  # a header, then one line per run
    assert lines[0].split() == ["run", "notebook", "state", "started", "steps", "params"]
    for run_id, line in zip(ids, lines[1:], strict=True):
        assert line.startswith(run_id + "  ") and " p " in line and "succeeded" in line
    newest_line, middle, oldest = lines[1:]
    assert newest_line.rstrip().endswith("…") and "  alpha=2 label=" in newest_line
    assert middle.rstrip().endswith("  alpha=2")
    assert oldest.rstrip().endswith("2✔")  # defaults: nothing changed
    listed = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)
    assert [r["params_changed"] for r in listed[1:]] == [{"alpha": 2}, {}]
    assert listed[0]["params_changed"]["label"].startswith("a long label")
    assert listed[2]["param_defaults"] == {"alpha": 1, "label": "base"}


def test_logs_of_a_reused_step_come_from_the_run_that_ran_it(tmp_path):
    pipeline(tmp_path)
    run(tmp_path)
    origin = newest(tmp_path)["id"]
    run(tmp_path)
    run(tmp_path)
    third = newest(tmp_path)
    assert {s["state"] for s in third["steps"]} == {"cached"}
    logs = run_cli("logs", third["id"], "report", cwd=tmp_path)
    assert logs.returncode == 0, logs.stderr
    assert logs.stderr == (f"step `report` was reused from run {origin}; its log from that "
                           "run:\n")
    assert "report written" in logs.stdout
    shutil.rmtree(tmp_path / ".mlpipe" / "runs" / origin)
    gone = run_cli("logs", third["id"], "report", cwd=tmp_path)
    assert gone.returncode == 2 and gone.stdout == ""
    assert gone.stderr.count("\n") == 1
    assert f"was reused from run {origin}; its log from that run is gone" in gone.stderr
