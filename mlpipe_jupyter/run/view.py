"""The state of one run as displays show it: the one view model behind `PipelineRun` (`.steps`,
`.log()`, its text), the live DAG widget and the CLI's progress.

A RunView is a RunListener: it keeps, from the run's events, each step's state, reason, error,
times, attempt, outputs, cell progress and log tail, and the run's own state. Displays do not
keep copies: they read `snapshot()` and are told what changed by `watch()`, so a display made
after the run began starts from what happened, with no event lost in between.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..model.states import StepState
from .events import RunListener

log = logging.getLogger("mlpipe_jupyter")

LOG_LINES = 200  # kept per step (and for the run itself, step ""): what `PipelineRun.log` gives

# what changed, given to watchers with the step's name ("" for the run itself)
RUN, STATE, PROGRESS, LOG = "run", "state", "progress", "log"
Watcher = Callable[[str, str], None]


@dataclass
class StepRecord:
    """One step as displays show it."""

    state: StepState = StepState.QUEUED
    since: float | None = None  # when it entered that state
    started: float | None = None
    finished: float | None = None
    done: int = 0  # cells executed, of `total` (0: not known)
    total: int = 0
    failed: int | None = None  # a fan-out step's failed mini-batches: done/total count batches
    reason: str | None = None
    error: dict | None = None  # MlpipeError.to_dict() of the failure
    attempt: int = 1
    reused_from: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    # a fan-out step's failed mini-batches once it ended (run/foreach.py's record()["failures"])
    failures: list[dict] = field(default_factory=list)

    @property
    def progress(self) -> str | None:
        """`cell 3/5`, or a fan-out step's `37/100 batches · 1 failed`; None when not known."""
        if not self.total:
            return None
        if self.failed is None:
            return f"cell {self.done}/{self.total}"
        return f"{self.done}/{self.total} batches" + (
            f" · {self.failed} failed" if self.failed else "")

    @property
    def message(self) -> str | None:
        return (self.error or {}).get("message")

    def took(self, now: float) -> float | None:
        """Seconds it ran (so far, if it still runs); None if it never started."""
        return None if self.started is None else (self.finished or now) - self.started


@dataclass
class RunRecord:
    """The run itself: its state goes queued, running, then succeeded, failed or cancelled."""

    id: str | None
    state: StepState = StepState.QUEUED
    started: float | None = None
    finished: float | None = None
    reason: str | None = None
    executor: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """Copies of the run and its steps, taken at one moment."""

    run: RunRecord
    steps: dict[str, StepRecord]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for rec in self.steps.values():
            counts[rec.state.value] = counts.get(rec.state.value, 0) + 1
        return counts

    def table(self) -> str:
        """The plain-text table of steps (a kernel's text output, nbconvert, papermill)."""
        rows = [("step", "state", "time", "detail")]
        now = time.time()
        for name, rec in self.steps.items():
            took = rec.took(now)
            if rec.state == StepState.RUNNING and rec.total:
                detail = f"{rec.done}/{rec.total} cells"
            else:
                detail = rec.message or rec.reason or ""
            rows.append((name, rec.state.value, "" if took is None else f"{took:.1f}s", detail))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return "\n".join(("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3]))
                          + "  " + row[3]).rstrip() for row in rows)


class RunView(RunListener):
    """One run's state for display, kept from its events; safe to read from any thread."""

    def __init__(self, steps: Iterable[str], run_id: str | None = None) -> None:
        self._run = RunRecord(run_id)
        self._steps = {name: StepRecord() for name in steps}
        self._logs: dict[str, deque[str]] = {name: deque(maxlen=LOG_LINES)
                                             for name in [*self._steps, ""]}
        self._watchers: tuple[Watcher, ...] = ()
        self._lock = threading.Lock()

    # -- reading -----------------------------------------------------------------------------
    def snapshot(self, steps: Iterable[str] | None = None) -> Snapshot:
        """The run and its steps (only `steps`, when given, of those it knows)."""
        with self._lock:
            names = self._steps if steps is None else [n for n in steps if n in self._steps]
            return Snapshot(dataclasses.replace(self._run),
                            {n: _copy(self._steps[n]) for n in names})

    def states(self) -> dict[str, StepState]:
        with self._lock:
            return {name: rec.state for name, rec in self._steps.items()}

    def log(self, step: str, last: int | None = None) -> list[str]:
        """The step's latest log lines (at most LOG_LINES, or `last`); "" is the run's own."""
        with self._lock:
            lines = list(self._logs.get(step, ()))
        return lines[-last:] if last else lines

    def watch(self, watcher: Watcher) -> None:
        """Call `watcher(what, step)` after every change from now on, with `what` one of RUN,
        STATE, PROGRESS, LOG. What changed before is in `snapshot()`: a watcher that reads it
        after this call misses nothing. Watchers are called outside the view's lock, in the
        order of the events; one that raises is reported once and removed."""
        with self._lock:
            self._watchers = (*self._watchers, watcher)

    def unwatch(self, watcher: Watcher) -> None:
        with self._lock:
            # `!=`: a bound method is equal to another of the same object's, never to an id()
            self._watchers = tuple(w for w in self._watchers if w != watcher)

    # -- RunListener -------------------------------------------------------------------------
    def on_run_started(self, *, started: float, executor: str, run_id: str | None = None,
                       **_: Any) -> None:
        with self._lock:
            self._run.id = self._run.id or run_id
            self._run.state, self._run.started = StepState.RUNNING, started
            self._run.executor = executor
            watchers = self._watchers
        self._notify(watchers, RUN, "")

    def on_step_state(self, *, step: str, state: str, at: float, reason: str | None = None,
                      error: dict | None = None, attempt: int = 1,
                      reused_from: str | None = None, outputs: dict[str, str] | None = None,
                      fanout: dict | None = None, **_: Any) -> None:
        state = StepState(state)
        with self._lock:
            rec = self._steps.setdefault(step, StepRecord())
            self._logs.setdefault(step, deque(maxlen=LOG_LINES))
            rec.state, rec.since, rec.reason, rec.attempt = state, at, reason, attempt
            if state == StepState.RUNNING:  # a new attempt: no end, no error yet
                rec.started, rec.finished, rec.error = rec.started or at, None, None
                rec.failures = []
            if state.is_final:
                rec.started, rec.finished = rec.started or at, at
            if error:
                rec.error = error
            if reused_from:
                rec.reused_from = reused_from
            if outputs is not None:
                rec.outputs = dict(outputs)
            if fanout is not None:
                rec.failures = [dict(f) for f in fanout.get("failures") or ()]
            watchers = self._watchers
        self._notify(watchers, STATE, step)

    def on_step_log(self, *, step: str, line: str, **_: Any) -> None:
        with self._lock:
            self._logs.setdefault(step, deque(maxlen=LOG_LINES)).append(line)
            watchers = self._watchers
        self._notify(watchers, LOG, step)

    def on_step_progress(self, *, step: str, done: int, total: int, failed: int | None = None,
                         **_: Any) -> None:
        with self._lock:
            rec = self._steps.setdefault(step, StepRecord())
            rec.done, rec.total, rec.failed = done, total, failed
            watchers = self._watchers
        self._notify(watchers, PROGRESS, step)

    def on_run_finished(self, *, state: str, at: float, reason: str | None = None,
                        **_: Any) -> None:
        with self._lock:
            self._run.state, self._run.finished = StepState(state), at
            self._run.reason = reason
            watchers = self._watchers
        self._notify(watchers, RUN, "")

    def _notify(self, watchers: tuple[Watcher, ...], what: str, step: str) -> None:
        for watcher in watchers:
            try:
                watcher(what, step)
            except Exception:  # a broken display must not stop the view (nor the run)
                log.exception("display %r failed on %s; it gets no more changes", watcher, what)
                self.unwatch(watcher)


class ViewRenderer(RunListener, ABC):
    """A display drawn from a RunView (`self.view`, which it watches with `changed`). Events
    given to the display itself go to its view: a display can be fed by a runner or a replay."""

    view: RunView

    @abstractmethod
    def changed(self, what: str, step: str) -> None:
        """Draw what changed: `what` is RUN, STATE, PROGRESS or LOG; `step` the step it is of."""

    def on_run_started(self, **kw: Any) -> None:
        self.view.on_run_started(**kw)

    def on_step_state(self, **kw: Any) -> None:
        self.view.on_step_state(**kw)

    def on_step_log(self, **kw: Any) -> None:
        self.view.on_step_log(**kw)

    def on_step_progress(self, **kw: Any) -> None:
        self.view.on_step_progress(**kw)

    def on_run_finished(self, **kw: Any) -> None:
        self.view.on_run_finished(**kw)


def _copy(rec: StepRecord) -> StepRecord:
    return dataclasses.replace(rec, outputs=dict(rec.outputs), failures=list(rec.failures))
