"""The runner: constructing one plans and writes nothing, `run()` recovers and runs; a partial
run that cannot have a step it needs is refused (before it starts when that step never
succeeded, else it fails saying why), never recorded as cancelled; the local environment is
read per run. Real kernels (local executor), the real CLI, real SQLite files."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlpipe_jupyter.errors import SpecError
from mlpipe_jupyter.home import Home
from mlpipe_jupyter.model.notebook import read_pipeline
from mlpipe_jupyter.model.spec import PipelineSpec
from mlpipe_jupyter.run.events import RunListener
from mlpipe_jupyter.run.runner import PipelineRunner, RunOptions
from mlpipe_jupyter.run.store import RunStore
from mlpipe_jupyter.run.storecheck import StoreDamaged
from tests.conftest import run_cli, write_notebook

PIPELINE = ["%%step load --outputs rows\nrows = [1, 2, 3]",
            "%%step fit --inputs rows --outputs model\nmodel = sum(rows)",
            "%%step report --inputs model --outputs total\ntotal = model * 2"]


def runner(directory: Path, **options) -> PipelineRunner:
    notebook = directory / "p.ipynb"
    return PipelineRunner(read_pipeline(notebook), notebook=str(notebook), base_dir=directory,
                          options=RunOptions(executor="local", **options))


def history(directory: Path) -> list[dict]:
    store = RunStore(Home.for_dir(directory).db, readonly=True)
    try:
        return store.runs()
    finally:
        store.close()


def snapshot(directory: Path) -> dict[str, tuple[bytes | None, int]]:
    return {p.name: (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
            for p in directory.iterdir()}


@pytest.fixture
def pipeline(notebook_dir: Path) -> Path:
    write_notebook(notebook_dir / "p.ipynb", PIPELINE)
    return notebook_dir


def test_a_partial_run_needing_a_step_that_never_ran_is_refused_before_it_starts(pipeline):
    with pytest.raises(SpecError) as refused:
        runner(pipeline, only=("report",))
    assert refused.value.step == "load"
    assert str(refused.value) == ("step `load` is not selected and has no earlier successful "
                                  "run; run it first (or add it to --only)")
    assert not (pipeline / ".mlpipe").exists()  # nothing recorded, nothing created
    result = run_cli("run", "p.ipynb", "--executor", "local", "--from", "fit", cwd=pipeline)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [f"error: {refused.value}"]
    assert not (pipeline / ".mlpipe").exists()


def test_a_partial_run_that_cannot_reuse_a_changed_step_fails_saying_why(pipeline):
    assert runner(pipeline).run() == "succeeded"
    cells = list(PIPELINE)
    cells[0] = "%%step load --outputs rows\nrows = [1, 2, 3, 4]"  # changed since
    write_notebook(pipeline / "p.ipynb", cells)
    partial = runner(pipeline, only=("fit",))
    why = ("step `load` is not selected and has no earlier successful run with the same code, "
           "parameters and inputs; run it first (or add it to --only)")
    assert partial.run() == "failed"
    run = history(pipeline)[0]
    assert (run["id"], run["state"], run["reason"]) == (partial.run_id, "failed", why)
    assert [(s["name"], s["state"], s["reason"]) for s in run["steps"]] == [
        ("load", "skipped", why), ("fit", "skipped", "upstream `load` skipped")]


def test_a_package_installed_between_two_runs_in_one_process_is_not_reused(
        pipeline, tmp_path_factory, monkeypatch):
    write_notebook(pipeline / "p.ipynb", PIPELINE[:1])
    assert runner(pipeline).run() == "succeeded"
    assert runner(pipeline).run() == "succeeded"
    assert history(pipeline)[0]["steps"][0]["state"] == "cached"  # nothing changed: reused
    site = tmp_path_factory.mktemp("site")
    (site / "freshly_installed-1.0.dist-info").mkdir()  # what `%pip install` leaves
    monkeypatch.syspath_prepend(str(site))
    assert runner(pipeline).run() == "succeeded"
    step = history(pipeline)[0]["steps"][0]
    assert (step["state"], step["reason"]) == ("succeeded", "environment changed")


def test_constructing_writes_nothing_and_run_recovers_a_dead_runners_run(notebook_dir):
    home = Home.for_dir(notebook_dir)
    store = RunStore(home.db)
    store.on_run_started(run_id="orphan", notebook="p.ipynb", params={}, steps=["s"],
                         executor="local", started=time.time())
    store.close()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    raw = sqlite3.connect(home.db, isolation_level=None)
    raw.execute("UPDATE runs SET pid=?, pid_start='1'", (gone.pid,))
    raw.close()
    before = snapshot(home.root)
    empty = PipelineRunner(PipelineSpec(), notebook=str(notebook_dir / "e.ipynb"),
                           base_dir=notebook_dir, options=RunOptions(executor="local"))
    assert snapshot(home.root) == before  # no store opened, no directory made
    assert history(notebook_dir)[0]["state"] == "running"  # not recovered yet
    assert empty.run() == "succeeded"
    runs = {r["id"]: r for r in history(notebook_dir)}
    assert (runs["orphan"]["state"], runs["orphan"]["reason"]) == ("failed", "interrupted")
    assert runs[empty.run_id]["state"] == "succeeded"


class Finished(RunListener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    def on_run_finished(self, *, state, reason=None, **_) -> None:
        self.seen.append((state, reason))


def test_a_store_that_cannot_be_opened_fails_run_and_tells_the_views(pipeline):
    home = Home.for_dir(pipeline)
    home.root.mkdir()
    home.db.write_bytes(b"")  # damaged: a zero-byte file
    view = Finished()
    doomed = runner(pipeline)  # planning reads no store for a whole run
    doomed.add_listener(view)
    with pytest.raises(StoreDamaged) as damaged:
        doomed.run()
    assert (doomed.state, doomed.recorded) == ("failed", False)
    assert view.seen == [("failed", str(damaged.value))]
