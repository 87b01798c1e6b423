"""A real IPython kernel (jupyter_client) running pipelines with the local executor.

Proves what a notebook user relies on: `%pipeline run` returns at once with one widget, the
kernel runs other cells and returns their results while a step is still running, the widget's
state reaches the browser as comm messages (live patches, then the full final state), Cancel
sent as the browser sends it stops the run and its step kernel, and `%pipeline show` draws the
DAG or shows a spec error inline instead of a traceback.
"""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import pytest
from jupyter_client import KernelManager

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class Kernel:
    """A kernel client that keeps every iopub message, whatever request it belongs to: the
    widget's updates come from background threads, outside any cell's execution."""

    def __init__(self, km, kc, cwd: Path) -> None:
        self.km = km
        self.kc = kc
        self.cwd = cwd
        self.iopub: list[dict] = []

    def _drain(self, timeout: float) -> dict | None:
        try:
            msg = self.kc.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return None
        self.iopub.append(msg)
        return msg

    def run(self, code: str, timeout: float = 120) -> tuple[dict, list[dict], float]:
        """Execute a cell: (reply content, its iopub messages, seconds it took)."""
        t0 = time.monotonic()
        msg_id = self.kc.execute(code)
        mine: list[dict] = []
        deadline = t0 + timeout
        while True:
            assert time.monotonic() < deadline, f"cell did not finish: {code!r}"
            msg = self._drain(1)
            if msg is None or msg["parent_header"].get("msg_id") != msg_id:
                continue
            mine.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        reply = self.kc.get_shell_msg(timeout=timeout)
        assert reply["parent_header"]["msg_id"] == msg_id
        return reply["content"], mine, time.monotonic() - t0

    def value(self, code: str, timeout: float = 120) -> str:
        reply, msgs, _ = self.run(code, timeout)
        assert reply["status"] == "ok", reply
        results = [m["content"]["data"]["text/plain"] for m in msgs
                   if m["msg_type"] == "execute_result"]
        assert len(results) == 1, msgs
        return results[0]

    def wait_for(self, code: str, expected: str, timeout: float = 180) -> float:
        """Poll an expression until it shows `expected`; return the slowest answer's time."""
        deadline, slowest = time.monotonic() + timeout, 0.0
        while True:
            reply, msgs, took = self.run(code)
            slowest = max(slowest, took)
            shown = [m["content"]["data"]["text/plain"] for m in msgs
                     if m["msg_type"] == "execute_result"]
            if shown == [expected]:
                return slowest
            assert time.monotonic() < deadline, f"{code} never became {expected}: {shown}"
            time.sleep(0.3)

    def wait_comm(self, model_id: str, found, timeout: float = 30) -> list[dict]:
        """The widget's states sent so far, once one of them satisfies `found`: updates are
        coalesced and sent by a thread, up to a fraction of a second after the event."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.comm_states(model_id)
            if any(found(s) for s in states):
                return states
            assert time.monotonic() < deadline, states[-3:]
            self._drain(0.2)

    def comm_states(self, model_id: str) -> list[dict]:
        for _ in range(50):  # pick up what is already queued
            if self._drain(0.05) is None:
                break
        return [m["content"]["data"].get("state", {}) for m in self.iopub
                if m["msg_type"] in ("comm_open", "comm_msg")
                and m["content"].get("comm_id") == model_id]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("kernel")
    env = {**os.environ, "MLPIPE_EXECUTOR": "local", "MLPIPE_MAX_PARALLEL": "2"}
    env.pop("MLPIPE_HOME", None)
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(cwd), env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        k = Kernel(km, kc, cwd)
        reply, _, _ = k.run("%load_ext mlpipe_jupyter")
        assert reply["status"] == "ok"
        yield k
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def register(k: Kernel, cells: list[str]) -> None:
    reply, _, _ = k.run("%pipeline clear")
    assert reply["status"] == "ok"
    for cell in cells:
        reply, _, _ = k.run(cell)
        assert reply["status"] == "ok", reply


def gated_step(name: str, gate: Path, inputs: str, output: str, value: str) -> str:
    return (f"%%step {name} --inputs {inputs} --outputs {output} --no-run\n"
            f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n    time.sleep(0.1)\n"
            f"{output} = {value}")


def descendants(pid: int) -> dict[int, Path | None]:
    """Live processes below `pid`, with their working directories."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if stat[0] != "Z":  # a killed process not yet reaped is gone for our purpose
                parents[int(entry.name)] = int(stat[1])
    found: dict[int, Path | None] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                try:
                    found[child] = Path(os.readlink(f"/proc/{child}/cwd"))
                except OSError:
                    found[child] = None
                frontier.append(child)
    return found


def test_kernel_answers_cells_while_a_pipeline_runs(kernel):
    k = kernel
    gate = k.cwd / "gate-1"
    register(k, [
        "%%step load --outputs raw\nraw = [1, 2, 3]",
        gated_step("slow", gate, "raw", "total", "sum(raw)"),
        "%%step report --inputs total --outputs line --no-run\nline = f'total={total}'",
    ])
    reply, msgs, took = k.run("run = %pipeline run\nrun")
    assert reply["status"] == "ok", reply
    assert took < 30  # returns at once: the steps run in the background
    views = [m for m in msgs if m["msg_type"] in ("display_data", "execute_result")
             and WIDGET_VIEW in m["content"]["data"]]
    assert len(views) == 1  # `%pipeline run` shows it; `run` on the next line adds nothing
    model_id = views[0]["content"]["data"][WIDGET_VIEW]["model_id"]
    assert views[0]["content"]["data"]["text/plain"].startswith("run ")
    opened = k.comm_states(model_id)[0]
    assert [n["name"] for n in opened["graph"]["nodes"]] == ["load", "slow", "report"]
    assert opened["_esm"].lstrip().startswith("// The mlpipe DAG widget")

    slowest = k.wait_for('run.steps["slow"]', "'running'")
    # the step is blocked on its gate: the kernel still answers, and fast
    reply, msgs, took = k.run('(run.status, run.steps["slow"], sum(range(10)))')
    result = [m["content"]["data"]["text/plain"] for m in msgs
              if m["msg_type"] == "execute_result"]
    assert result == ["('running', 'running', 45)"]
    print(f"\ncells answered in {took:.2f}s (slowest poll {slowest:.2f}s) while a step ran")
    assert took < 10
    states = k.wait_comm(model_id, lambda s: s.get("patch", {}).get("steps", {})
                         .get("slow", {}).get("state") == "running")
    live = [s["patch"]["steps"] for s in states if s.get("patch")]
    assert any(p.get("load", {}).get("state") == "succeeded" for p in live)

    gate.write_text("")
    assert k.value("run.wait(300)", timeout=320) == "'succeeded'"
    assert k.value('run.load("line")') == "'total=6'"
    done = {"load": "succeeded", "slow": "succeeded", "report": "succeeded"}
    states = k.wait_comm(model_id, lambda s: "steps" in s and {
        n: r["state"] for n, r in s["steps"].items()} == done)
    assert [s["run"]["state"] for s in states if s.get("run")][-1] == "succeeded"
    # frontends without widgets get the final table through the display id
    updates = [m for m in k.iopub if m["msg_type"] == "update_display_data"]
    assert updates and "succeeded" in updates[-1]["content"]["data"]["text/plain"].splitlines()[0]


def test_cancel_sent_by_the_widget_stops_the_run_and_its_kernel(kernel):
    k = kernel
    gate = k.cwd / "gate-never"
    register(k, [
        "%%step load --outputs raw\nraw = [4, 5, 6]",
        gated_step("slow", gate, "raw", "total", "sum(raw)"),
        "%%step after --inputs total --outputs line --no-run\nline = str(total)",
    ])
    _, msgs, _ = k.run("run = %pipeline run")
    view = next(m for m in msgs if m["msg_type"] == "display_data")
    model_id = view["content"]["data"][WIDGET_VIEW]["model_id"]
    k.wait_for('run.steps["slow"]', "'running'")
    run_id = k.value("run.id").strip("'")
    kernel_pid = int(k.value("__import__('os').getpid()"))
    step_dir = k.cwd / ".mlpipe" / "runs" / run_id / "slow"
    deadline = time.monotonic() + 60
    # the step's kernel: a child of this kernel, working in the step's directory
    while not any(cwd and cwd.is_relative_to(step_dir)
                  for cwd in descendants(kernel_pid).values()):
        assert time.monotonic() < deadline, descendants(kernel_pid)
        time.sleep(0.2)

    # exactly what the browser sends when Cancel is clicked
    k.kc.shell_channel.send(k.kc.session.msg("comm_msg", {
        "comm_id": model_id, "data": {"method": "custom", "content": {"type": "cancel"}}}))
    k.wait_for("run.status", "'cancelled'", timeout=120)
    assert k.value("run.steps") == (
        "{'load': 'succeeded', 'slow': 'cancelled', 'after': 'cancelled'}")
    deadline = time.monotonic() + 30
    while descendants(kernel_pid):  # no step kernel (nor a warm spare) stays behind
        assert time.monotonic() < deadline, descendants(kernel_pid)
        time.sleep(0.2)
    states = k.wait_comm(model_id, lambda s: s.get("run", {}).get("state") == "cancelled")
    finals = [s["steps"] for s in states if "steps" in s]
    assert finals[-1]["slow"]["state"] == "cancelled"
    run_states = [s["run"] for s in states if s.get("run")]
    assert run_states[-1]["can_retry"] and not run_states[-1]["can_cancel"]


def test_wait_blocks_the_cell_but_not_the_widget_and_an_interrupt_cancels(kernel):
    k = kernel
    gate = k.cwd / "gate-wait"
    register(k, [
        "%%step first --outputs raw --no-run\nimport time\ntime.sleep(1)\nraw = 7",
        gated_step("slow", gate, "raw", "total", "raw * 6"),
    ])
    msg_id = k.kc.execute("run = %pipeline run --wait")
    deadline = time.monotonic() + 120
    model_id = None
    while True:  # read iopub while the cell blocks
        assert time.monotonic() < deadline, "the widget never showed `slow` running"
        msg = k._drain(1)
        if msg is None:
            continue
        data = msg["content"].get("data", {})
        if msg["msg_type"] == "display_data" and WIDGET_VIEW in data:
            model_id = data[WIDGET_VIEW]["model_id"]
        state = data.get("state", {}) if msg["msg_type"] == "comm_msg" else {}
        if model_id and state.get("patch", {}).get("steps", {}).get("slow", {}).get(
                "state") == "running":
            break
    assert model_id is not None  # shown before the cell blocked
    runs = [s["run"] for s in k.comm_states(model_id) if s.get("run")]
    assert runs[-1]["waiting"]  # the widget tells the user to interrupt, not to click Cancel
    k.km.interrupt_kernel()  # the kernel's stop button
    while True:
        msg = k._drain(1)
        assert time.monotonic() < deadline, "the interrupted cell never ended"
        if (msg and msg["parent_header"].get("msg_id") == msg_id
                and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            break
    reply = k.kc.get_shell_msg(timeout=30)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert k.value("_mlpipe.last_run.status") == "'cancelled'"
    assert k.value("_mlpipe.last_run.steps") == "{'first': 'succeeded', 'slow': 'cancelled'}"
    states = k.wait_comm(model_id, lambda s: s.get("run", {}).get("state") == "cancelled")
    assert not [s["run"] for s in states if s.get("run")][-1]["waiting"]


def test_show_draws_the_dag_and_shows_spec_errors_inline(kernel):
    k = kernel
    register(k, [
        "%%step a --outputs x --no-run\nx = 1",
        "%%step b --inputs x --outputs y --no-run\ny = x",
    ])
    reply, msgs, _ = k.run("%pipeline show")
    assert reply["status"] == "ok"
    (shown,) = [m["content"]["data"] for m in msgs if m["msg_type"] == "execute_result"]
    assert WIDGET_VIEW in shown
    assert shown["text/plain"].splitlines()[0] == "pipeline: 2 steps in 2 layers (not run)"

    reply, _, _ = k.run("%%step c --inputs nothing --outputs z --no-run\nz = 1")
    assert reply["status"] == "ok"
    reply, msgs, _ = k.run("%pipeline show")
    assert reply["status"] == "ok"  # not a traceback ...
    assert not [m for m in msgs if m["msg_type"] == "error"]
    (shown,) = [m["content"]["data"] for m in msgs if m["msg_type"] == "execute_result"]
    # ... but one line, in the widget and in its text
    assert shown["text/plain"] == (
        "pipeline: step `c` reads variable `nothing`, but no step outputs it")
    model_id = shown[WIDGET_VIEW]["model_id"]
    opened = k.comm_states(model_id)[0]
    assert opened["message"] == "step `c` reads variable `nothing`, but no step outputs it"
    assert opened["graph"]["nodes"] == []


def test_executed_notebook_keeps_a_final_text_table_and_widget_state(tmp_path, monkeypatch):
    """nbclient (what papermill and nbconvert use) has no widget frontend: the `run` cell's
    text is the final table once `run.wait()` ran, and the saved widget state is final."""
    import json as _json
    import shutil

    import nbformat
    from nbclient import NotebookClient

    root = Path(__file__).resolve().parents[2] / "notebooks"
    for name in ("wine_quality.ipynb", "requirements.txt"):
        shutil.copy(root / name, tmp_path / name)
    monkeypatch.setenv("MLPIPE_EXECUTOR", "local")
    monkeypatch.delenv("MLPIPE_HOME", raising=False)
    nb = nbformat.read(tmp_path / "wine_quality.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    (cell,) = [c for c in nb.cells if c.source.startswith("run = %pipeline run")]
    (shown,) = [o for o in cell.outputs if WIDGET_VIEW in o.get("data", {})]
    lines = shown["data"]["text/plain"].splitlines()
    assert lines[0].startswith("run ") and lines[0].endswith(": succeeded")
    assert [line.split()[:2] for line in lines[2:]] == [
        ["load", "succeeded"], ["split", "succeeded"], ["fit", "succeeded"],
        ["evaluate", "succeeded"]]
    model_id = shown["data"][WIDGET_VIEW]["model_id"]
    saved = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    state = saved[model_id]["state"]
    assert {n: s["state"] for n, s in state["steps"].items()} == {
        "load": "succeeded", "split": "succeeded", "fit": "succeeded", "evaluate": "succeeded"}
    assert state["run"]["state"] == "succeeded"
    assert _json.dumps(state["graph"]).count('"name"') == 4
