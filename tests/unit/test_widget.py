"""The DAG widget's Python side: layout, state following a run's events, throttling, the panel,
the buttons, the text fallback, and a handle that shows its widget once per cell.

No kernel and no browser here: ipywidgets without a kernel keeps trait values and sends nothing,
so the tests read the traits the browser would receive. Runs use an in-process executor.
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlpipe_jupyter.errors import StepFailed
from mlpipe_jupyter.executors import Executor
from mlpipe_jupyter.model.dag import build_dag
from mlpipe_jupyter.model.notebook import read_pipeline
from mlpipe_jupyter.model.spec import PipelineSpec, StepSpec
from mlpipe_jupyter.run.events import Broadcaster
from mlpipe_jupyter.run.runner import PipelineRunner, RunOptions
from mlpipe_jupyter.run.stepbook import IO_PARAM
from mlpipe_jupyter.run.view import RunView
from mlpipe_jupyter.step import runtime
from mlpipe_jupyter.ui.handle import PipelineRun
from mlpipe_jupyter.ui.layout import GAP_X, NODE_H, NODE_W, layout
from mlpipe_jupyter.ui.widget import LOG_TAIL, DagWidget

ROOT = Path(__file__).resolve().parents[2]


def chain_spec(n: int, seed: int = 1) -> PipelineSpec:
    """n steps, each reading up to two outputs of the 15 steps before it."""
    rng = random.Random(seed)
    steps = []
    for i in range(n):
        pool = range(max(i - 15, 0), i)
        inputs = tuple(sorted(f"v{j}" for j in rng.sample(pool, min(i, 2))))
        steps.append(StepSpec(name=f"s{i:03d}", code="", inputs=inputs, outputs=(f"v{i}",)))
    return PipelineSpec(steps=tuple(steps))


# -- layout -------------------------------------------------------------------------------------
@pytest.mark.parametrize("graph", [
    build_dag(read_pipeline(ROOT / "notebooks" / "wine_quality.ipynb")),
    build_dag(read_pipeline(ROOT / "notebooks" / "model_comparison.ipynb")),
    build_dag(chain_spec(200)),
], ids=["wine", "comparison", "200-steps"])
def test_layout_layers_top_to_bottom_without_overlaps(graph):
    drawn = layout(graph)
    nodes = {n["name"]: n for n in drawn["nodes"]}
    assert set(nodes) == set(graph)
    for u, v in graph.edges:  # every edge points down
        assert nodes[u]["y"] + NODE_H < nodes[v]["y"]
    by_layer: dict[int, list[dict]] = {}
    for n in drawn["nodes"]:
        by_layer.setdefault(n["layer"], []).append(n)
        assert n["x"] >= 0 and n["x"] + NODE_W <= drawn["width"]
        assert n["y"] + NODE_H <= drawn["height"]
    for layer in by_layer.values():
        layer.sort(key=lambda n: n["x"])
        assert len({n["y"] for n in layer}) == 1
        for a, b in zip(layer, layer[1:], strict=False):
            assert b["x"] - (a["x"] + NODE_W) >= GAP_X - 1
    for edge in drawn["edges"]:
        src, dst = nodes[edge["source"]], nodes[edge["target"]]
        (x0, y0), (x1, y1) = edge["points"][0], edge["points"][-1]
        assert y0 == src["y"] + NODE_H and src["x"] < x0 < src["x"] + NODE_W
        assert y1 == dst["y"] and dst["x"] < x1 < dst["x"] + NODE_W
        assert edge["artifacts"] == graph.edges[edge["source"], edge["target"]]["artifacts"]
        # a long edge goes around the nodes of the layers it crosses, not through them
        for x, y in edge["points"][1:-1]:
            for n in drawn["nodes"]:
                inside = n["x"] <= x <= n["x"] + NODE_W and n["y"] <= y <= n["y"] + NODE_H
                assert not inside, (edge["source"], edge["target"], n["name"])


def test_layout_orders_layers_to_remove_crossings():
    # notebook order puts `c` (child of b) left of `d` (child of a): straight lines would cross
    spec = PipelineSpec(steps=(
        StepSpec(name="a", code="", outputs=("x",)), StepSpec(name="b", code="", outputs=("y",)),
        StepSpec(name="c", code="", inputs=("y",)), StepSpec(name="d", code="", inputs=("x",)),
    ))
    x = {n["name"]: n["x"] for n in layout(build_dag(spec))["nodes"]}
    assert (x["a"] < x["b"]) == (x["d"] < x["c"])


def test_layout_of_nothing_is_empty():
    assert layout(build_dag(PipelineSpec()))["nodes"] == []


# -- a widget following a run's events ----------------------------------------------------------
class FakeRunner:
    """What DagWidget.follow() uses of a PipelineRunner; events are emitted by the test."""

    def __init__(self, spec: PipelineSpec, base_dir: Path, run_id: str = "r1") -> None:
        self.graph = build_dag(spec)
        self.order = list(self.graph)
        self.run_id = run_id
        self.base_dir = base_dir
        self.home = SimpleNamespace(runs=base_dir / ".mlpipe" / "runs")
        self.events = Broadcaster()
        self.state = "queued"

    def add_listener(self, listener) -> None:
        self.events.add(listener)


class FakeHandle:
    def __init__(self, runner: FakeRunner) -> None:
        self.runner = runner
        self.view = RunView(runner.order, run_id=runner.run_id)
        runner.add_listener(self.view)
        self.done = False
        self.cancelled = threading.Event()
        self.release = threading.Event()

    def cancel(self) -> str:  # like PipelineRun.cancel(): blocks until the run ends
        self.cancelled.set()
        self.release.wait(10)
        return "cancelled"


def follow(spec: PipelineSpec, tmp_path: Path, interval: float = 0.05):
    runner = FakeRunner(spec, tmp_path)
    widget = DagWidget(runner.graph, order=runner.order, title="t.ipynb")
    handle = FakeHandle(runner)
    feed = widget.follow(handle)
    feed.interval = interval
    return widget, runner, handle, feed


def wine_spec() -> PipelineSpec:
    return read_pipeline(ROOT / "notebooks" / "wine_quality.ipynb")


def test_widget_state_follows_a_runs_events(tmp_path):
    widget, runner, _, feed = follow(wine_spec(), tmp_path)
    ev, t0 = runner.events, time.time()
    patches: list[dict] = []
    widget.observe(lambda c: patches.append(c["new"]), names=["patch"])
    assert widget.graph["title"] == "t.ipynb" and len(widget.graph["nodes"]) == 4
    assert {s["state"] for s in widget.steps.values()} == {"queued"}

    ev.on_run_started(run_id="r1", notebook="t.ipynb", params={}, steps=runner.order,
                      executor="local", started=t0)
    ev.on_step_state(run_id="r1", step="load", state="cached", at=t0 + 0.1,
                     reason="reused from run r0", reused_from="r0", outputs={"raw": "d1"})
    ev.on_step_state(run_id="r1", step="split", state="running", at=t0 + 0.2,
                     reason="parameter `test_size` changed")
    ev.on_step_progress(run_id="r1", step="split", done=3, total=6)
    deadline = time.time() + 10
    while not any(p["steps"].get("split", {}).get("done") == 3 for p in patches):
        assert time.time() < deadline, patches
        time.sleep(0.02)
    live = patches[-1]["steps"]["split"]
    assert live["state"] == "running" and (live["done"], live["total"]) == (3, 6)
    assert widget.run["state"] == "running"

    error = StepFailed("step `fit` failed in the step code, line 2: ValueError: bad", step="fit",
                       cell="the step code", ename="ValueError", evalue="bad",
                       traceback="Traceback ...\nValueError: bad").to_dict()
    ev.on_step_state(run_id="r1", step="split", state="succeeded", at=t0 + 1.5,
                     outputs={"train": "d2", "test": "d3"})
    ev.on_step_state(run_id="r1", step="fit", state="running", at=t0 + 1.6)
    ev.on_step_state(run_id="r1", step="fit", state="failed", at=t0 + 2.0, error=error,
                     reason=error["message"], attempt=2)
    ev.on_step_state(run_id="r1", step="evaluate", state="skipped", at=t0 + 2.0,
                     reason="upstream `fit` failed")
    ev.on_run_finished(run_id="r1", state="failed", at=t0 + 2.1, reason="step `fit` failed")

    final = widget.steps
    assert {n: s["state"] for n, s in final.items()} == {
        "load": "cached", "split": "succeeded", "fit": "failed", "evaluate": "skipped"}
    assert final["load"]["reused_from"] == "r0"
    assert final["split"]["finished"] - final["split"]["started"] == pytest.approx(1.3)
    assert final["fit"]["error"] == error["message"] and final["fit"]["attempt"] == 2
    assert widget.run["state"] == "failed" and widget.run["can_retry"]
    assert not widget.run["can_cancel"]
    assert widget.run["counts"] == {"cached": 1, "succeeded": 1, "failed": 1, "skipped": 1}
    # patches only ever carry the steps that changed
    assert all(len(p["steps"]) <= 2 for p in patches)
    assert [p["seq"] for p in patches] == sorted(p["seq"] for p in patches)


def test_final_state_is_shown_even_when_updates_are_coalesced_away(tmp_path):
    widget, runner, _, feed = follow(wine_spec(), tmp_path, interval=60)  # never flushes alone
    patches: list[dict] = []
    widget.observe(lambda c: patches.append(c["new"]), names=["patch"])
    ev, t = runner.events, time.time()
    ev.on_run_started(run_id="r1", notebook="t", params={}, steps=runner.order,
                      executor="local", started=t)
    for name in runner.order:
        ev.on_step_state(run_id="r1", step=name, state="running", at=t)
        ev.on_step_state(run_id="r1", step=name, state="succeeded", at=t + 1)
    ev.on_run_finished(run_id="r1", state="succeeded", at=t + 1)
    assert patches == []  # nothing was sent while it ran ...
    assert {s["state"] for s in widget.steps.values()} == {"succeeded"}  # ... the end is
    assert widget.run["state"] == "succeeded" and feed._thread is not None
    assert not feed._thread.is_alive()


def test_200_step_run_is_throttled(tmp_path):
    """A fast 200-step run: thousands of events, a handful of small trait updates a second."""
    widget, runner, _, feed = follow(chain_spec(200), tmp_path, interval=0.2)
    sent: list[tuple[float, int]] = []
    widget.observe(lambda c: sent.append((time.monotonic(), len(json.dumps(c["new"])))),
                   names=["patch"])
    ev, order = runner.events, runner.order
    t0 = time.monotonic()
    ev.on_run_started(run_id="r1", notebook="t", params={}, steps=order, executor="local",
                      started=time.time())
    events = 0
    for name in order:  # ~2 s of events, as a fast run of 200 small steps would emit
        ev.on_step_state(run_id="r1", step=name, state="running", at=time.time())
        for done in range(1, 7):
            ev.on_step_progress(run_id="r1", step=name, done=done, total=6)
            ev.on_step_log(run_id="r1", step=name, line=f"{name} cell {done}")
        ev.on_step_state(run_id="r1", step=name, state="succeeded", at=time.time())
        events += 14
        time.sleep(0.01)
    ev.on_run_finished(run_id="r1", state="succeeded", at=time.time())
    took = time.monotonic() - t0
    rate = len(sent) / took
    biggest = max(size for _, size in sent)
    print(f"\n200 steps: {events} events in {took:.2f}s -> {len(sent)} patches "
          f"({rate:.1f}/s), largest patch {biggest} bytes, graph "
          f"{len(json.dumps(widget.graph))} bytes sent once")
    assert rate <= 1 / 0.2 + 1  # at most ~5 updates a second, whatever the event rate
    assert len(sent) >= 3  # and it did update live
    assert biggest < 20_000  # a delta, not the state of 200 steps
    assert all(b - a >= 0.1 for (a, _), (b, _) in zip(sent, sent[1:], strict=False))
    assert {s["state"] for s in widget.steps.values()} == {"succeeded"}
    assert len(feed.view.log("s199")) == 6


def test_panel_shows_error_log_cache_reason_and_notebook_link(tmp_path):
    widget, runner, _, feed = follow(wine_spec(), tmp_path)
    ev, t = runner.events, time.time()
    ev.on_run_started(run_id="r1", notebook="t", params={}, steps=runner.order,
                      executor="local", started=t)
    origin = tmp_path / ".mlpipe" / "runs" / "r0" / "load"
    origin.mkdir(parents=True)
    (origin / "output.ipynb").write_text("{}")
    (origin / "log.txt").write_text("loaded 178 rows\n")
    ev.on_step_state(run_id="r1", step="load", state="cached", at=t,
                     reason="reused from run r0", reused_from="r0", outputs={"raw": "d1"})
    ev.on_step_state(run_id="r1", step="split", state="running", at=t)
    for i in range(100):
        ev.on_step_log(run_id="r1", step="split", line=f"line {i}")
    error = StepFailed("step `split` failed in the step code, line 1: KeyError: 'target'",
                       step="split", cell="the step code", ename="KeyError",
                       evalue="'target'", traceback="Traceback\nKeyError: 'target'").to_dict()
    ev.on_step_state(run_id="r1", step="split", state="failed", at=t + 1, error=error)

    widget.selected = "split"  # what a click in the browser does
    d = widget.detail
    assert d["step"] == "split" and d["state"] == "failed"
    assert d["error"]["ename"] == "KeyError" and d["error"]["cell"] == "the step code"
    assert "KeyError: 'target'" in d["error"]["traceback"]
    assert d["log"] == [f"line {i}" for i in range(100 - LOG_TAIL, 100)]
    assert d["notebook"]["href"] == ".mlpipe/runs/r1/split/output.ipynb"
    assert d["notebook"]["exists"] is False  # not written by this fake run

    widget.selected = "load"
    d = widget.detail
    assert d["state"] == "cached" and d["reason"] == "reused from run r0"
    # a reused step links to the notebook and log of the run that computed it
    assert d["notebook"]["href"] == ".mlpipe/runs/r0/load/output.ipynb"
    assert d["notebook"]["exists"] and d["log"] == ["loaded 178 rows"]
    assert d["outputs"] == {"raw": "d1"}

    # the open panel follows the step live
    widget.selected = "fit"
    ev.on_step_state(run_id="r1", step="fit", state="running", at=t + 2)
    ev.on_step_log(run_id="r1", step="fit", line="fitting")
    deadline = time.time() + 10
    while widget.detail.get("log") != ["fitting"]:
        assert time.time() < deadline, widget.detail
        time.sleep(0.02)
    ev.on_run_finished(run_id="r1", state="failed", at=t + 3)
    widget.selected = ""
    assert widget.detail == {}


def test_panel_of_a_fan_out_step_carries_its_failed_mini_batches(tmp_path):
    widget, runner, _, feed = follow(wine_spec(), tmp_path)
    ev, t = runner.events, time.time()
    ev.on_run_started(run_id="r1", notebook="t", params={}, steps=runner.order,
                      executor="local", started=t)
    failure = {"batch": 1, "items": [5, 9], "ename": "ValueError", "evalue": "bad batch 5",
               "line": 2, "traceback": "Traceback\nValueError: bad batch 5"}
    fanout = {"batches": {"total": 3, "succeeded": 2, "failed": 1, "cached": 0},
              "failures": [failure]}
    ev.on_step_state(run_id="r1", step="split", state="running", at=t)
    ev.on_step_progress(run_id="r1", step="split", done=3, total=3, failed=1)
    ev.on_step_state(run_id="r1", step="split", state="succeeded", at=t + 1, fanout=fanout)
    ev.on_step_state(run_id="r1", step="load", state="succeeded", at=t + 1)

    widget.selected = "split"
    assert widget.detail["failures"] == [failure]
    widget.selected = "load"  # a step that is not a fan-out one has no such key
    assert widget.detail["state"] == "succeeded" and "failures" not in widget.detail

    # a new attempt starts with none; the open panel follows
    widget.selected = "split"
    ev.on_step_state(run_id="r1", step="split", state="running", at=t + 2, attempt=2)
    deadline = time.time() + 10
    while "failures" in widget.detail:
        assert time.time() < deadline, widget.detail
        time.sleep(0.02)
    assert widget.detail["state"] == "running"
    ev.on_run_finished(run_id="r1", state="failed", at=t + 3)


def test_cancel_button_does_not_block_the_comm_thread(tmp_path):
    widget, runner, handle, _ = follow(wine_spec(), tmp_path)
    runner.events.on_run_started(run_id="r1", notebook="t", params={}, steps=runner.order,
                                 executor="local", started=time.time())
    t0 = time.monotonic()
    widget._on_custom(widget, {"type": "cancel"}, [])  # as the browser's Cancel sends it
    assert time.monotonic() - t0 < 0.5  # handle.cancel() blocks, but in its own thread
    assert handle.cancelled.wait(5)
    assert widget.run["cancelling"] is True
    handle.release.set()


def test_sync_request_resends_the_full_state(tmp_path):
    widget, runner, _, _ = follow(wine_spec(), tmp_path, interval=60)
    ev, t = runner.events, time.time()
    ev.on_run_started(run_id="r1", notebook="t", params={}, steps=runner.order,
                      executor="local", started=t)
    ev.on_step_state(run_id="r1", step="load", state="running", at=t)
    assert widget.steps["load"]["state"] == "queued"  # not flushed yet
    widget._on_custom(widget, {"type": "sync"}, [])  # a view rendered late asks
    assert widget.steps["load"]["state"] == "running"
    ev.on_run_finished(run_id="r1", state="cancelled", at=t + 1)


def test_widget_made_after_the_run_began_starts_from_what_happened(tmp_path):
    runner = FakeRunner(wine_spec(), tmp_path)
    handle = FakeHandle(runner)
    ev, t = runner.events, time.time()
    ev.on_run_started(run_id="r1", notebook="t", params={}, steps=runner.order,
                      executor="local", started=t)
    ev.on_step_state(run_id="r1", step="load", state="succeeded", at=t + 1)
    ev.on_step_log(run_id="r1", step="split", line="hello")
    runner.state = "running"
    widget = DagWidget(runner.graph, order=runner.order)
    feed = widget.follow(handle)
    assert widget.steps["load"]["state"] == "succeeded"
    assert feed.view.log("split") == ["hello"]
    assert feed._thread is not None and feed._thread.is_alive()  # live from here on
    ev.on_run_finished(run_id="r1", state="succeeded", at=t + 2)
    assert not feed._thread.is_alive()


def test_text_representation_for_frontends_without_widgets(tmp_path):
    widget, runner, _, _ = follow(wine_spec(), tmp_path)
    ev, t = runner.events, time.time()
    ev.on_run_started(run_id="r1", notebook="t", params={}, steps=runner.order,
                      executor="local", started=t)
    ev.on_step_state(run_id="r1", step="load", state="succeeded", at=t + 1.25)
    ev.on_step_state(run_id="r1", step="split", state="running", at=t + 1.25)
    ev.on_step_progress(run_id="r1", step="split", done=2, total=5)
    text = repr(widget)
    data, _ = widget._repr_mimebundle_()
    assert data["text/plain"] == text
    lines = text.splitlines()
    assert lines[0] == "run r1: running"
    assert lines[1].split() == ["step", "state", "time", "detail"]
    assert lines[2].split()[:2] == ["load", "succeeded"]
    assert lines[3].split()[:2] == ["split", "running"] and lines[3].endswith("2/5 cells")
    assert lines[4].split() == ["fit", "queued"]
    ev.on_run_finished(run_id="r1", state="cancelled", at=t + 2)

    shown = DagWidget(build_dag(wine_spec()))
    assert repr(shown).splitlines() == ["pipeline: 4 steps in 4 layers (not run)",
                                        "  1. load", "  2. split", "  3. fit", "  4. evaluate"]
    assert {s["state"] for s in shown.steps.values()} == {"idle"}
    broken = DagWidget(message="cycle between steps: a -> b -> a")
    assert repr(broken) == "pipeline: cycle between steps: a -> b -> a"
    assert broken.graph["nodes"] == [] and broken.message.startswith("cycle")


def test_static_files_ship_inside_the_package():
    static = ROOT / "mlpipe_jupyter" / "ui" / "static"
    js = (static / "dag_widget.js").read_text()
    assert "export default" in js and "import " not in js.split("export default")[0][:200]
    assert "http://" not in js.replace("http://www.w3.org/2000/svg", "")  # no CDN
    assert "https://" not in js
    widget = DagWidget()
    # the entry ends the module widget.py joins from static/ (tests/unit/test_widget_js.py)
    assert widget._esm.endswith("\n" + js)
    assert widget._css == (static / "dag_widget.css").read_text()


# -- real runs with an in-process executor: handle, Retry, Cancel ----------------------------------
class InProcess(Executor):
    """Runs a step's code in this process: fast, and real events from the real runner."""

    name = "inproc-test"

    def execute(self, job, parameters):
        io = parameters.pop(IO_PARAM)
        ns = {**parameters, "_cancel": job.cancel}
        for name in job.inputs:
            ns[name] = runtime.load_input(io, name)
        job.progress(1, 2)
        job.log(f"running {job.step.name}")
        try:
            exec(job.step.code, ns)
        except Exception as exc:
            raise StepFailed(f"step `{job.step.name}` failed in the step code: "
                             f"{type(exc).__name__}: {exc}", step=job.step.name,
                             cell="the step code", ename=type(exc).__name__,
                             evalue=str(exc), traceback=f"{type(exc).__name__}: {exc}") from None
        if job.cancel.is_set():
            raise self.stop_reason(job)
        job.progress(2, 2)
        runtime.save_outputs(io, ns, list(job.step.variable_outputs), [])


@pytest.fixture
def in_process(register_executor) -> str:
    """InProcess, registered for the test that asks for it."""
    return register_executor(InProcess)


def start_run(spec: PipelineSpec, base_dir: Path) -> PipelineRun:
    runner = PipelineRunner(spec, notebook=str(base_dir / "nb.ipynb"), base_dir=base_dir,
                            options=RunOptions(executor=InProcess.name, max_parallel=2))
    run = PipelineRun(runner)
    run.widget.feed.interval = 0.05
    return run.start()


def test_retry_failed_reruns_failed_and_skipped_and_reuses_the_rest(tmp_path, monkeypatch,
                                                                    in_process):
    monkeypatch.delenv("MLPIPE_HOME", raising=False)
    flag = tmp_path / "flag"
    spec = PipelineSpec(steps=(
        StepSpec(name="a", code="x = 20", outputs=("x",)),
        StepSpec(name="b", code=f"import os\nassert os.path.exists({str(flag)!r}), 'no flag'\n"
                 "y = x + 1", inputs=("x",), outputs=("y",)),
        StepSpec(name="c", code="z = y * 2", inputs=("y",), outputs=("z",)),
        StepSpec(name="d", code="w = x", inputs=("x",), outputs=("w",)),
    ))
    run = start_run(spec, tmp_path)
    assert run.wait(60) == "failed"
    widget = run.widget
    assert widget.feed.view is run.view  # one view model: the widget renders the handle's
    assert run.steps == {"a": "succeeded", "b": "failed", "c": "skipped", "d": "succeeded"}
    assert {n: s["state"] for n, s in widget.steps.items()} == run.steps
    assert widget.run["can_retry"]
    widget.selected = "b"
    assert widget.detail["error"]["evalue"] == "no flag"

    flag.write_text("")
    widget._on_custom(widget, {"type": "retry"}, [])  # the Retry failed button
    deadline = time.time() + 30
    while run.retried is None or not run.retried.done:
        assert time.time() < deadline
        time.sleep(0.05)
    again = run.retried
    assert again.wait(60) == "succeeded"
    assert again.steps == {"a": "cached", "b": "succeeded", "c": "succeeded", "d": "cached"}
    assert again.load("z") == 42
    # the same widget now shows the new run; the open panel moved with it
    assert widget.handle is again and widget.run["id"] == again.id != run.id
    assert widget.feed.view is again.view
    assert {n: s["state"] for n, s in widget.steps.items()} == again.steps
    assert widget.detail["state"] == "succeeded" and widget.detail["error"] is None
    assert not widget.run["can_retry"]


def test_cancel_from_the_widget_stops_a_running_step(tmp_path, monkeypatch, in_process):
    monkeypatch.delenv("MLPIPE_HOME", raising=False)
    spec = PipelineSpec(steps=(
        StepSpec(name="slow", code="while not _cancel.wait(0.05): pass\nv = 1", outputs=("v",)),
        StepSpec(name="after", code="w = v", inputs=("v",), outputs=("w",)),
    ))
    run = start_run(spec, tmp_path)
    deadline = time.time() + 30
    while run.steps["slow"] != "running":
        assert time.time() < deadline
        time.sleep(0.02)
    run.widget._on_custom(run.widget, {"type": "cancel"}, [])
    assert run.wait(30) == "cancelled"
    assert run.steps == {"slow": "cancelled", "after": "cancelled"}
    assert run.widget.run["state"] == "cancelled"
    assert {s["state"] for s in run.widget.steps.values()} == {"cancelled"}


def test_handle_displays_its_widget_once_per_cell(tmp_path, monkeypatch, in_process):
    monkeypatch.delenv("MLPIPE_HOME", raising=False)
    shown: list[dict] = []

    class Handle:
        def update(self, data, **_):
            shown.append({"update": data})

    def display(data, **kw):
        shown.append(data)
        return Handle()

    monkeypatch.setattr("IPython.display.display", display)
    cell = ["cell-1"]
    monkeypatch.setattr("mlpipe_jupyter.ui.handle._cell_token", lambda: cell[0])
    run = start_run(PipelineSpec(steps=(StepSpec(name="a", code="x = 1", outputs=("x",)),)),
                    tmp_path)
    run._ipython_display_()  # `%pipeline run` shows it
    run._ipython_display_()  # the handle it returns, displayed by the same cell: nothing
    assert len(shown) == 1
    assert shown[0]["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert shown[0]["text/plain"].startswith(f"run {run.id}:")
    run.wait(30)  # the text fallback is brought up to date by display id
    assert shown[-1]["update"]["text/plain"].startswith(f"run {run.id}: succeeded")
    cell[0] = "cell-2"
    run._ipython_display_()  # `run` in a later cell: another view
    assert len([s for s in shown if "update" not in s]) == 2


def test_cli_and_magics_do_not_import_the_widget_stack():
    """anywidget and ipywidgets load only when a widget is shown, never for the CLI."""
    import subprocess
    import sys

    code = ("import sys, mlpipe_jupyter.ui.cli, mlpipe_jupyter.ui.handle,"
            " mlpipe_jupyter.ui.magics\n"
            "print(sorted(m for m in ('anywidget', 'ipywidgets', 'mlpipe_jupyter.ui.widget')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"
