"""What a run tells its listeners: typed lifecycle callbacks with keyword-only arguments.

The run store, the run's view (run/view.py: what the widget, the CLI progress and PipelineRun
show) and the server each subclass RunListener and override what they care about. A listener
that raises is reported once and removed, so a broken view never breaks a run; an `essential`
listener (the run store: history must be written) that raises stops the run instead: the
Broadcaster removes it, keeps its error in `failure`, and raises it to the code that emitted the
event (runner.py cancels the run and says why).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("mlpipe_jupyter")


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
                      key_parts: dict | None = None, reasons: list[str] | None = None,
                      fanout: dict | None = None) -> None: ...

    def on_step_log(self, *, run_id: str, step: str, line: str) -> None: ...

    # a fan-out step's done/total count mini-batches, and `failed` is given: only then, so a
    # listener written before fan-out steps still takes every other step's progress
    def on_step_progress(self, *, run_id: str, step: str, done: int, total: int,
                         failed: int | None = None) -> None: ...

    def on_run_finished(self, *, run_id: str, state: str, at: float,
                        reason: str | None = None) -> None: ...


Event = tuple[int, str, dict[str, Any]]  # (number, RunListener method, keyword arguments)


class _Inbox:
    """One non-essential listener in a Broadcaster: the events it has still to get, in order;
    `busy` while a thread delivers them (one thread at a time)."""

    __slots__ = ("listener", "queue", "busy", "skipped", "dropped")

    def __init__(self, listener: RunListener) -> None:
        self.listener = listener
        self.queue: deque[Event] = deque()
        self.busy = False
        self.skipped = 0  # the last event whose emitter found it busy: its holder passes it on
        self.dropped = False


class Broadcaster(RunListener):
    """Fans every callback out to its listeners, each getting the events in the order they were
    emitted, never called under a lock that step threads need to emit.

    One lock held around the calls (as before) let one slow listener, a widget flushing or a
    terminal printing, stall every step thread that emitted meanwhile. Instead an event goes in
    every listener's inbox, in emission order, and each inbox is delivered by one thread at a
    time: usually the emitting thread itself, so that a listener has the event when the emit
    returns. An emitter that finds a listener busy (another thread is in it) leaves the event
    in its inbox and goes on; the thread that frees the listener hands what was left to a
    thread of its own. A slow or blocked listener so delays only the thread inside it. The end
    of a run (`on_run_finished`) waits until every listener has had every event: whoever waits
    for a run then reads complete views.

    Essential listeners (the run store) are called by the emitter, in order, under `_ordered`:
    their failure must reach the emitter (it stops the run), so an emitter waits for them.
    """

    def __init__(self, listeners: list[RunListener] | None = None) -> None:
        self._ordered = threading.RLock()  # emission order; held while essentials are called
        self._lock = threading.Lock()  # the inboxes; never held while a listener runs
        self._idle = threading.Condition(self._lock)  # an inbox was freed
        self._essential: list[RunListener] = []
        self._inboxes: list[_Inbox] = []
        self._count = 0  # events emitted
        self._inside = threading.local()  # .depth: this thread is calling a listener
        self.failure: BaseException | None = None  # the first error of an essential listener
        for listener in listeners or []:
            self.add(listener)

    @property
    def listeners(self) -> list[RunListener]:
        with self._lock:
            return [*self._essential, *(box.listener for box in self._inboxes)]

    def add(self, listener: RunListener, *, catch_up: Callable[[], None] | None = None) -> None:
        """Add a listener; it gets the events emitted from now on. `catch_up()`, when given,
        runs first, once the events emitted so far have reached the listeners (so what it
        copies of the past includes them) and before any new one: no event falls in between."""
        with self._ordered:
            if catch_up is not None:
                self.drain()
                catch_up()
            with self._lock:
                if getattr(listener, "essential", False):
                    self._essential.append(listener)
                else:
                    self._inboxes.append(_Inbox(listener))

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every listener has had every event emitted so far; False on timeout.
        Called from inside a listener it returns at once (that listener is one it waits for)."""
        if getattr(self._inside, "depth", 0):
            return False
        with self._idle:
            return self._idle.wait_for(
                lambda: not any(b.busy or b.queue for b in self._inboxes), timeout)

    # -- delivery ----------------------------------------------------------------------------
    def _emit(self, method: str, **kwargs: Any) -> None:
        with self._ordered:
            with self._lock:
                self._count += 1
                event = (self._count, method, kwargs)
                boxes = list(self._inboxes)
                for box in boxes:
                    box.queue.append(event)
            try:
                raised = self._call_essential(method, kwargs)
            except BaseException:  # an interrupt: the others still get the event
                self._hand_over(boxes, event[0])
                raise
        for i, box in enumerate(boxes):
            try:
                self._serve(box, event[0])
            except BaseException:
                self._hand_over(boxes[i + 1:], event[0])
                raise
        if method == "on_run_finished":
            self.drain()
        if raised is not None:
            raise raised

    def _call_essential(self, method: str, kwargs: dict[str, Any]) -> BaseException | None:
        raised = None
        for listener in list(self._essential):
            try:
                getattr(listener, method)(**kwargs)
            except Exception as err:
                with self._lock:
                    self._essential = [x for x in self._essential if x is not listener]
                self.failure = self.failure or err
                raised = raised or err
        return raised

    def _serve(self, box: _Inbox, upto: int) -> None:
        """Deliver `box`'s events up to number `upto` (this thread's), the earlier ones of
        emitters yet to come to it included; if another thread is in the listener, leave it
        this event to pass on."""
        with self._lock:
            if box.busy:
                box.skipped = max(box.skipped, upto)
                return
            box.busy = True
        try:
            while True:
                with self._lock:
                    if box.dropped or not box.queue or box.queue[0][0] > upto:
                        break
                    event = box.queue.popleft()
                self._call(box, event)
        finally:
            with self._lock:
                box.busy = False
                if box.queue and box.queue[0][0] <= box.skipped:
                    self._spawn(box)  # no emitter comes back for these
                self._idle.notify_all()

    def _hand_over(self, boxes: list[_Inbox], upto: int) -> None:
        """This thread delivers no more (it was interrupted): `boxes` get their events from
        their holder or from a thread of their own."""
        with self._lock:
            for box in boxes:
                if box.busy:
                    box.skipped = max(box.skipped, upto)
                elif box.queue:
                    self._spawn(box)

    def _spawn(self, box: _Inbox) -> None:
        """(Under `_lock`, `box` free.) A thread delivers what is in it, then frees it."""
        if box.dropped:
            return
        box.busy = True
        threading.Thread(target=self._deliver_rest, args=(box,), daemon=True,
                         name="mlpipe-events").start()

    def _deliver_rest(self, box: _Inbox) -> None:
        while True:
            with self._lock:
                if box.dropped or not box.queue:
                    box.busy = False
                    self._idle.notify_all()
                    return
                event = box.queue.popleft()
            self._call(box, event)

    def _call(self, box: _Inbox, event: Event) -> None:
        _, method, kwargs = event
        self._inside.depth = getattr(self._inside, "depth", 0) + 1
        try:
            getattr(box.listener, method)(**kwargs)
        except Exception:
            with self._lock:  # removed from the list itself: an id() could name another later
                box.dropped = True
                box.queue.clear()
                self._inboxes = [b for b in self._inboxes if b is not box]
            log.exception("listener %r failed on %s; it gets no more events",
                          box.listener, method)
        finally:
            self._inside.depth -= 1

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
