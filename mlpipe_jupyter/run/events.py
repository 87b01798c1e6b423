"""What a run tells its listeners: typed lifecycle callbacks with keyword-only arguments.

The widget, the run store, the CLI progress and the server each subclass RunListener and
override what they care about. A listener that raises is reported once and removed, so a
broken view never breaks a run; an `essential` listener (the run store: history must be written)
that raises stops the run instead: the Broadcaster removes it, keeps its error in `failure`, and
raises it to the code that emitted the event (runner.py cancels the run and says why).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger("mlpipe_jupyter")

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
CACHED, SKIPPED, CANCELLED = "cached", "skipped", "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CACHED, SKIPPED, CANCELLED)
FINAL = frozenset({SUCCEEDED, FAILED, CACHED, SKIPPED, CANCELLED})
OK = frozenset({SUCCEEDED, CACHED})


class RunListener:
    essential = False  # True: its failure stops the run (Broadcaster)

    def on_run_started(self, *, run_id: str, notebook: str, params: dict[str, Any],
                       steps: list[str], executor: str, started: float,
                       defaults: dict[str, Any] | None = None, experiment: str | None = None,
                       source: str | None = None, pipeline: str | None = None,
                       pipeline_version: int | None = None) -> None: ...

    def on_step_state(self, *, run_id: str, step: str, state: str, at: float,
                      reason: str | None = None, error: dict | None = None, attempt: int = 1,
                      cache_key: str | None = None, reused_from: str | None = None,
                      outputs: dict[str, str] | None = None,
                      key_parts: dict | None = None, reasons: list[str] | None = None
                      ) -> None: ...

    def on_step_log(self, *, run_id: str, step: str, line: str) -> None: ...

    def on_step_progress(self, *, run_id: str, step: str, done: int, total: int) -> None: ...

    def on_run_finished(self, *, run_id: str, state: str, at: float,
                        reason: str | None = None) -> None: ...


class Broadcaster(RunListener):
    """Fans every callback out to its listeners, thread-safely and in order."""

    def __init__(self, listeners: list[RunListener] | None = None) -> None:
        self.listeners = list(listeners or [])
        self._lock = threading.RLock()
        self.failure: BaseException | None = None  # the first error of an essential listener

    def add(self, listener: RunListener, *, catch_up=None) -> None:
        """Add a listener. `catch_up()`, when given, runs under the same lock, so that no
        event falls between what it copies of the past and the listener's first event."""
        with self._lock:
            if catch_up is not None:
                catch_up()
            self.listeners.append(listener)

    def _emit(self, method: str, **kwargs: Any) -> None:
        raised: BaseException | None = None
        with self._lock:
            for listener in list(self.listeners):
                try:
                    getattr(listener, method)(**kwargs)
                except Exception as err:
                    # removed from the list itself: an id() could name a new listener later
                    self.listeners = [x for x in self.listeners if x is not listener]
                    if getattr(listener, "essential", False):
                        self.failure = self.failure or err
                        raised = raised or err
                    else:
                        log.exception("listener %r failed on %s; it gets no more events",
                                      listener, method)
        if raised is not None:
            raise raised

    def on_run_started(self, **kw: Any) -> None:
        self._emit("on_run_started", **kw)

    def on_step_state(self, **kw: Any) -> None:
        self._emit("on_step_state", **kw)

    def on_step_log(self, **kw: Any) -> None:
        self._emit("on_step_log", **kw)

    def on_step_progress(self, **kw: Any) -> None:
        self._emit("on_step_progress", **kw)

    def on_run_finished(self, **kw: Any) -> None:
        self._emit("on_run_finished", **kw)


class StepView(RunListener):
    """The latest known state of every step of one run, kept from the runner's events."""

    def __init__(self, steps: list[str]) -> None:
        self.steps: dict[str, dict[str, Any]] = {
            name: {"state": QUEUED, "reason": None, "error": None, "started": None,
                   "finished": None, "attempt": 1, "outputs": {}, "done": 0, "total": 0}
            for name in steps}
        self.logs: dict[str, list[str]] = {name: [] for name in steps}
        self.lock = threading.Lock()

    def on_step_state(self, *, step, state, at, reason=None, error=None, attempt=1,
                      outputs=None, **_) -> None:
        with self.lock:
            info = self.steps.setdefault(step, {})
            info.update(state=state, reason=reason, attempt=attempt)
            if error is not None:
                info["error"] = error
            if state == "running":
                info["started"] = info.get("started") or at
            if state in FINAL:
                info["finished"] = at
                info["started"] = info.get("started") or at
            if outputs is not None:
                info["outputs"] = outputs

    def on_step_log(self, *, step, line, **_) -> None:
        with self.lock:
            lines = self.logs.setdefault(step, [])
            lines.append(line)
            del lines[:-200]

    def on_step_progress(self, *, step, done, total, **_) -> None:
        with self.lock:
            self.steps.setdefault(step, {}).update(done=done, total=total)

    def table(self) -> str:
        rows = [("step", "state", "time", "detail")]
        with self.lock:
            for name, info in self.steps.items():
                started, finished = info.get("started"), info.get("finished")
                took = (finished or time.time()) - started if started else None
                detail = ""
                if info.get("error"):
                    detail = info["error"].get("message", "")
                elif info.get("reason"):
                    detail = info["reason"]
                rows.append((name, info["state"], f"{took:.1f}s" if took is not None else "",
                             detail))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
            for row in rows).rstrip()
