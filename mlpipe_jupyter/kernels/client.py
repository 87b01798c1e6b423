"""Talking to a step's kernel from the runner: what the warm pool (pool.py), the papermill
engine (step/engine.py) and the docker kernel bridge (executors/kernelbridge.py) share.

- `connect`: a client is ready once a kernel_info reply and its IOPub status have come back;
- `exit_kernel`: a finished kernel is asked to exit so that it flushes its files;
- `shared_context_class`: one zmq context for every kernel manager and client of the process,
  with sends that cannot block for good.

jupyter_client and zmq are imported only when these are used.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from queue import Empty
from typing import Any


async def connect(kc, timeout: float) -> dict:
    """Wait until kernel client `kc` (channels started) gets replies and IOPub messages.

    jupyter_client's wait_for_ready ends by draining IOPub until 0.2 s pass in silence: a fixed
    0.2 s per step. Here a kernel_info request is sent and its own `idle` status awaited on
    IOPub, which proves the subscription is live (the ZMQ slow-joiner problem) without waiting
    on silence; a request whose status was missed is simply asked again.
    """
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            raise RuntimeError(f"kernel did not answer in {timeout:g} s")
        msg_id = kc.kernel_info()
        try:
            reply = await kc.get_shell_msg(timeout=1)
            while reply["parent_header"].get("msg_id") != msg_id:
                reply = await kc.get_shell_msg(timeout=1)
            while True:
                msg = await kc.get_iopub_msg(timeout=0.25)
                if (msg["parent_header"].get("msg_id") == msg_id
                        and msg["msg_type"] == "status"
                        and msg["content"].get("execution_state") == "idle"):
                    kc._handle_kernel_info_reply(reply)
                    return reply
        except Empty:
            if not await kc.is_alive():
                raise RuntimeError("kernel died before replying to kernel_info") from None


# A finished step's kernel is asked to exit the way `exit` typed in a cell does, on the shell
# channel, not with a shutdown_request on the control channel: ipykernel (7.x) handles that
# request on its control thread, which then flushes stdout through the IOPub thread while the
# main thread, already exiting, stops that thread; the flush then waits out its 10 s timeout
# and the kernel hangs in exit (4 of 40 exits with 8 kernels exiting at once on 2 cores).
# Asked this way, the kernel exits normally: atexit hooks run and open files are flushed, as
# before. `ask_exit` alone (what `exit` does) leaves the event loop 0.1 s later; the loop is
# stopped at once instead (exit in 0.06 s instead of 0.16 s; the last step's exit is on the
# critical path of a run, and of every container step).
EXIT_CODE = """\
get_ipython().ask_exit()
__mlpipe_loop = getattr(getattr(get_ipython(), "kernel", None), "io_loop", None)
if __mlpipe_loop is not None:
    __mlpipe_loop.add_callback(__mlpipe_loop.stop)
"""
EXIT_POLL = 0.005  # seconds between checks that a kernel process has exited


async def exit_kernel(km, timeout: float, exited: Callable[[], bool] | None = None) -> bool:
    """Ask the kernel of `km` (an AsyncKernelManager) to exit; True once it has exited, False
    if it is still running after `timeout` s (the caller kills it). `exited` tells when a
    kernel this process did not start (one in a container) is gone."""
    if exited is None:
        proc = getattr(getattr(km, "provisioner", None), "process", None)
        if proc is None:
            return True
        exited = lambda: proc.poll() is not None  # noqa: E731
    if exited():
        return True
    kc = km.client()
    kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    try:
        kc.execute(EXIT_CODE, silent=True, store_history=False, allow_stdin=False)
        deadline = time.monotonic() + timeout
        while not exited():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(EXIT_POLL)
        return True
    finally:
        kc.stop_channels()


_CONTEXT = None  # the zmq context of every step kernel's manager and clients, for the process
SEND_TIMEOUT_MS = 10_000
_CLASSES: dict[type, type] = {}
_CLASSES_LOCK = threading.Lock()


def _zmq_context():
    """One zmq.asyncio.Context for all step kernels of this process, never terminated (as
    zmq's own Context.instance()). jupyter_client otherwise makes a context, with its two
    I/O threads, for each kernel manager and for each client (three per step: the pool's, the
    papermill engine's, the exit request's) and destroys it with the client."""
    global _CONTEXT
    with _CLASSES_LOCK:
        if _CONTEXT is None:
            import zmq.asyncio

            _CONTEXT = zmq.asyncio.Context()
            # jupyter_client's sends are blocking calls, and a DEALER socket left without a
            # peer blocks in send for good: on the pool's one event loop that froze every step
            # of the run (seen with TCP ports taken by another kernel). A send that cannot be
            # queued now raises zmq.Again instead, and that kernel is replaced or its step fails.
            _CONTEXT.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        return _CONTEXT


CHANNELS = ("_shell_channel", "_iopub_channel", "_stdin_channel", "_hb_channel",
            "_control_channel")


def shared_context_class(manager_class: type) -> type:
    """`manager_class` with the shared zmq context for the manager and every client it makes,
    and clients that stop only the channels they started."""
    with _CLASSES_LOCK:
        found = _CLASSES.get(manager_class)
    if found is not None:
        return found

    class SharedContextManager(manager_class):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("context", _zmq_context())
            super().__init__(**kwargs)
            self.client_factory = _lean_client_class(self.client_factory)

        def client(self, **kwargs: Any):
            kwargs.setdefault("context", self.context)
            return super().client(**kwargs)

    with _CLASSES_LOCK:
        return _CLASSES.setdefault(manager_class, SharedContextManager)


def _lean_client_class(client_class: type) -> type:
    with _CLASSES_LOCK:
        found = _CLASSES.get(client_class)
        if found is not None:
            return found

        class LeanClient(client_class):  # type: ignore[misc, valid-type]
            def stop_channels(self) -> None:
                # jupyter_client's reads every channel property, which connects a socket for
                # each channel never started (stdin, heartbeat, control) only to drop it
                if not all(hasattr(self, name) for name in CHANNELS):
                    super().stop_channels()
                    return
                for name in CHANNELS:
                    channel = getattr(self, name)
                    if channel is not None and channel.is_alive():
                        channel.stop()

        return _CLASSES.setdefault(client_class, LeanClient)
