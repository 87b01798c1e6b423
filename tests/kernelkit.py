"""Helpers of the kernel tests: a notebook kernel driven over jupyter_client (Kernel, and the
`kernel` fixture in tests/conftest.py starts one), code run on a step kernel of the pool, and
the processes a test's kernels leave (found by a mark in their environment)."""

from __future__ import annotations

import ast
import contextlib
import os
import queue
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import wait_for

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
        slowest, shown = 0.0, []

        def shows() -> bool:
            nonlocal slowest, shown
            _, msgs, took = self.run(code)
            slowest = max(slowest, took)
            shown = [m["content"]["data"]["text/plain"] for m in msgs
                     if m["msg_type"] == "execute_result"]
            return shown == [expected]

        wait_for(shows, lambda: f"{code} to become {expected} (it shows {shown})", timeout,
                 every=0.3)
        return slowest

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


@contextlib.contextmanager
def notebook_kernel(cwd: Path) -> Iterator[Kernel]:
    """A real IPython kernel in `cwd` with mlpipe loaded, its steps run by the local executor
    two at a time; shut down at the end."""
    from jupyter_client import KernelManager

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
    """Clear the kernel's pipeline, then run `cells` (each must succeed)."""
    reply, _, _ = k.run("%pipeline clear")
    assert reply["status"] == "ok"
    for cell in cells:
        reply, _, _ = k.run(cell)
        assert reply["status"] == "ok", reply


async def run_code(kc, code: str) -> str:
    """Execute `code`; the `user_expressions` value of `result`."""
    msg_id = kc.execute(code, user_expressions={"result": "result"})
    while True:
        reply = await kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply["content"]["user_expressions"]["result"]["data"]["text/plain"]


def ask(pool, kernel, code: str) -> Any:
    """Execute `code` on a kernel of `pool` (a KernelPool); the value of `result`."""
    from mlpipe_jupyter.kernels.client import connect

    async def go():
        kc = kernel.km.client()
        kc.start_channels()
        try:
            await connect(kc, 60)
            return ast.literal_eval(await run_code(kc, code))
        finally:
            kc.stop_channels()

    return pool._call(go(), 60)


def marked_processes(mark: str) -> list[str]:
    """`ps` lines of live processes whose environment carries `MLPIPE_TEST_MARK=mark` (ours,
    not a colleague's kernels running on the same machine)."""
    lines = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True,
                           text=True).stdout.splitlines()
    found = []
    for line in lines:
        pid, stat, _ = line.split(None, 2)
        if stat.startswith("Z"):
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if f"MLPIPE_TEST_MARK={mark}".encode() in environ:
            found.append(line)
    return found


def wait_gone(mark: str, seconds: float = 10) -> list[str]:
    """The marked processes still alive after up to `seconds` ([] as soon as none is)."""
    deadline = time.monotonic() + seconds
    while (left := marked_processes(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left
