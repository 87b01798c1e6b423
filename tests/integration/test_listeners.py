"""Listeners of a real run (real runner, real kernels): one that blocks holds only the thread
inside it, so another step runs and finishes meanwhile; every listener gets the same events in
the same order; a listener that raises is reported once and dropped while the run goes on."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from mlpipe_jupyter.home import Home
from mlpipe_jupyter.model.notebook import read_pipeline
from mlpipe_jupyter.run.events import RunListener
from mlpipe_jupyter.run.runner import PipelineRunner, RunOptions
from tests.conftest import write_notebook

WAIT = 240  # seconds: kernels start slowly on a busy machine
CELLS = ["%%step a --outputs x\nx = 1", "%%step b --outputs y\ny = 2"]  # independent steps


class States(RunListener):
    """Keeps (step, state) of every state event, in the order it got them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.changed = threading.Condition()

    def on_step_state(self, *, step: str, state: str, **_) -> None:
        with self.changed:
            self.seen.append((step, str(state)))
            self.changed.notify_all()

    def wait_for(self, event: tuple[str, str]) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: event in self.seen, WAIT)


class HoldsFirstOfA(States):
    """Blocks in its first event about step `a` until released."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.release = threading.Event()

    def on_step_state(self, *, step: str, **kw) -> None:
        super().on_step_state(step=step, **kw)
        if step == "a" and not self.inside.is_set():
            self.inside.set()
            self.release.wait(WAIT)


def start(directory: Path, listeners: list[RunListener]) -> tuple[threading.Thread, dict]:
    notebook = write_notebook(directory / "p.ipynb", CELLS)
    runner = PipelineRunner(read_pipeline(notebook), notebook=str(notebook), base_dir=directory,
                            options=RunOptions(executor="local", max_parallel=2),
                            home=Home(directory / ".mlpipe"), listeners=listeners)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(state=runner.run()))
    thread.start()
    return thread, result


def test_a_blocked_listener_does_not_stop_another_step(tmp_path):
    holder, others = HoldsFirstOfA(), States()
    thread, result = start(tmp_path, [holder, others])
    try:
        assert holder.inside.wait(WAIT)
        # `a`'s thread is held in the listener; `b` runs in its kernel and finishes meanwhile
        assert others.wait_for(("b", "succeeded")), others.seen
        assert thread.is_alive() and ("a", "succeeded") not in others.seen
    finally:
        holder.release.set()
    thread.join(WAIT)
    assert result["state"] == "succeeded"
    # what waited for the held listener reached it afterwards: the same events, in order
    assert holder.seen == others.seen
    assert sorted(others.seen) == [("a", "running"), ("a", "succeeded"),
                                   ("b", "running"), ("b", "succeeded")]


def test_a_raising_listener_is_dropped_and_the_run_goes_on(tmp_path, caplog):
    class Broken(States):
        def on_step_state(self, **kw) -> None:
            super().on_step_state(**kw)
            raise RuntimeError("view bug")

    broken, others = Broken(), States()
    with caplog.at_level(logging.ERROR, logger="mlpipe_jupyter"):
        thread, result = start(tmp_path, [broken, others])
        thread.join(WAIT)
    assert result["state"] == "succeeded" and len(others.seen) == 4
    assert len(broken.seen) == 1
    assert len([r for r in caplog.records if "view bug" in str(r.exc_info)]) == 1
