"""The `local` executor: papermill in-process, a fresh kernel per step, no container.

Papermill's default engine is extended in ways that matter for a runner with parallel steps:
the kernel runs in the step's working directory (papermill's own `cwd` would chdir the whole
process), the running kernel can be killed from another thread (cancel, timeout), and the
kernel comes from a small warm pool (kernelpool.py) that starts the next step's kernel while
the current step runs. Each step still gets a kernel that has never run anything.

Speed notes (measured in docs/benchmarks.md): papermill stays in this process, imported once
per run, without the two imports it never needs for a step notebook; the executed notebook is
saved at most once a second while cells run (papermill saves it twice per cell), and always at
the start and at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .base import Executor, StepJob

SAVE_EVERY = 1.0  # seconds between saves of the executed notebook while cells run
# jsonschema (via nbformat) imports rfc3987_syntax when installed, which compiles a grammar at
# import time (0.8 s here); papermill.iorw imports pyarrow.fs for hdfs:// paths. A step notebook
# needs neither: they are hidden while papermill loads, outside a kernel (never in a user's).
_UNNEEDED = ("rfc3987_syntax", "pyarrow.fs")


def _papermill():
    if "papermill" not in sys.modules and "ipykernel" not in sys.modules:
        hidden = [m for m in _UNNEEDED if m not in sys.modules]
        for name in hidden:
            sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
        try:
            import papermill
        finally:
            for name in hidden:
                if sys.modules.get(name, 0) is None:
                    del sys.modules[name]
    import papermill

    return papermill


class _LineWriter:
    """A file-like sink for papermill's stdout/stderr that forwards whole lines."""

    def __init__(self, emit) -> None:
        self._emit = emit
        self._buf = ""

    def write(self, text: str) -> int:
        self._buf += text
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        if self._buf:
            self._emit(self._buf)
            self._buf = ""


def _throttle_saves(nb_man) -> None:
    """Save while cells run at most every SAVE_EVERY s; the final save always happens."""
    save, complete = nb_man.save, nb_man.notebook_complete
    last = [time.monotonic()]  # notebook_start has just saved

    def throttled(**kwargs):
        now = time.monotonic()
        if now - last[0] >= SAVE_EVERY:
            save(**kwargs)
            last[0] = now

    def notebook_complete(**kwargs):
        nb_man.save = save
        complete(**kwargs)

    nb_man.save = throttled
    nb_man.notebook_complete = notebook_complete


def _connect_client(client, timeout: float) -> None:
    """Give nbclient a connected client, so it skips wait_for_ready's fixed 0.2 s (see
    kernelpool.connect); on this thread's event loop, the one nbclient runs cells on."""
    from jupyter_core.utils import run_sync

    from ..kernelpool import connect

    client.kc = client.km.client()
    client.kc.start_channels()
    try:
        run_sync(connect)(client.kc, timeout)
    except Exception:
        client.kc.stop_channels()
        client.kc = None
        raise
    client.kc.allow_stdin = False


def _engine() -> str:
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines

    class StepEngine(NBClientEngine):
        """nbclient on the step's pre-started kernel, with progress and throttled saves."""

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False,
                                     stdout_file=None, stderr_file=None, start_timeout=60,
                                     execution_timeout=None, mlpipe_job=None, mlpipe_km=None,
                                     **kwargs):
            job: StepJob = mlpipe_job
            total = sum(1 for c in nb_man.nb.cells if c.cell_type == "code")
            done = [0]
            complete = nb_man.cell_complete

            def cell_complete(cell, cell_index=None, **kw):
                complete(cell, cell_index=cell_index, **kw)
                if cell.cell_type == "code":
                    done[0] += 1
                    job.progress(done[0], total)

            nb_man.cell_complete = cell_complete
            _throttle_saves(nb_man)
            # km given: nbclient connects to that kernel and leaves stopping it to us
            client = PapermillNotebookClient(
                nb_man, km=mlpipe_km, kernel_name=kernel_name, log_output=log_output,
                stdout_file=stdout_file, stderr_file=stderr_file, startup_timeout=start_timeout,
                timeout=execution_timeout, resources={"metadata": {"path": str(job.workdir)}},
            )
            if job.cancel.is_set():
                return nb_man.nb
            try:
                _connect_client(client, start_timeout)
                return client.execute()
            finally:
                if client.kc is not None:
                    client.kc.stop_channels()

    if "mlpipe-step" not in papermill_engines._engines:
        papermill_engines.register("mlpipe-step", StepEngine)
    return "mlpipe-step"


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # kernels started ahead of their steps, at most --max-parallel (0: each step starts
        # its own kernel when it runs). Two keep up with a chain of quick steps on 2 cores.
        self.warm_kernels = int(options.get("warm_kernels",
                                            os.environ.get("MLPIPE_WARM_KERNELS", "2")))
        self._expected = 0
        self._pool = None
        self._pool_lock = threading.Lock()
        self._closed = False

    def start_run(self, *, spec, base_dir, run_id, log) -> None:
        self._expected = len(spec.steps)  # an upper bound of the steps that will execute

    def end_run(self, *, run_id: str) -> None:
        self._close_pool(cancel=False)

    def cancel_run(self, *, run_id: str) -> None:
        self._close_pool(cancel=True)

    def _close_pool(self, *, cancel: bool) -> None:
        with self._pool_lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(cancel=cancel)

    def _kernels(self):
        """The run's pool, started with the first step that executes (a fully reused run
        starts no kernel at all). Created under the lock, so the other step threads wait here
        while it imports jupyter_client instead of importing it concurrently."""
        from ..kernelpool import KernelPool, PoolClosed

        with self._pool_lock:
            if self._closed:
                raise PoolClosed("the run is over: no kernel")
            if self._pool is None:
                size = min(self.warm_kernels, self.max_parallel)
                self._pool = KernelPool(size=size, expected=max(1, self._expected))
            return self._pool

    def prepare(self, job: StepJob) -> None:
        super().prepare(job)
        for rel, source in job.files.items():
            dest = job.workdir / rel.rstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, dest, dirs_exist_ok=True)
            else:
                shutil.copyfile(source, dest)

    def execute(self, job: StepJob, parameters: dict[str, Any]) -> None:
        pool = self._kernels()
        pending = pool.request(job.workdir, {k: str(v) for k, v in job.env.items()})
        papermill = _papermill()  # while the kernel boots (the first step's is cold)
        engine = _engine()
        kernel = pending()
        job.stop = kernel.kill
        out = _LineWriter(job.log)
        err = _LineWriter(job.log)
        try:
            if job.cancel.is_set() or job.timed_out.is_set():
                raise self.stop_reason(job)
            papermill.execute_notebook(
                str(job.notebook), str(job.output), parameters=parameters,
                engine_name=engine, kernel_name="python3", progress_bar=False,
                log_output=False, stdout_file=out, stderr_file=err, mlpipe_job=job,
                mlpipe_km=kernel.km,
            )
        finally:
            out.flush()
            err.flush()
            # a file output is complete once the kernel has exited (it may hold it open);
            # variable outputs were written and closed by the outputs cell
            pool.release(kernel, log_to=Path(job.output).parent / "kernel.log",
                         wait=bool(job.step.file_outputs) or job.cancel.is_set())
        if job.cancel.is_set():
            raise self.stop_reason(job)

    def cleanup(self, job: StepJob) -> None:
        job.stop = None
