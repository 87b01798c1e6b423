"""A real IPython kernel (jupyter_client) running pipelines with the local executor.

Proves what a notebook user relies on: `%pipeline run` returns at once with one widget, the
kernel runs other cells and returns their results while a step is still running, the widget's
state reaches the browser as comm messages (live patches, then the full final state), Cancel
sent as the browser sends it stops the run and its step kernel, and `%pipeline show` draws the
DAG or shows a spec error inline instead of a traceback.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.conftest import wait_for
from tests.kernelkit import WIDGET_VIEW, register


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
    # the step's kernel: a child of this kernel, working in the step's directory
    wait_for(lambda: any(cwd and cwd.is_relative_to(step_dir)
                         for cwd in descendants(kernel_pid).values()),
             lambda: f"the step's kernel below {kernel_pid}: {descendants(kernel_pid)}", 60,
             every=0.2)

    # exactly what the browser sends when Cancel is clicked
    k.kc.shell_channel.send(k.kc.session.msg("comm_msg", {
        "comm_id": model_id, "data": {"method": "custom", "content": {"type": "cancel"}}}))
    k.wait_for("run.status", "'cancelled'", timeout=120)
    assert k.value("run.steps") == (
        "{'load': 'succeeded', 'slow': 'cancelled', 'after': 'cancelled'}")
    # no step kernel (nor a warm spare) stays behind
    wait_for(lambda: not descendants(kernel_pid),
             lambda: f"no process below {kernel_pid}: {descendants(kernel_pid)}", 30, every=0.2)
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
