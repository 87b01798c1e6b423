"""What a run tells its listeners: typed lifecycle callbacks with keyword-only arguments.

The widget, the run store, the CLI progress and the server each subclass RunListener and
override what they care about. A listener that raises is reported once and then ignored, so a
broken view never breaks a run.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("mlpipe_jupyter")

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
CACHED, SKIPPED, CANCELLED = "cached", "skipped", "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CACHED, SKIPPED, CANCELLED)
FINAL = frozenset({SUCCEEDED, FAILED, CACHED, SKIPPED, CANCELLED})
OK = frozenset({SUCCEEDED, CACHED})


class RunListener:
    def on_run_started(self, *, run_id: str, notebook: str, params: dict[str, Any],
                       steps: list[str], executor: str, started: float) -> None: ...

    def on_step_state(self, *, run_id: str, step: str, state: str, at: float,
                      reason: str | None = None, error: dict | None = None, attempt: int = 1,
                      cache_key: str | None = None, reused_from: str | None = None,
                      outputs: dict[str, str] | None = None,
                      key_parts: dict | None = None) -> None: ...

    def on_step_log(self, *, run_id: str, step: str, line: str) -> None: ...

    def on_step_progress(self, *, run_id: str, step: str, done: int, total: int) -> None: ...

    def on_run_finished(self, *, run_id: str, state: str, at: float,
                        reason: str | None = None) -> None: ...


class Broadcaster(RunListener):
    """Fans every callback out to its listeners, thread-safely and in order."""

    def __init__(self, listeners: list[RunListener] | None = None) -> None:
        self.listeners = list(listeners or [])
        self._lock = threading.RLock()
        self._broken: set[int] = set()

    def add(self, listener: RunListener, *, catch_up=None) -> None:
        """Add a listener. `catch_up()`, when given, runs under the same lock, so that no
        event falls between what it copies of the past and the listener's first event."""
        with self._lock:
            if catch_up is not None:
                catch_up()
            self.listeners.append(listener)

    def _emit(self, method: str, **kwargs: Any) -> None:
        with self._lock:
            for listener in self.listeners:
                if id(listener) in self._broken:
                    continue
                try:
                    getattr(listener, method)(**kwargs)
                except Exception:
                    self._broken.add(id(listener))
                    log.exception("listener %r failed on %s; it gets no more events",
                                  listener, method)

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
