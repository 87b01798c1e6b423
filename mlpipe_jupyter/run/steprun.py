"""One step of a run, on one of the runner's pool threads: its notebook and log in its
directory, its attempts (retries, timeout, cancellation) through the executor, its outputs
published to the artifact store. The runner decides what runs (runner.py); this runs it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import safefs
from ..errors import Cancelled, MlpipeError, StepFailed
from ..executors import Executor, StepJob
from ..home import Home, StepFiles
from ..model.cache import short_reason
from ..model.spec import PipelineSpec, StepSpec, is_variable
from ..model.states import StepState
from .artifacts import ArtifactStore
from .events import RunListener
from .stepbook import write_step_notebook


@dataclass
class StepRunner:
    """Runs the steps of run `run_id`, each to a final state told through `set_state` (the
    runner's: it keeps the states under its lock and tells the listeners)."""

    run_id: str
    spec: PipelineSpec
    notebook: str
    params: dict[str, Any]
    home: Home
    executor: Executor
    artifacts: ArtifactStore
    events: RunListener
    set_state: Callable[..., None]
    cancelled: threading.Event
    _jobs: dict[str, StepJob] = field(default_factory=dict)  # the attempts under way
    _fanouts: dict[str, dict] = field(default_factory=dict)  # fan-out steps' batch records
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def stop_all(self) -> None:
        """Stop every attempt under way (their kernels, their containers)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel.set()
            if job.stop is not None:
                job.stop()

    def execute(self, step: StepSpec, key: str, parts: dict, reasons: list[str],
                digests: dict[str, str], fresh: bool = False) -> None:
        """Run `step` (its inputs: `digests`, input -> artifact) with its retries; `fresh`
        (--no-cache): a fan-out step reuses none of its earlier mini-batches either."""
        reason = short_reason(reasons)  # what live displays show; the store keeps them all
        files = self.home.step_files(self.run_id, step.name)
        files.dir.mkdir(parents=True, exist_ok=True)
        write_step_notebook(files.notebook, self.spec, step, pipeline=Path(self.notebook).stem)
        attempts = step.retries + 1
        with open(files.log, "a", encoding="utf-8") as log_file:
            def log(line: str) -> None:
                log_file.write(line + "\n")
                log_file.flush()
                self.events.on_step_log(run_id=self.run_id, step=step.name, line=line)

            for attempt in range(1, attempts + 1):
                if self.cancelled.is_set():
                    self.set_state(step.name, StepState.CANCELLED, reason="run cancelled",
                                   attempt=attempt)
                    return
                self.set_state(step.name, StepState.RUNNING, reason=reason, attempt=attempt,
                               cache_key=key, key_parts=parts, reasons=reasons)
                if attempts > 1:
                    log(f"--- attempt {attempt} of {attempts} ---")
                try:
                    outputs = self._attempt(step, files, digests, attempt, log, parts, fresh)
                except Cancelled as err:
                    self._stopped(step, attempt, err)
                    return
                except MlpipeError as err:
                    log(f"attempt {attempt} failed: {err}")
                    if attempt < attempts and not self.cancelled.is_set():
                        delay = min(2 ** (attempt - 1), 30)
                        log(f"retrying in {delay} s")
                        self.cancelled.wait(delay)
                        continue
                    self.set_state(step.name, StepState.FAILED, reason=str(err),
                                   error=err.to_dict(), attempt=attempt,
                                   **self._fanout(step, getattr(err, "fanout", None)))
                    return
                fanout = self._fanout(step, None)
                self.set_state(step.name, StepState.SUCCEEDED,
                               reason=_with_reused(reason, fanout.get("fanout")),
                               attempt=attempt, cache_key=key, key_parts=parts,
                               outputs=outputs, **fanout)
                return

    def _fanout(self, step: StepSpec, record: dict | None) -> dict:
        """`fanout=`: a fan-out step's batches and failures (run/foreach.py), once it ended."""
        with self._lock:
            record = self._fanouts.pop(step.name, None) or record
        return {} if record is None else {"fanout": record}

    def _stopped(self, step: StepSpec, attempt: int, err: Cancelled) -> None:
        if self.cancelled.is_set():
            self.set_state(step.name, StepState.CANCELLED, reason="run cancelled",
                           attempt=attempt)
        else:  # stopped by --fail-fast
            self.set_state(step.name, StepState.CANCELLED, reason="stopped by --fail-fast",
                           attempt=attempt, error=err.to_dict())

    def _attempt(self, step: StepSpec, files: StepFiles, digests: dict[str, str], attempt: int,
                 log: Callable[[str], None], parts: dict, fresh: bool) -> dict[str, str]:
        for path in (files.work, files.out):
            safefs.remove_tree(path)
        inputs, data = {}, {}
        for item, digest in digests.items():
            if (damage := self.artifacts.verify(digest)) is not None:
                raise StepFailed(f"step `{step.name}`: input `{item}` is damaged in the artifact "
                                 f"store ({damage}: {self.artifacts.path(digest)}); run again to "
                                 "rewrite it", step=step.name, cause="artifact-damaged")
            if is_variable(item):
                inputs[item] = self.artifacts.path(digest)
            else:
                data[item] = self.artifacts.data_path(digest)
        job = StepJob(
            run_id=self.run_id, step=step, attempt=attempt, notebook=files.notebook,
            output=files.output, workdir=files.work, outputs_dir=files.out,
            inputs=inputs, files=data, parameters=dict(self.params), log=log,
            progress=lambda done, total, *failed: self.events.on_step_progress(
                run_id=self.run_id, step=step.name, done=done, total=total,
                **({"failed": failed[0]} if failed else {})),
            env={**dict(step.env), "MLPIPE_RUN_ID": self.run_id, "MLPIPE_STEP": step.name,
                 "MLPIPE_ATTEMPT": str(attempt)},
        )
        self._run(job, parts, fresh)
        published = self.artifacts.publish_step_outputs(step.name, step.outputs, files.work,
                                                        files.out)
        safefs.remove_tree(files.out)
        return published

    def _run(self, job: StepJob, parts: dict, fresh: bool) -> None:
        """executor.run(job) (a fan-out step: its batches), stopped when the step's timeout
        expires."""
        timer = None
        if job.step.timeout:
            def expire() -> None:
                job.timed_out.set()
                if job.stop is not None:
                    job.stop()
            timer = threading.Timer(job.step.timeout, expire)
            timer.daemon = True
            timer.start()
        with self._lock:
            self._jobs[job.step.name] = job
        try:
            if job.step.foreach is None:
                self.executor.run(job)
            else:
                record = self._foreach(job, parts, fresh)
                with self._lock:
                    self._fanouts[job.step.name] = record
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                self._jobs.pop(job.step.name, None)

    def _foreach(self, job: StepJob, parts: dict, fresh: bool) -> dict:
        from .foreach import run_foreach

        try:
            return run_foreach(job, self.executor, self.home, parts, self.spec.setup,
                               reuse=not fresh)
        except MlpipeError:
            raise
        except Exception as exc:  # a foreign error: one line, as executor.run() gives
            raise self.executor.translate(job, exc) from exc


def _with_reused(reason: str, fanout: dict | None) -> str:
    """A fan-out step's reason says how many of its mini-batches were reused."""
    if not fanout or not fanout["batches"]["cached"]:
        return reason
    batches = fanout["batches"]
    return f"{reason}; {batches['cached']} of {batches['total']} mini-batches reused"
