"""The `local` executor: papermill in-process, a fresh kernel per step, no container.

Papermill's default engine is extended in two ways that matter for a runner with parallel
steps: the kernel starts in the step's working directory (papermill's own `cwd` would chdir the
whole process), and the running kernel can be killed from another thread (cancel, timeout).
"""

from __future__ import annotations

import os
import shutil
import signal
from typing import Any

from .base import Executor, StepJob


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


def _engine():
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines

    class StepEngine(NBClientEngine):
        """nbclient with the kernel's cwd and env set per step, and a handle to kill it."""

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False,
                                     stdout_file=None, stderr_file=None, start_timeout=60,
                                     execution_timeout=None, mlpipe_job=None, **kwargs):
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
            client = PapermillNotebookClient(
                nb_man, kernel_name=kernel_name, log_output=log_output, stdout_file=stdout_file,
                stderr_file=stderr_file, startup_timeout=start_timeout,
                timeout=execution_timeout, resources={"metadata": {"path": str(job.workdir)}},
            )

            def stop() -> None:
                km = client.km
                provisioner = getattr(km, "provisioner", None) if km else None
                pgid = getattr(provisioner, "pgid", None)
                pid = getattr(provisioner, "pid", None)
                try:
                    if pgid:
                        os.killpg(pgid, signal.SIGKILL)
                    elif pid:
                        os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

            job.stop = stop
            if job.cancel.is_set():
                return nb_man.nb
            # the kernel process's own stderr (not cell output) goes to the step's kernel.log
            with open(job.output.parent / "kernel.log", "ab") as kernel_log:
                return client.execute(env={**os.environ, **job.env}, stdout=kernel_log,
                                      stderr=kernel_log)

    if "mlpipe-step" not in papermill_engines._engines:
        papermill_engines.register("mlpipe-step", StepEngine)
    return "mlpipe-step"


class LocalExecutor(Executor):
    name = "local"

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
        import papermill

        out = _LineWriter(job.log)
        err = _LineWriter(job.log)
        try:
            papermill.execute_notebook(
                str(job.notebook), str(job.output), parameters=parameters,
                engine_name=_engine(), kernel_name="python3", progress_bar=False,
                log_output=False, stdout_file=out, stderr_file=err, mlpipe_job=job,
            )
        finally:
            out.flush()
            err.flush()
        if job.cancel.is_set():
            raise self.stop_reason(job)

    def cleanup(self, job: StepJob) -> None:
        job.stop = None
