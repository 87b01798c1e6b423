"""A step's kernel process: how it starts (`python -m mlpipe_jupyter.stepkernel`) and how it
is asked to exit. Used by the warm pool on the host, as a docker step's whole command (the
runner drives it: executors/kernelbridge.py), and by stepmain in a container.

Import-light: this module is the kernel's `__main__`; jupyter_client is imported only by the
functions that manage kernels.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

# nbclient's own default: no history file per kernel (nor one per container's empty HOME)
KERNEL_ARGS = ["--HistoryManager.hist_file=:memory:"]
# Modules ipykernel imports at start-up that a step kernel never uses, hidden while it
# initialises (never afterwards, so a step's own code can import them). debugpy is a quarter of
# a kernel's start-up CPU (about 0.08 of 0.3 CPU-s here), and a step runs in batch: no
# frontend attaches a debugger (the kernel reports `debugger: false` in kernel_info).
KERNEL_UNNEEDED = ("debugpy",)
# environment variables read once at interpreter start: a kernel already running (a warm one)
# or forked from one that is (kernelfork) cannot take these on
STARTUP_ENV = re.compile(r"(PYTHON|LD_|MALLOC|IPYTHON|JUPYTER|JPY_|PYDEVD|LC_|LANG$|TZ$|USER$"
                         r"|TRAITLETS_|TORNADO_|PYZMQ_)")


@contextlib.contextmanager
def hidden_modules(names: Iterable[str]) -> Iterator[None]:
    """While the block runs, importing any of `names` not imported yet raises ImportError (what
    importing it does when it is not installed); afterwards it imports as usual."""
    hidden = [m for m in names if m not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def launch_kernel() -> None:
    """A step's kernel process: ipykernel's own launcher (ipykernel_launcher), minus the
    start-up imports in KERNEL_UNNEEDED. Started as `python -m mlpipe_jupyter.stepkernel -f FILE`
    by kernel_manager_class(), only in place of the stock `-m ipykernel_launcher` of the
    same interpreter."""
    from importlib.util import find_spec

    # as ipykernel_launcher does: the cwd is not importable while the kernel loads (a step's
    # `zmq.py` must not shadow pyzmq); IPython puts '' back for the step's code
    if sys.path and (sys.path[0] == "" or Path(sys.path[0]) == Path.cwd()):
        del sys.path[0]
    stock = find_spec("ipykernel_launcher")
    if stock is not None and stock.origin:
        sys.argv[0] = stock.origin  # what code probing for a Jupyter kernel expects to see
    with hidden_modules(KERNEL_UNNEEDED):
        from ipykernel.kernelapp import IPKernelApp

        app = IPKernelApp.instance()
        app.initialize()
    app.start()


_MANAGER_CLASS = None
_MANAGER_LOCK = threading.Lock()


def kernel_manager_class():
    """jupyter_client's AsyncKernelManager, launching the stock Python kernel through
    this module (ipykernel's launcher minus its debugger import: 25% less start-up CPU, see
    launch_kernel). Any other kernel command (a kernelspec naming another
    interpreter or another launcher) is left exactly as it is."""
    global _MANAGER_CLASS
    with _MANAGER_LOCK:
        if _MANAGER_CLASS is None:
            from jupyter_client import AsyncKernelManager

            class StepKernelManager(AsyncKernelManager):
                def format_kernel_cmd(self, extra_arguments=None):
                    cmd = super().format_kernel_cmd(extra_arguments)
                    if (len(cmd) > 2 and cmd[1:3] == ["-m", "ipykernel_launcher"]
                            and os.path.abspath(cmd[0]) == os.path.abspath(sys.executable)):
                        cmd[2] = "mlpipe_jupyter.stepkernel"
                    return cmd

            _MANAGER_CLASS = StepKernelManager
        return _MANAGER_CLASS


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


if __name__ == "__main__":
    launch_kernel()
