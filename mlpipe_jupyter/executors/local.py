"""The `local` executor: papermill in-process, a fresh kernel per step, no container.

Papermill's default engine is extended in ways that matter for a runner with parallel steps:
the kernel runs in the step's working directory (papermill's own `cwd` would chdir the whole
process), the running kernel can be killed from another thread (cancel, timeout), and the
kernel comes from a small warm pool (kernels/pool.py) that starts the next step's kernel while
the current step runs. Each step still gets a kernel that has never run anything.

Speed notes (measured in docs/benchmarks.md): papermill stays in this process, imported once
per run, through the engine in step/engine.py that the container entry (step/main.py) shares.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

from ..step.engine import import_papermill, run_step_notebook
from .base import Executor, StepJob
from .workers import KernelWorker


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # kernels started ahead of their steps, at most --max-parallel (0: each step starts
        # its own kernel when it runs). Two keep up with a chain of quick steps on 2 cores.
        self.warm_kernels = int(options.get("warm_kernels",
                                            os.environ.get("MLPIPE_WARM_KERNELS", "2")))
        # step kernels forked from a zygote that imported ipykernel once (kernels/fork.py)
        self.fork_kernels = str(options.get("fork_kernels",
                                            os.environ.get("MLPIPE_FORK_KERNELS", "1"))) != "0"
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
        from ..kernels.pool import KernelPool, PoolClosed

        with self._pool_lock:
            if self._closed:
                raise PoolClosed("the run is over: no kernel")
            if self._pool is None:
                size = min(self.warm_kernels, self.max_parallel)
                self._pool = KernelPool(size=size, expected=max(1, self._expected),
                                        fork=self.fork_kernels)
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
        import_papermill()  # while the kernel boots (the first step's is cold)
        kernel = pending()
        job.stop = kernel.kill
        try:
            if job.cancel.is_set() or job.timed_out.is_set():
                raise self.stop_reason(job)
            run_step_notebook(job, parameters, kernel.km)
        finally:
            # a file output is complete once the kernel has exited (it may hold it open);
            # variable outputs were written and closed by the outputs cell
            pool.release(kernel, log_to=job.kernel_log,
                         wait=bool(job.step.file_outputs) or job.cancel.is_set())
        if job.cancel.is_set():
            raise self.stop_reason(job)

    def open_worker(self, job: StepJob, workdir: Path, scratch: Path) -> KernelWorker:
        for rel in job.files:  # what the step reads, shared read-only
            (workdir / rel.rstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(job.workdir / rel.rstrip("/"), workdir / rel.rstrip("/"))
        pool = self._kernels()
        kernel = pool.request(workdir, {k: str(v) for k, v in job.env.items()})()
        return KernelWorker(
            kernel.km.get_connection_info(), job.log,
            alive=lambda: kernel.process is not None and kernel.process.poll() is None,
            kill=kernel.kill,
            release=lambda: pool.release(kernel, log_to=job.kernel_log, wait=False),
            scratch=scratch).start()

    def cleanup(self, job: StepJob) -> None:
        job.stop = None
