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
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets as t

from ..run.events import FINAL, OK, QUEUED, RUNNING, RunListener
from .layout import layout

if TYPE_CHECKING:
    import networkx as nx

    from .handle import PipelineRun

STATIC = Path(__file__).with_name("static")
IDLE = "idle"  # `%pipeline show`: registered, not run
LOG_TAIL = 40
INTERVAL = 0.2  # seconds between flushes: at most 5 trait updates a second


def _record(state: str = QUEUED) -> dict[str, Any]:
    # a fixed key set: the browser merges patches field by field
    return {"state": state, "started": None, "finished": None, "done": 0, "total": 0,
            "reason": None, "error": None, "attempt": 1, "reused_from": None}


class DagWidget(anywidget.AnyWidget):
    """The DAG of one pipeline and the live state of its current run."""

    _esm = STATIC / "dag_widget.js"
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
        self.steps = {name: _record(IDLE) for name in self.order}
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
        feed = RunFeed(self, runner.run_id, runner.order, base_dir=runner.base_dir,
                       runs_dir=runner.home.runs)
        # what the handle's StepView has seen is copied in with no event lost in between
        runner.events.add(feed, catch_up=lambda: feed.seed(handle.view, runner.state))
        self.attach(feed, handle)
        if runner.state == RUNNING:
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
                self.steps = {**{n: _record(IDLE) for n in self.graph_names()},
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


class RunFeed(RunListener):
    """Keeps one run's state from its events and flushes it to a DagWidget, coalesced.

    Events arrive on runner threads at any rate; they only touch dicts under a lock. A flush
    thread sends what changed at most every `interval` seconds; `on_run_finished` stops it and
    sends the complete final state.
    """

    def __init__(self, widget: DagWidget, run_id: str, order: list[str], *, base_dir: Path,
                 runs_dir: Path, interval: float = INTERVAL) -> None:
        self.widget = widget
        self.run_id = run_id
        self.order = list(order)
        self.base_dir = Path(base_dir)
        self.runs_dir = Path(runs_dir)
        self.interval = interval
        self.records = {name: _record() for name in order}
        self.errors: dict[str, dict] = {}
        self.outputs: dict[str, dict[str, str]] = {}
        self.logs: dict[str, deque[str]] = {name: deque(maxlen=LOG_TAIL) for name in order}
        self.logs[""] = deque(maxlen=LOG_TAIL)  # run-level lines (image build, ...)
        self.info: dict[str, Any] = {"id": run_id, "state": QUEUED, "reason": None,
                                     "started": None, "finished": None, "executor": None}
        self.waiting = False
        self.flushes = 0  # trait updates sent, for tests and the benchmark
        self._dirty: set[str] = set()
        self._detail_dirty = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def seed(self, view: Any, run_state: str) -> None:
        """Start from what a StepView has seen so far (a widget made after the run began)."""
        with view.lock, self._lock:
            for name, info in view.steps.items():
                rec = self.records.setdefault(name, _record())
                rec.update({k: info[k] for k in rec if info.get(k) is not None})
                if info.get("error"):
                    self.errors[name] = info["error"]
                    rec["error"] = info["error"].get("message")
                if info.get("outputs"):
                    self.outputs[name] = dict(info["outputs"])
                self.logs.setdefault(name, deque(maxlen=LOG_TAIL)).extend(
                    view.logs.get(name, ())[-LOG_TAIL:])
            starts = [r["started"] for r in self.records.values() if r["started"]]
            ends = [r["finished"] for r in self.records.values() if r["finished"]]
            self.info.update(state=run_state, started=min(starts, default=None),
                             finished=max(ends, default=None) if run_state in FINAL else None)

    def start(self) -> None:
        """Start flushing (once; never after the run finished)."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name=f"mlpipe-widget-{self.run_id}")
            self._thread.start()

    # -- RunListener -------------------------------------------------------------------------
    def on_run_started(self, *, run_id, started, executor, **_) -> None:
        with self._lock:
            self.info.update(state=RUNNING, started=started, executor=executor)
            self._dirty.add("")  # "" stands for the run itself: the header
        self.start()

    def on_step_state(self, *, step, state, at, reason=None, error=None, attempt=1,
                      reused_from=None, outputs=None, **_) -> None:
        with self._lock:
            rec = self.records.setdefault(step, _record())
            rec.update(state=state, reason=reason, attempt=attempt)
            if state == RUNNING:
                rec["started"] = rec["started"] or at
                rec["finished"] = None
                rec["error"] = None
            if state in FINAL:
                rec["finished"] = at
                rec["started"] = rec["started"] or at
            if reused_from:
                rec["reused_from"] = reused_from
            if error:
                self.errors[step] = error
                rec["error"] = error.get("message")
            if outputs:
                self.outputs[step] = outputs
            self._dirty.add(step)
            if step == self.widget.selected:
                self._detail_dirty = True

    def on_step_log(self, *, step, line, **_) -> None:
        with self._lock:
            self.logs.setdefault(step, deque(maxlen=LOG_TAIL)).append(line)
            if step == "":
                self._dirty.add("")  # the header shows the latest run-level line too
            elif step == self.widget.selected:
                self._detail_dirty = True

    def on_step_progress(self, *, step, done, total, **_) -> None:
        with self._lock:
            self.records.setdefault(step, _record()).update(done=done, total=total)
            self._dirty.add(step)

    def on_run_finished(self, *, state, at, reason=None, **_) -> None:
        with self._lock:
            self.info.update(state=state, finished=at, reason=reason)
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
                changed = {n: dict(self.records[n]) for n in dirty if n in self.records}
                snapshot = {n: dict(r) for n, r in self.records.items()} if final else None
            with widget.hold_sync():
                if final:
                    widget.steps = {**widget.steps, **snapshot}
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
        with self._lock:
            return {n: dict(r) for n, r in self.records.items()}

    def run_info(self) -> dict[str, Any]:
        with self._lock:
            counts: dict[str, int] = {}
            for rec in self.records.values():
                counts[rec["state"]] = counts.get(rec["state"], 0) + 1
            last = self.logs[""][-1] if self.logs[""] else None
            final = self.info["state"] in FINAL
            retryable = final and any(r["state"] not in OK for r in self.records.values())
            return {**self.info, "counts": counts, "now": time.time(), "log": last,
                    "waiting": self.waiting and not final, "can_cancel": not final,
                    "can_retry": retryable, "steps_dir": self._rel(self.runs_dir / self.run_id)}

    def detail(self, step: str) -> dict[str, Any]:
        """The panel of one step: state, times, cache reason, error, log tail, notebook link."""
        with self._lock:
            rec = self.records.get(step)
            if rec is None:
                return {}
            error = dict(self.errors.get(step) or {}) if rec["state"] not in OK else {}
            out = {"step": step, **rec, "error": error or None,
                   "log": list(self.logs.get(step, ())),
                   "outputs": dict(self.outputs.get(step, {}))}
        origin = rec["reused_from"] if rec["state"] == "cached" else self.run_id
        notebook = self.runs_dir / (origin or self.run_id) / step / "output.ipynb"
        out["notebook"] = {"href": self._rel(notebook), "path": str(notebook),
                           "exists": notebook.is_file()}
        if rec["state"] == "cached" and not out["log"]:
            log_file = notebook.with_name("log.txt")  # the original run's log
            if log_file.is_file():
                lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
                out["log"] = lines[-LOG_TAIL:]
        return out

    def _rel(self, path: Path) -> str:
        # links are relative to the notebook's directory (the kernel's cwd); the browser
        # resolves them against the page's /lab/tree/<notebook> URL
        return Path(os.path.relpath(path, self.base_dir)).as_posix()

    def table(self) -> str:
        """A plain-text table of steps and states (nbconvert, papermill, terminals)."""
        with self._lock:
            rows = [("step", "state", "time", "detail")]
            now = time.time()
            for name, rec in self.records.items():
                started, finished = rec["started"], rec["finished"]
                took = f"{(finished or now) - started:.1f}s" if started else ""
                if rec["state"] == RUNNING and rec["total"]:
                    detail = f"{rec['done']}/{rec['total']} cells"
                else:
                    detail = rec["error"] or rec["reason"] or ""
                rows.append((name, rec["state"], took, detail))
            head = f"run {self.run_id}: {self.info['state']}"
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:3])) + "  " + r[3]
                 for r in rows]
        return "\n".join([head, *(line.rstrip() for line in lines)])
