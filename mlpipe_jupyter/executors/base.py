"""The executor ABC: one step in, a finished step notebook and its outputs out.

`run()` is a fixed sequence, as jupyter-scheduler's executors have: prepare, execute, and
cleanup always, with every foreign error translated to an MlpipeError at this boundary.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import Cancelled, ExecutorError, MlpipeError, StepFailed, StepTimeout
from ..home import KERNEL_LOG
from ..model.spec import PipelineSpec, StepSpec
from ..run.stepbook import IO_PARAM, failure_from_notebook
from .workers import KernelWorker


@dataclass
class StepJob:
    """Everything an executor needs for one attempt of one step, as host paths."""

    run_id: str
    step: StepSpec
    attempt: int
    notebook: Path  # the step notebook to execute
    output: Path  # where the executed notebook goes
    workdir: Path  # the step's working directory (its cwd)
    outputs_dir: Path  # where the outputs cell writes variable artifacts
    inputs: dict[str, Path]  # variable input -> artifact directory
    files: dict[str, Path]  # file input (relative path) -> file or directory to provide
    parameters: dict[str, Any]  # pipeline parameter values for this run
    log: Callable[[str], None]  # one line of the step's output
    progress: Callable[..., None]  # cells done, cells total (a fan-out step: batches, failed)
    cancel: threading.Event = field(default_factory=threading.Event)
    timed_out: threading.Event = field(default_factory=threading.Event)
    env: dict[str, str] = field(default_factory=dict)
    # set by the executor while the step runs: stops it from another thread
    stop: Callable[[], None] | None = None

    @property
    def dir(self) -> Path:
        """The step's directory in its run (home.StepFiles.dir): output, logs, work."""
        return self.output.parent

    @property
    def kernel_log(self) -> Path:
        """The kernel process's own output (not the cells': those go to `log`)."""
        return self.dir / KERNEL_LOG

    def io(self, inputs: dict[str, str] | None = None, outputs_dir: str | None = None) -> dict:
        return {"inputs": inputs or {k: str(v) for k, v in self.inputs.items()},
                "outputs_dir": outputs_dir or str(self.outputs_dir)}


class Executor(ABC):
    name: ClassVar[str] = ""
    # steps this run may run at once, set by the runner: a bound for work started ahead
    max_parallel: int = 1

    def __init__(self, **options: Any) -> None:
        self.options = options

    @classmethod
    def available(cls) -> str | None:
        """None when usable here, else a one-line reason."""
        return None

    def ready(self) -> str | None:
        """available(), asked of the executor that will run: it may keep what it checked with
        (the docker client it pinged), so that a run asks the engine once."""
        return self.available()

    def environment(self, step: StepSpec) -> str:
        """What else a step's result depends on besides its code and inputs: the local Python
        environment here, the image digest for containers. Part of the step's cache key.

        Read once per executor, that is once per run (a runner chooses a new one): a package
        installed between two runs in one kernel changes the second run's keys."""
        from ..run.fingerprint import local_environment

        if "_environment" not in vars(self):
            self._environment = local_environment()
        return self._environment

    def preflight(self, *, spec: PipelineSpec, base_dir: Path) -> None:
        """Quick checks before a run is recorded: raise an MlpipeError when this executor
        cannot run this pipeline here (an image missing, say). When the user named no
        executor, the runner then says why in one line and runs the steps locally."""

    def start_run(self, *, spec: PipelineSpec, base_dir: Path, run_id: str,
                  log: Callable[[str], None]) -> None:
        """Once per run, before any step (build an image, connect to a cluster, ...)."""

    def end_run(self, *, run_id: str) -> None:
        """Once per run, after the last step, whatever happened. Must not raise."""

    def cancel_run(self, *, run_id: str) -> None:
        """Stop everything the run still holds (called from another thread)."""

    def run(self, job: StepJob) -> None:
        """Run one attempt; return normally only when the step succeeded."""
        try:
            self.prepare(job)
            self.execute(job, {**job.parameters, IO_PARAM: self.io_for(job)})
        except MlpipeError:
            raise
        except Exception as exc:
            raise self.translate(job, exc) from exc
        finally:
            self.cleanup(job)

    def prepare(self, job: StepJob) -> None:
        """Make the working directory ready (inputs in place, outputs dir empty)."""
        job.workdir.mkdir(parents=True, exist_ok=True)
        job.outputs_dir.mkdir(parents=True, exist_ok=True)

    def io_for(self, job: StepJob) -> dict:
        """The `_mlpipe_io` parameter, as paths the step's kernel sees."""
        return job.io()

    @abstractmethod
    def execute(self, job: StepJob, parameters: dict[str, Any]) -> None:
        """Execute job.notebook into job.output with these papermill parameters."""

    def open_worker(self, job: StepJob, workdir: Path, scratch: Path) -> KernelWorker:
        """A fresh kernel running in the empty `workdir` with the step's environment and its
        file inputs, for a fan-out step (run/foreach.py), started and connected; it writes
        batch results under `scratch` (KernelWorker.scratch)."""
        raise ExecutorError(f"step `{job.step.name}`: the {self.name} executor cannot run "
                            "--foreach steps", step=job.step.name, option="--foreach")

    def cleanup(self, job: StepJob) -> None:
        """Release whatever the step held (kernel, container). Must not raise."""

    def stop_reason(self, job: StepJob) -> MlpipeError | None:
        if job.cancel.is_set():
            return Cancelled(f"step `{job.step.name}` was cancelled", step=job.step.name)
        if job.timed_out.is_set():
            return StepTimeout(f"step `{job.step.name}` timed out after "
                               f"{job.step.timeout:g} s", step=job.step.name,
                               cause="timeout")
        return None

    def translate(self, job: StepJob, exc: Exception) -> MlpipeError:
        """A foreign error from papermill, nbclient or an engine, as one clear MlpipeError."""
        stopped = self.stop_reason(job)
        if stopped is not None:
            return stopped
        failure = failure_from_notebook(job.step.name, job.output)
        if failure is not None:
            return failure
        name = type(exc).__name__
        if name == "DeadKernelError":
            return StepFailed(f"step `{job.step.name}`: the kernel died ({exc})".splitlines()[0],
                              step=job.step.name, ename=name, evalue=str(exc))
        return ExecutorError(f"step `{job.step.name}`: {self.name} executor error: {name}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}",
                             step=job.step.name, cause=name)
