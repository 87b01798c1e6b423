"""Kernels started ahead of the steps that will use them: a small warm pool for the local
executor.

Starting an IPython kernel takes about half a second, most of it importing ipykernel; a chain
of steps pays it once per step. The pool starts the next kernel while the current step runs,
so a step usually finds one ready, and on Linux forks kernels from a zygote that imported
ipykernel once (fork.py), which cuts what each costs. Each kernel is handed out once and
never reused: a step still gets a kernel that has run nothing of anyone's.

A pooled kernel is started before anyone knows its step, so it cannot be launched in the
step's working directory with the step's environment. At hand-out it runs one silent,
history-less request that chdirs there and sets the step's variables, leaving no names behind;
a step whose variables matter at interpreter start (PYTHON*, LD_*, locale, ...) gets a kernel
started for it instead. Every kernel is started, handed out and stopped on one background event
loop; `shutdown()` kills whatever is left (end of run, cancel), so no kernel outlives its run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

from . import fork as kernelfork
from .client import exit_kernel, shared_context_class
from .scratch import scratch_dir
from .stepkernel import KERNEL_ARGS, STARTUP_ENV, kernel_manager_class

ENTER = """\
def __mlpipe_enter(cwd, env):
    import os
    os.chdir(cwd)
    os.environ.update(env)
    from pathlib import Path
    get_ipython().history_manager.dir_hist[:] = [Path(cwd)]
__mlpipe_enter({cwd!r}, {env!r})
del __mlpipe_enter
"""


class PoolClosed(RuntimeError):
    """The run ended or was cancelled: no more kernels."""


@dataclass(eq=False)
class Kernel:
    """One kernel process, from its start to its reaping."""

    km: Any  # jupyter_client AsyncKernelManager
    log: Path  # the kernel process's own stdout/stderr
    warm: bool  # started ahead, before its step was known
    kc: Any = None  # the pool's client, used once at hand-out, then closed
    done: bool = field(default=False)

    @property
    def process(self):
        return getattr(getattr(self.km, "provisioner", None), "process", None)

    def kill(self) -> None:
        """SIGKILL the kernel and everything in its process group. Any thread, never raises."""
        proc = self.process
        if proc is None:
            return
        pgid = getattr(self.km.provisioner, "pgid", None)
        with contextlib.suppress(OSError):
            proc.kill()  # the kernel itself first: its group may not exist yet
        if pgid:
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)


EXIT_GRACE = 1.0  # seconds the end of a run waits for released kernels to exit by themselves


class KernelPool:
    """`size` kernels kept warm, never more than the kernels still to be asked for."""

    def __init__(self, *, size: int, expected: int, kernel_name: str = "python3",
                 startup_timeout: float = 60, shutdown_wait: float = 5,
                 fork: bool = True) -> None:
        # imported here, in the caller's thread, before the loop thread can need it: two
        # threads importing jupyter_client at once (ours, and papermill's import in a step)
        # can see its modules half-initialised (ImportError seen in the benchmarks)
        self._manager_class = shared_context_class(kernel_manager_class())
        self.size = max(0, size)
        self.kernel_name = kernel_name
        self.startup_timeout = startup_timeout
        self.shutdown_wait = shutdown_wait
        self._remaining = expected  # upper bound of acquire() calls still to come
        self._warm: deque[Future] = deque()
        self._kernels: set[Kernel] = set()
        self._exiting: set[Future] = set()  # graceful exits released without waiting
        self._lock = threading.Lock()
        self._closed = False
        self._scratch = scratch_dir("kernels")
        self._count = 0
        # kernels forked from a zygote that imported ipykernel once (fork.py); started
        # now, so its imports overlap the runner's own (papermill's)
        # with the interpreter flags of the kernelspec (none when it is no stock kernel to fork)
        self._zygote = None
        flags = kernelfork.spec_flags(kernel_name) if fork and kernelfork.supported() else None
        if flags is not None:
            with contextlib.suppress(OSError):  # then every kernel is started the usual way
                self._zygote = kernelfork.Zygote(self._scratch, flags=flags,
                                                 timeout=startup_timeout)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mlpipe-kernels",
                                        daemon=True)
        self._thread.start()

    # -- called from step threads ------------------------------------------------------------
    def acquire(self, workdir: Path, env: dict[str, str], timeout: float | None = None) -> Kernel:
        """A started kernel running in `workdir` with `env` set, never used before."""
        return self.request(workdir, env)(timeout)

    def request(self, workdir: Path, env: dict[str, str]) -> Callable[[float | None], Kernel]:
        """acquire() in two halves: the kernel is chosen (or starts) now; calling the result
        waits for it, so the caller can do other work while a kernel boots."""
        with self._lock:
            if self._closed:
                raise PoolClosed("the run is over: no kernel")
            self._remaining -= 1
            late_env = not any(STARTUP_ENV.match(k) for k in env)
            ahead = self._warm.popleft() if late_env and self._warm else None
            if ahead is None:  # nothing warm (or the env needs a fresh start): start one now
                ahead = self._submit(self._start(cwd=workdir, env={**os.environ, **env},
                                                 warm=False))
            self._top_up()

        def result(timeout: float | None = None) -> Kernel:
            kernel = ahead.result(timeout)
            if not kernel.warm:
                return kernel
            try:
                if kernel.process is None or kernel.process.poll() is not None:
                    raise RuntimeError("the warm kernel died")
                self._call(self._enter(kernel, workdir, env), timeout)
            except PoolClosed:
                raise
            except Exception:  # a warm kernel that cannot be used is replaced, not reported
                self._call(self._stop(kernel, graceful=False), timeout)
                kernel = self._call(self._start(cwd=workdir, env={**os.environ, **env},
                                                warm=False), timeout)
            return kernel

        return result

    def release(self, kernel: Kernel, log_to: Path | None = None, wait: bool = True) -> None:
        """Stop a step's kernel: asked to exit first (exit_kernel), so that files it left open are
        flushed and atexit hooks run as with any kernel, SIGKILL if it lingers; then its
        process log is appended to `log_to`. wait=False returns at once; shutdown() still
        lets that exit finish."""
        try:
            if wait:
                self._call(self._stop(kernel, graceful=True, log_to=log_to), None)
            else:
                with self._lock:
                    if self._closed:
                        raise PoolClosed("the run is over")
                    fut = self._submit(self._stop(kernel, graceful=True, log_to=log_to))
                    self._exiting.add(fut)
                    fut.add_done_callback(self._exiting.discard)
        except PoolClosed:
            kernel.kill()

    def shutdown(self, *, cancel: bool = False) -> None:
        """Kill every kernel still alive (warm, starting or in use), and stop. Idempotent.
        Kernels already released finish their graceful exit first, unless `cancel`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            warm = list(self._warm)
            self._warm.clear()
            exiting = list(self._exiting)
        for fut in warm:
            fut.cancel()
        if not cancel:
            # Released without waiting means the step had no file outputs to flush, so these
            # exits get a short grace, not shutdown_wait each. (They used to need it: a kernel
            # asked with a shutdown_request now and then hung in exit; see exit_kernel.)
            deadline = time.monotonic() + EXIT_GRACE
            for fut in exiting:
                with contextlib.suppress(Exception):
                    fut.result(max(0.0, deadline - time.monotonic()))
        with self._lock:
            kernels = list(self._kernels)
        for kernel in kernels:  # from this thread at once: a cancel must not wait on the loop
            kernel.kill()
        try:
            asyncio.run_coroutine_threadsafe(self._stop_all(), self._loop).result(30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self._loop.close()
            if self._zygote is not None:
                self._zygote.close()
            shutil.rmtree(self._scratch, ignore_errors=True)

    def alive(self) -> list[int]:
        """Pids of the kernels the pool still holds (for tests)."""
        with self._lock:
            return [k.process.pid for k in self._kernels
                    if k.process is not None and k.process.poll() is None]

    # -- internals ---------------------------------------------------------------------------
    def _submit(self, coro) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _call(self, coro, timeout: float | None):
        with self._lock:  # under the lock: shutdown() cannot stop the loop under this call
            if self._closed:
                coro.close()
                raise PoolClosed("the run is over: no kernel")
            fut = self._submit(coro)
        return fut.result(timeout)

    def _top_up(self) -> None:
        """Start kernels ahead, up to `size`, for steps that may still come (lock held)."""
        while len(self._warm) < min(self.size, self._remaining):
            self._warm.append(self._submit(self._start(cwd=self._scratch, env=dict(os.environ),
                                                       warm=True)))

    async def _start(self, *, cwd: Path, env: dict[str, str], warm: bool) -> Kernel:
        self._count += 1
        log = self._scratch / f"kernel-{self._count}.log"
        # Unix sockets in the pool's own directory, not TCP ports: jupyter_client picks a free
        # port by binding and releasing it, and with many kernels starting at once another
        # kernel, or an outgoing connection's ephemeral port, can take it first. The kernel
        # then died on bind (EADDRINUSE) or, when a client connected to itself, never
        # answered (60 s, then the step failed); bench/soak.py found both.
        km = self._manager_class(kernel_name=self.kernel_name, transport="ipc",
                                 connection_file=str(self._scratch / f"kernel-{self._count}.json"))
        kernel = Kernel(km, log, warm)
        if self._zygote is not None:
            kernelfork.use_zygote(kernel.km, self._zygote)
        with self._lock:
            if self._closed:
                raise PoolClosed("the run is over: no kernel")
            self._kernels.add(kernel)
        try:
            with open(log, "ab") as out:
                await kernel.km.start_kernel(cwd=str(cwd), env=env, stdout=out, stderr=out,
                                             extra_arguments=list(KERNEL_ARGS))
        except BaseException:
            await self._stop(kernel, graceful=False)
            raise
        if self._closed:  # shut down while it started
            await self._stop(kernel, graceful=False)
            raise PoolClosed("the run is over: no kernel")
        return kernel

    async def _enter(self, kernel: Kernel, workdir: Path, env: dict[str, str]) -> None:
        """Move a warm kernel into its step: silent, no history, no execution count. Its reply
        is also what proves the kernel answers: a request on the shell channel waits in ZMQ's
        queue until the kernel is up, so no kernel_info handshake (and no IOPub subscription,
        which only that needs) is made ahead for each kernel (runner CPU per step)."""
        kc = kernel.kc = kernel.km.client()
        kc.start_channels(iopub=False, stdin=False, hb=False, control=False)
        try:
            msg_id = kc.execute(ENTER.format(cwd=str(workdir), env=dict(env)), silent=True,
                                store_history=False, allow_stdin=False)
            deadline = time.monotonic() + self.startup_timeout
            while True:
                try:
                    reply = await kc.get_shell_msg(timeout=1)
                except Empty:
                    proc = kernel.process
                    if proc is None or proc.poll() is not None:
                        raise RuntimeError("the warm kernel died") from None
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"kernel did not answer in {self.startup_timeout:g} "
                                           "s") from None
                    continue
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
            content = reply["content"]
            if content.get("status") != "ok":
                raise RuntimeError(f"could not move the kernel into {workdir}: "
                                   f"{content.get('ename')}: {content.get('evalue')}")
        finally:
            kc.stop_channels()
            kernel.kc = None

    async def _stop(self, kernel: Kernel, *, graceful: bool, log_to: Path | None = None) -> None:
        # may run twice for one kernel (shutdown while it starts): killing is always attempted
        proc = kernel.process
        if graceful and not kernel.done and proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):  # a kernel that cannot be asked is killed below
                await exit_kernel(kernel.km, self.shutdown_wait)
        kernel.kill()  # whatever it left in its process group goes too
        if proc is not None:
            await asyncio.get_running_loop().run_in_executor(None, _reap, proc)
        if kernel.kc is not None:
            kernel.kc.stop_channels()
            kernel.kc = None
        if kernel.done:
            return
        kernel.done = True
        with contextlib.suppress(Exception):  # connection files only
            await kernel.km.cleanup_resources()
        with self._lock:
            self._kernels.discard(kernel)
        if log_to is not None and kernel.log.exists():
            with open(log_to, "ab") as dest, open(kernel.log, "rb") as src:
                shutil.copyfileobj(src, dest)
        kernel.log.unlink(missing_ok=True)

    async def _stop_all(self) -> None:
        with self._lock:
            kernels = list(self._kernels)
        await asyncio.gather(*(self._stop(k, graceful=False) for k in kernels),
                             return_exceptions=True)
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:  # kernels still starting: their own cleanup kills them
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _reap(proc) -> None:
    with contextlib.suppress(Exception):  # SIGKILLed: it goes
        proc.wait(timeout=10)
