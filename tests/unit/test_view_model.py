"""RunView, the one view model of a run: what it keeps from the events, its snapshots and text
table, its watchers (none lost, a broken one dropped), and the displays that render it."""

from __future__ import annotations

import io
import logging
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from mlpipe_jupyter.home import Home
from mlpipe_jupyter.model.states import StepState
from mlpipe_jupyter.run.events import Broadcaster
from mlpipe_jupyter.run.view import LOG, LOG_LINES, PROGRESS, RUN, STATE, RunView
from mlpipe_jupyter.ui.progress import TerminalProgress

ERROR = {"error": "StepFailed", "message": "step `fit` failed: ValueError: bad"}


def test_steps_and_run_follow_the_events():
    view = RunView(["load", "fit", "report"], run_id="r1")
    assert view.states() == dict.fromkeys(["load", "fit", "report"], StepState.QUEUED)
    view.on_run_started(run_id="r1", notebook="n", params={}, steps=[], executor="local",
                        started=10.0)
    view.on_step_state(run_id="r1", step="load", state="cached", at=10.5,
                       reason="reused from run r0", reused_from="r0", outputs={"raw": "d1"})
    view.on_step_state(run_id="r1", step="fit", state="running", at=11.0, attempt=1)
    view.on_step_progress(run_id="r1", step="fit", done=2, total=5)
    view.on_step_state(run_id="r1", step="fit", state="running", at=12.0, attempt=2)
    view.on_step_state(run_id="r1", step="fit", state="failed", at=13.5, error=ERROR,
                       reason=ERROR["message"], attempt=2)
    view.on_step_state(run_id="r1", step="report", state="skipped", at=13.5,
                       reason="upstream `fit` failed")
    view.on_run_finished(run_id="r1", state="failed", at=14.0, reason="step `fit` failed")

    snap = view.snapshot()
    assert (snap.run.id, snap.run.state, snap.run.started, snap.run.finished) == (
        "r1", StepState.FAILED, 10.0, 14.0)
    assert snap.run.executor == "local" and snap.run.reason == "step `fit` failed"
    load, fit, report = snap.steps.values()
    assert load.state.is_ok and load.reused_from == "r0" and load.outputs == {"raw": "d1"}
    assert (load.started, load.finished) == (10.5, 10.5)  # final at once: no time taken
    # a retried step keeps its first start; its time runs to the end of the last attempt
    assert (fit.started, fit.finished, fit.since) == (11.0, 13.5, 13.5)
    assert fit.took(now=99) == 2.5 and fit.attempt == 2 and (fit.done, fit.total) == (2, 5)
    assert fit.error == ERROR and fit.message == ERROR["message"]
    assert report.state.is_final and not report.state.is_ok and report.took(now=99) == 0
    assert snap.counts() == {"cached": 1, "failed": 1, "skipped": 1}


def test_a_step_running_again_has_no_error_and_no_end():
    view = RunView(["a"])
    view.on_step_state(step="a", state="failed", at=1.0, error=ERROR)
    view.on_step_state(step="a", state="running", at=2.0)
    rec = view.snapshot().steps["a"]
    assert rec.error is None and rec.finished is None and rec.started == 1.0


def test_logs_keep_a_tail_per_step_and_for_the_run():
    view = RunView(["a"])
    for i in range(LOG_LINES + 50):
        view.on_step_log(step="a", line=f"line {i}")
    view.on_step_log(step="", line="building image")
    assert view.log("a") == [f"line {i}" for i in range(50, LOG_LINES + 50)]
    assert view.log("a", 2) == [f"line {LOG_LINES + 48}", f"line {LOG_LINES + 49}"]
    assert view.log("") == ["building image"] and view.log("unknown") == []


def test_snapshots_are_copies():
    view = RunView(["a"])
    view.on_step_state(step="a", state="succeeded", at=1.0, outputs={"x": "d1"})
    snap = view.snapshot()
    snap.steps["a"].outputs["y"] = "d2"
    snap.steps["a"].state = StepState.FAILED
    snap.run.state = StepState.CANCELLED
    again = view.snapshot()
    assert again.steps["a"].outputs == {"x": "d1"} and again.steps["a"].state == "succeeded"
    assert again.run.state == StepState.QUEUED
    assert list(view.snapshot(["a", "unknown"]).steps) == ["a"]
    assert view.snapshot(()).steps == {}


def test_the_text_table():
    view, t = RunView(["load", "split", "fit"]), time.time()
    view.on_step_state(step="load", state="running", at=t - 1.25)
    view.on_step_state(step="load", state="succeeded", at=t)
    view.on_step_state(step="split", state="running", at=t)
    view.on_step_progress(step="split", done=2, total=5)
    view.on_step_state(step="fit", state="failed", at=t, error=ERROR, reason="other")
    lines = view.snapshot().table().splitlines()
    assert lines[0].split() == ["step", "state", "time", "detail"]
    assert lines[1] == "load   succeeded  1.2s"
    assert lines[2].split()[:2] == ["split", "running"] and lines[2].endswith("  2/5 cells")
    assert lines[3] == f"fit    failed     0.0s  {ERROR['message']}"  # the error, not the reason


def test_watchers_get_every_change_after_they_watch():
    view = RunView(["a"])
    view.on_step_state(step="a", state="running", at=1.0)  # before: in the snapshot only
    changes: list[tuple[str, str]] = []
    view.watch(lambda what, step: changes.append((what, step)))
    view.on_run_started(started=1.0, executor="local")
    view.on_step_progress(step="a", done=1, total=2)
    view.on_step_log(step="a", line="hi")
    view.on_step_state(step="a", state="succeeded", at=2.0)
    view.on_run_finished(state="succeeded", at=3.0)
    assert changes == [(RUN, ""), (PROGRESS, "a"), (LOG, "a"), (STATE, "a"), (RUN, "")]


def test_a_watcher_that_watches_mid_run_misses_nothing():
    """Steps end on another thread while a display starts watching: what ended before it is in
    its snapshot, what ended after is told to it."""
    names = [f"s{i}" for i in range(2000)]
    events = Broadcaster()
    view = RunView(names)
    events.add(view)
    told: set[str] = set()
    half = threading.Event()

    def steps() -> None:
        for i, name in enumerate(names):
            events.on_step_state(run_id="r", step=name, state="succeeded", at=1.0)
            if i == 100:
                half.set()

    thread = threading.Thread(target=steps)
    thread.start()
    assert half.wait(30)
    view.watch(lambda what, step: told.add(step))
    ended = {n for n, rec in view.snapshot().steps.items() if rec.state.is_final}
    thread.join(30)
    assert ended | told == set(names) and len(ended) > 100


def test_a_broken_watcher_is_reported_once_and_dropped(caplog):
    view = RunView(["a"])
    calls: list[str] = []

    def broken(what: str, step: str) -> None:
        calls.append("broken")
        raise RuntimeError("widget bug")

    view.watch(broken)
    view.watch(lambda what, step: calls.append("fine"))
    with caplog.at_level(logging.ERROR, logger="mlpipe_jupyter"):
        view.on_step_state(step="a", state="running", at=1.0)
        view.on_step_state(step="a", state="succeeded", at=2.0)
    assert calls == ["broken", "fine", "fine"]
    assert len([r for r in caplog.records if "widget bug" in str(r.exc_info)]) == 1
    assert view.states() == {"a": StepState.SUCCEEDED}  # the view itself went on


def test_terminal_progress_renders_its_view(tmp_path):
    """The CLI's progress keeps no state of its own: what it prints comes from its RunView."""
    home = Home(tmp_path / ".mlpipe")
    runner = SimpleNamespace(order=["a", "b"], run_id="r1", home=home, reason=None,
                             notebook=str(tmp_path / "p.ipynb"), executor_name="local",
                             max_parallel=1, artifacts=None)
    out = io.StringIO()
    progress = TerminalProgress(runner, Console(file=out, width=200, highlight=False))
    progress.on_step_state(run_id="r1", step="a", state="running", at=progress.started)
    progress.on_step_state(run_id="r1", step="a", state="failed", at=progress.started + 1.5,
                           error=ERROR)
    progress.on_step_state(run_id="r1", step="b", state="skipped", at=progress.started + 1.5,
                           reason="upstream `a` failed")
    assert progress.view.states() == {"a": "failed", "b": "skipped"}
    lines = out.getvalue().splitlines()
    assert [line.split()[3:5] for line in lines] == [["a", "running"], ["a", "failed"],
                                                      ["b", "skipped"]]
    assert "1.5s" in lines[1] and lines[1].endswith(ERROR["message"])
    progress.summary(StepState.FAILED)
    summary = out.getvalue().splitlines()[len(lines):]
    files = home.step_files("r1", "a")
    assert f"  log: {files.log}" in summary
    assert f"  executed notebook: {files.output}" in summary
    assert summary[-1].startswith("failed in ") and str(Path(home.run_dir("r1"))) in summary[-1]
