"""The Broadcaster alone: listeners are never called under a lock emitters need, each gets the
events in emission order, a raising one is reported once and dropped by identity, an essential
one's failure reaches the emitter, and `add(catch_up=...)` and the run's end lose no event."""

from __future__ import annotations

import logging
import threading

import pytest

from mlpipe_jupyter.run.events import Broadcaster, RunListener

WAIT = 30  # seconds a test waits for a condition before it fails


def emit(events: Broadcaster, line: str, step: str = "s") -> None:
    events.on_step_log(run_id="r", step=step, line=line)


class Lines(RunListener):
    """Keeps the lines it is given."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()

    def on_step_log(self, *, line: str, **_) -> None:
        with self.changed:
            self.lines.append(line)
            self.changed.notify_all()

    def wait_for(self, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.lines) >= count, WAIT)


class Gate(Lines):
    """Blocks in its first call until released."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.release = threading.Event()

    def on_step_log(self, **kw) -> None:
        if not self.inside.is_set():
            self.inside.set()
            assert self.release.wait(WAIT)
        super().on_step_log(**kw)


class Store(Lines):
    essential = True


def blocked(events: Broadcaster, gate: Gate, line: str = "0") -> threading.Thread:
    """A thread that emitted `line` and is now held inside `gate`."""
    thread = threading.Thread(target=emit, args=(events, line))
    thread.start()
    assert gate.inside.wait(WAIT)
    return thread


def test_a_blocked_listener_holds_only_the_thread_inside_it():
    gate, after, store = Gate(), Lines(), Store()
    events = Broadcaster([gate, after, store])
    holder = blocked(events, gate)
    for i in range(1, 100):  # another thread emits on, while `gate` holds the first one
        emit(events, str(i))
    expected = [str(i) for i in range(100)]
    # the others got everything, the held thread's event too, in order
    assert store.lines == expected and after.lines == expected
    assert gate.lines == [] and holder.is_alive()
    gate.release.set()
    holder.join(WAIT)
    assert events.drain(WAIT)
    assert gate.lines == expected  # what waited for it came after, in order


def test_every_listener_gets_the_events_in_the_same_order():
    """Eight threads emit at once through slow and fast listeners: each listener sees the
    order the essential one (called in emission order) saw, and each thread's own order."""
    slow = type("Slow", (Lines,), {"on_step_log": lambda self, **kw: (
        threading.Event().wait(0.0005), Lines.on_step_log(self, **kw))})()
    store, fast = Store(), Lines()
    events = Broadcaster([slow, store, fast])
    start = threading.Barrier(8)

    def emitter(n: int) -> None:
        start.wait()
        for i in range(150):
            emit(events, f"{n}:{i}")

    threads = [threading.Thread(target=emitter, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert events.drain(WAIT)
    assert len(store.lines) == 8 * 150
    assert slow.lines == store.lines and fast.lines == store.lines
    for n in range(8):
        mine = [line for line in store.lines if line.startswith(f"{n}:")]
        assert mine == [f"{n}:{i}" for i in range(150)]


def test_a_raising_listener_is_reported_once_and_dropped_by_identity(caplog):
    class Same(Lines):
        """Equal to every other Same: only identity tells them apart."""

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Same)

        __hash__ = object.__hash__

    class Broken(Same):
        def on_step_log(self, **kw) -> None:
            super().on_step_log(**kw)
            raise RuntimeError("view bug")

    broken, twin = Broken(), Same()
    events = Broadcaster([broken, twin])
    with caplog.at_level(logging.ERROR, logger="mlpipe_jupyter"):
        for i in range(5):
            emit(events, str(i))
    assert broken.lines == ["0"] and twin.lines == ["0", "1", "2", "3", "4"]
    assert [r.getMessage() for r in caplog.records if "view bug" in str(r.exc_info)] == [
        f"listener {broken!r} failed on on_step_log; it gets no more events"]
    assert events.listeners == [twin] and events.listeners[0] is twin


def test_a_listener_that_raises_with_events_waiting_gets_none_of_them(caplog):
    class Fails(Gate):
        def on_step_log(self, **kw) -> None:
            super().on_step_log(**kw)
            raise RuntimeError("view bug")

    fails, other = Fails(), Lines()
    events = Broadcaster([fails, other])
    holder = blocked(events, fails)
    for i in range(1, 10):  # queued for `fails` while it holds the first one
        emit(events, str(i))
    with caplog.at_level(logging.ERROR, logger="mlpipe_jupyter"):
        fails.release.set()
        holder.join(WAIT)
        assert events.drain(WAIT)
    assert fails.lines == ["0"] and other.lines == [str(i) for i in range(10)]
    assert len([r for r in caplog.records if "view bug" in str(r.exc_info)]) == 1
    assert fails not in events.listeners


def test_an_essential_failure_reaches_the_emitting_thread():
    class Down(RunListener):
        essential = True

        def on_step_log(self, *, line, **_) -> None:
            if line == "2":
                raise OSError("store down")

    down, view = Down(), Lines()
    events = Broadcaster([down, view])
    emit(events, "1")
    caught: list[BaseException] = []

    def step_thread() -> None:
        try:
            emit(events, "2")
        except OSError as err:
            caught.append(err)

    thread = threading.Thread(target=step_thread)
    thread.start()
    thread.join(WAIT)
    assert [str(e) for e in caught] == ["store down"] and events.failure is caught[0]
    assert down not in events.listeners
    emit(events, "3")  # the store is gone; the views go on to the end of the run
    assert view.lines == ["1", "2", "3"]


def test_the_end_of_a_run_waits_until_every_listener_had_every_event():
    class Store(RunListener):
        essential = True
        ending = threading.Event()

        def on_run_finished(self, **_) -> None:  # called by the ending thread, first
            self.ending.set()

    gate, store = Gate(), Store()
    events = Broadcaster([store, gate])
    holder = blocked(events, gate)
    emit(events, "1")  # left in gate's inbox: the holder is inside it
    seen: list[list[str]] = []
    ender = threading.Thread(target=lambda: (
        events.on_run_finished(run_id="r", state="succeeded", at=0.0),
        seen.append(list(gate.lines))))
    ender.start()
    assert store.ending.wait(WAIT)  # the end is being emitted while gate holds the first line
    gate.release.set()
    ender.join(WAIT)
    holder.join(WAIT)
    assert seen == [["0", "1"]]  # on_run_finished returned once gate had had everything


def test_a_listener_added_with_catch_up_misses_nothing():
    """Lines are emitted all along; a second view is added mid-way, catching up from the first
    (which is slow, so events are in flight when it is added): together they are every line,
    once, in order."""
    first = type("Slow", (Lines,), {"on_step_log": lambda self, **kw: (
        threading.Event().wait(0.001), Lines.on_step_log(self, **kw))})()
    events = Broadcaster([first])
    second = Lines()
    copied: list[str] = []
    half = threading.Event()

    def emitter() -> None:
        for i in range(300):
            emit(events, str(i))
            if i == 100:
                half.set()

    thread = threading.Thread(target=emitter)
    thread.start()
    assert half.wait(WAIT)
    events.add(second, catch_up=lambda: copied.extend(first.lines))
    thread.join(WAIT)
    assert events.drain(WAIT)
    assert copied + second.lines == [str(i) for i in range(300)]
    assert len(copied) > 100


@pytest.mark.parametrize("where", ["essential", "view"])
def test_an_interrupt_inside_a_listener_loses_no_event_for_the_others(where):
    class Interrupted(Lines):
        essential = where == "essential"

        def on_step_log(self, *, line, **kw) -> None:
            super().on_step_log(line=line, **kw)
            if line == "1":
                raise KeyboardInterrupt

    interrupted, view = Interrupted(), Lines()
    events = Broadcaster([interrupted, view] if where == "view" else [view, interrupted])
    emit(events, "0")
    with pytest.raises(KeyboardInterrupt):
        emit(events, "1")
    emit(events, "2")
    assert events.drain(WAIT)
    assert view.lines == ["0", "1", "2"] and interrupted.lines == ["0", "1", "2"]
