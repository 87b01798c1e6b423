"""The live DAG widget: an anywidget whose ES module ships in `static/`, fed by a run's events.

Protocol (kernel -> browser), chosen so that a 200-step run stays cheap:
- `graph`: nodes with positions and edges with artifact labels, sent once per pipeline;
- `steps`: a full snapshot of every step's state, sent at the start, at the end (so the final
  state is always shown, whatever was coalesced) and when a new view asks for it (`sync`);
- `patch`: only the steps that changed since the last flush, at most `1/interval` per second;
- `detail`: the clicked step's panel (log tail, error, cache reason, executed notebook).
Browser -> kernel: `selected` (a trait) and custom messages `sync`, `cancel`, `retry`.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets as t

from ..home import Home
from ..model.states import StepState
from ..run.view import LOG, PROGRESS, RUN, STATE, RunView, StepRecord, ViewRenderer
from .layout import layout

if TYPE_CHECKING:
    import networkx as nx

    from .handle import PipelineRun

STATIC = Path(__file__).with_name("static")
# the widget's ES module in parts, joined in this order (anywidget loads one module, no imports):
# states and pure functions, then DOM builders, then the view and its default export
ESM_PARTS = ("dag_logic.js", "dag_draw.js", "dag_widget.js")
IDLE = "idle"  # `%pipeline show`: registered, not run
LOG_TAIL = 40  # log lines a step's panel shows
INTERVAL = 0.2  # seconds between flushes: at most 5 trait updates a second


def _shown(rec: StepRecord) -> dict[str, Any]:
    """A step as the browser gets it: a fixed key set (it merges patches field by field)."""
    return {"state": rec.state.value, "started": rec.started, "finished": rec.finished,
            "done": rec.done, "total": rec.total, "failed": rec.failed, "reason": rec.reason,
            "error": rec.message, "attempt": rec.attempt, "reused_from": rec.reused_from}


def _idle() -> dict[str, Any]:
    return {**_shown(StepRecord()), "state": IDLE}


class DagWidget(anywidget.AnyWidget):
    """The DAG of one pipeline and the live state of its current run."""

    _esm = "\n".join((STATIC / part).read_text(encoding="utf-8") for part in ESM_PARTS)
    _css = STATIC / "dag_widget.css"

    graph = t.Dict().tag(sync=True)
    steps = t.Dict().tag(sync=True)
    patch = t.Dict().tag(sync=True)
    run = t.Dict().tag(sync=True)
    detail = t.Dict().tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    selected = t.Unicode("").tag(sync=True)

    def __init__(self, graph: nx.DiGraph | None = None, *, order: list[str] | None = None,
                 message: str = "", title: str = "", **kwargs: Any) -> None:
        drawn = layout(graph) if graph is not None else {"nodes": [], "edges": [],
                                                           "width": 0, "height": 0}
        if graph is not None:
            for node in drawn["nodes"]:
                spec = graph.nodes[node["name"]]["spec"]
                node["outputs"] = list(spec.outputs)
        drawn["title"] = title
        names = order if order is not None else [n["name"] for n in drawn["nodes"]]
        super().__init__(graph=drawn, message=message, **kwargs)
        self.order = list(names)
        self.steps = {name: _idle() for name in self.order}
        self.run = {"id": None, "state": IDLE, "now": time.time()}
        self.handle: PipelineRun | None = None
        self.feed: RunFeed | None = None
        self._send_lock = threading.RLock()  # one flush at a time, in order
        self.on_msg(self._on_custom)
        self.observe(self._on_selected, names=["selected"])

    # -- following a run ---------------------------------------------------------------------
    def follow(self, handle: PipelineRun) -> RunFeed:
        """Show `handle`'s run from now on (a retry reuses the widget of the failed run)."""
        runner = handle.runner
        # the feed watches the handle's view before attach() reads it: no event is lost
        feed = RunFeed(self, runner.run_id, runner.order, base_dir=runner.base_dir,
                       runs_dir=runner.home.runs, view=handle.view)
        self.attach(feed, handle)
        if handle.view.snapshot(()).run.state == StepState.RUNNING:
            feed.start()
        return feed

    def attach(self, feed: RunFeed, handle: PipelineRun | None = None) -> None:
        """Show the run `feed` keeps; its events may come from anywhere (a runner, a replay).
        `handle`, when given, is what the Cancel and Retry buttons act on."""
        with self._send_lock:
            if self.feed is not None:
                self.feed.close()
            self.handle, self.feed = handle, feed
            self.order = list(feed.order)
            with self.hold_sync():
                self.steps = {**{n: _idle() for n in self.graph_names()},
                              **feed.snapshot()}
                self.run = feed.run_info()
                # a retry keeps the clicked step open: its new attempt is what one wants to see
                self.detail = feed.detail(self.selected) if self.selected else {}

    def graph_names(self) -> list[str]:
        return [n["name"] for n in self.graph.get("nodes", [])]

    # -- from the browser --------------------------------------------------------------------
    def _on_custom(self, _widget: Any, content: dict, _buffers: list) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "sync":
            self.resync()
        elif kind == "cancel" and self.handle is not None:
            # PipelineRun.cancel() waits for the run to stop: never on the comm's thread
            handle = self.handle
            self._set_run(cancelling=True)
            threading.Thread(target=handle.cancel, name="mlpipe-cancel", daemon=True).start()
        elif kind == "retry" and self.handle is not None:
            threading.Thread(target=self._retry, name="mlpipe-retry", daemon=True).start()

    def _retry(self) -> None:
        handle = self.handle
        if handle is None or not handle.done:
            return
        self._set_run(retrying=True)
        try:
            handle.retry_failed(widget=self)
        except Exception as err:  # shown in the widget: nobody would see it raised here
            self._set_run(retrying=False, error=f"retry failed: {err}")

    def _set_run(self, **fields: Any) -> None:
        with self._send_lock:
            self.run = {**self.run, **fields, "now": time.time()}

    def _on_selected(self, change: dict) -> None:
        with self._send_lock:
            self.detail = self.feed.detail(change["new"]) if self.feed and change["new"] else {}

    def resync(self) -> None:
        """Send the full state again (a view rendered late, or after a page reload)."""
        with self._send_lock:
            if self.feed is None:
                return
            with self.hold_sync():
                self.steps = {**self.steps, **self.feed.snapshot()}
                self.run = self.feed.run_info()
                if self.selected:
                    self.detail = self.feed.detail(self.selected)

    def set_waiting(self, waiting: bool) -> None:
        """The kernel is blocked in `wait()`: the Cancel button cannot reach it then."""
        if self.feed is not None:
            self.feed.waiting = waiting
            self._set_run(waiting=waiting)

    # -- text, for frontends without widgets -------------------------------------------------
    def __repr__(self) -> str:
        if self.message:
            return f"pipeline: {self.message}"
        if self.feed is None:
            names = self.graph_names()
            if not names:
                return "pipeline: no steps registered"
            by_layer: dict[int, list[str]] = {}
            for node in self.graph["nodes"]:
                by_layer.setdefault(node["layer"], []).append(node["name"])
            lines = [f"pipeline: {len(names)} steps in {len(by_layer)} layers (not run)"]
            lines += [f"  {i + 1}. " + ", ".join(layer) for i, layer in sorted(by_layer.items())]
            return "\n".join(lines)
        return self.feed.table()


class RunFeed(ViewRenderer):
    """Sends one run's state, kept by its RunView, to a DagWidget, coalesced.

    The view changes on runner threads at any rate; the feed only notes which steps changed. A
    flush thread sends them at most every `interval` seconds; the end of the run stops it and
    sends the complete final state. Without a `view`, the feed keeps one of its own, fed by the
    events given to the feed (a replay).
    """

    def __init__(self, widget: DagWidget, run_id: str, order: list[str], *, base_dir: Path,
                 runs_dir: Path, view: RunView | None = None,
                 interval: float = INTERVAL) -> None:
        self.widget = widget
        self.run_id = run_id
        self.order = list(order)
        self.base_dir = Path(base_dir)
        self.home = Home(Path(runs_dir).parent)  # runs_dir is a Home's `runs`
        self.interval = interval
        self.waiting = False
        self.flushes = 0  # trait updates sent, for tests and the benchmark
        self._dirty: set[str] = set()  # steps to send; "" stands for the run (the header)
        self._detail_dirty = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.view = view if view is not None else RunView(order, run_id=run_id)
        self.view.watch(self.changed)

    def start(self) -> None:
        """Start flushing (once; never after the run finished)."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name=f"mlpipe-widget-{self.run_id}")
            self._thread.start()

    def changed(self, what: str, step: str) -> None:
        if what == RUN:
            if self.view.snapshot(()).run.state.is_final:
                self._finish()
            else:
                with self._lock:
                    self._dirty.add("")
                self.start()
            return
        with self._lock:
            if what in (STATE, PROGRESS) or (what == LOG and not step):
                self._dirty.add(step)  # the header shows the latest run-level line too
            if what in (STATE, LOG) and step and step == self.widget.selected:
                self._detail_dirty = True

    def _finish(self) -> None:
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)
        self.flush(final=True)

    # -- flushing ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        """Stop sending to the widget (it follows another run now)."""
        self._closed = True
        self._stop.set()
        self.view.unwatch(self.changed)

    def flush(self, final: bool = False) -> bool:
        """Send what changed (or, if `final`, everything); False when there was nothing."""
        widget = self.widget
        with widget._send_lock:
            if self._closed:
                return False
            with self._lock:
                dirty, self._dirty = self._dirty, set()
                detail_dirty, self._detail_dirty = self._detail_dirty, False
            if not (dirty or detail_dirty or final):
                return False
            steps = self.view.snapshot(None if final else dirty).steps
            changed = {n: _shown(rec) for n, rec in steps.items()}
            with widget.hold_sync():
                if final:
                    widget.steps = {**widget.steps, **changed}
                elif changed:
                    widget.patch = {"seq": self.flushes + 1, "steps": changed,
                                    "now": time.time()}
                if final or "" in dirty or not changed:
                    widget.run = self.run_info()
                if (detail_dirty or final) and widget.selected:
                    widget.detail = self.detail(widget.selected)
            self.flushes += 1
            return True

    # -- views of the state ------------------------------------------------------------------
    def snapshot(self) -> dict[str, dict]:
        return {n: _shown(rec) for n, rec in self.view.snapshot().steps.items()}

    def run_info(self) -> dict[str, Any]:
        snap = self.view.snapshot()
        run, final = snap.run, snap.run.state.is_final
        last = self.view.log("", 1)
        retryable = final and any(not rec.state.is_ok for rec in snap.steps.values())
        return {"id": self.run_id, "state": run.state.value, "reason": run.reason,
                "started": run.started, "finished": run.finished, "executor": run.executor,
                "counts": snap.counts(), "now": time.time(), "log": last[0] if last else None,
                "waiting": self.waiting and not final, "can_cancel": not final,
                "can_retry": retryable, "steps_dir": self._rel(self.home.run_dir(self.run_id))}

    def detail(self, step: str) -> dict[str, Any]:
        """The panel of one step: state, times, cache reason, error, failed mini-batches, log tail,
        notebook link."""
        rec = self.view.snapshot([step]).steps.get(step)
        if rec is None:
            return {}
        cached = rec.state == StepState.CACHED
        out = {"step": step, **_shown(rec),
               "error": dict(rec.error) if rec.error and not rec.state.is_ok else None,
               "log": self.view.log(step, LOG_TAIL), "outputs": rec.outputs}
        if rec.failures:  # a fan-out step's failed mini-batches: the panel lists them
            out["failures"] = rec.failures
        # a reused step's notebook and log are those of the run that computed it
        files = self.home.step_files((rec.reused_from if cached else None) or self.run_id, step)
        out["notebook"] = {"href": self._rel(files.output), "path": str(files.output),
                           "exists": files.output.is_file()}
        if cached and not out["log"] and files.log.is_file():
            lines = files.log.read_text(encoding="utf-8", errors="replace").splitlines()
            out["log"] = lines[-LOG_TAIL:]
        return out

    def _rel(self, path: Path) -> str:
        # links are relative to the notebook's directory (the kernel's cwd); the browser
        # resolves them against the page's /lab/tree/<notebook> URL
        return Path(os.path.relpath(path, self.base_dir)).as_posix()

    def table(self) -> str:
        """A plain-text table of steps and states (nbconvert, papermill, terminals)."""
        snap = self.view.snapshot()
        return f"run {self.run_id}: {snap.run.state.value}\n{snap.table()}"
