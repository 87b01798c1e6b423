"""Schedule a pipeline's DAG: a ready queue, parallel branches, reuse, retries, timeouts,
cancellation. Everything it does is told to its listeners (store, CLI, widget, server)."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__, safefs
from ..errors import Cancelled, MlpipeError, SpecError, StepFailed
from ..executors import StepJob, executors
from ..home import Home
from ..model.cache import cache_key, key_parts, miss_reasons, short_reason
from ..model.checks import check_params
from ..model.dag import build_dag, select, topo_order
from ..model.spec import PipelineSpec, StepSpec, is_variable
from .artifacts import ArtifactStore
from .events import (
    CACHED,
    CANCELLED,
    FAILED,
    FINAL,
    OK,
    QUEUED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    Broadcaster,
    RunListener,
)
from .stepbook import write_step_notebook
from .store import RunStore
from .storecheck import Heartbeat, StoreDamaged, StoreUnwritable, os_error_line


@dataclass
class RunOptions:
    params: dict[str, Any] = field(default_factory=dict)
    executor: str | None = None
    only: tuple[str, ...] = ()
    from_step: str | None = None
    no_cache: bool = False
    max_parallel: int | None = None
    fail_fast: bool = False
    executor_options: dict[str, Any] = field(default_factory=dict)
    # who started the run (cli|kernel|rest|schedule) and what it is filed under; the service
    # also gives the run id it already handed out at submit time, and the published version
    run_id: str | None = None
    experiment: str | None = None
    source: str | None = None
    pipeline: str | None = None
    pipeline_version: int | None = None


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def resolve_params(spec: PipelineSpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """The run's parameter values; an unknown name or a value of the wrong type is a one-line
    UsageError raised here, before any executor is chosen or started (rules: checks.py)."""
    return check_params(spec.param_defaults, overrides)


class PipelineRunner:
    """One run of one pipeline. Construct (validates everything), then `run()`."""

    latest: Path | None = None  # once the run succeeded: its file outputs' stable directory

    def __init__(self, spec: PipelineSpec, *, notebook: str, base_dir: str | Path,
                 options: RunOptions | None = None, home: Home | None = None,
                 listeners: list[RunListener] = ()) -> None:
        self.spec = spec
        self.notebook = notebook
        self.base_dir = Path(base_dir).resolve()
        self.options = options or RunOptions()
        self.home = (home or Home.for_dir(self.base_dir)).ensure()
        self.graph = build_dag(spec, file_exists=lambda p: (self.base_dir / p).exists())
        self.params = resolve_params(spec, self.options.params)
        self.selected = select(self.graph, self.options.only, self.options.from_step)
        # notes: one line each for the user (why the steps run locally, say)
        self.executor_name, self.executor, self.notes = executors.choose(
            self.options.executor, self.options.executor_options, spec=spec,
            base_dir=self.base_dir)
        self.max_parallel = max(1, self.options.max_parallel or os.cpu_count() or 1)
        self.executor.max_parallel = self.max_parallel  # bounds work an executor does ahead
        self.run_id = self.options.run_id or new_run_id()
        self.store = RunStore(self.home.db)
        from .reaper import reap  # runs, containers and scratch of runners that died

        reap(self.store)
        self.recorded = False  # the store took the run's start (else nothing ran: exit 2)
        self._heartbeat: Heartbeat | None = None
        self.artifacts = ArtifactStore(self.home.artifacts, run_id=self.run_id)
        self.events = Broadcaster([self.store, *listeners])
        order = topo_order(self.graph)
        needed = set(self.selected)
        for name in self.selected:
            needed |= self._ancestors(name)
        self.order = [n for n in order if n in needed]
        self.states: dict[str, str] = {n: QUEUED for n in self.order}
        self.outputs: dict[str, dict[str, str]] = {}
        self.sources: dict[str, str] = {}
        self._jobs: dict[str, StepJob] = {}
        self._damaged: dict[str, list[str]] = {}  # step -> why its earlier result is unusable
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self.state: str = QUEUED
        self.reason: str | None = None

    def _ancestors(self, name: str) -> set[str]:
        import networkx as nx

        return nx.ancestors(self.graph, name)

    # -- public ------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop the run: running steps are stopped (kernels, containers), queued ones dropped."""
        self._cancel.set()
        self._stop_running_steps()
        self.executor.cancel_run(run_id=self.run_id)

    def _stop_running_steps(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel.set()
            if job.stop is not None:
                job.stop()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def add_listener(self, listener: RunListener) -> None:
        self.events.add(listener)

    def run(self) -> str:
        """Run to the end; return the run's final state. History must be written: when the run
        store fails (StoreUnwritable, StoreDamaged) the run stops, its steps are stopped, and
        that error is raised once the run is wound up. A disk full (any OSError) fails it."""
        started = time.time()
        self.state = RUNNING
        try:
            self.events.on_run_started(
                run_id=self.run_id, notebook=self.notebook, params=self.params,
                steps=self.order, executor=self.executor_name, started=started,
                defaults=self.spec.param_defaults, experiment=self.options.experiment,
                source=self.options.source, pipeline=self.options.pipeline,
                pipeline_version=self.options.pipeline_version)
        except MlpipeError:
            self.state = FAILED
            self.store.close()
            raise
        self.recorded = True
        self._heartbeat = Heartbeat(lambda: self.store.beat(self.run_id))
        reason = None
        fatal = False
        try:
            self.executor.start_run(spec=self.spec, base_dir=self.base_dir, run_id=self.run_id,
                                    log=lambda line: self._run_log(line))
            self._publish_sources()
            self._schedule()
        except (MlpipeError, OSError) as err:
            reason = str(err) if isinstance(err, MlpipeError) else os_error_line(err)
            fatal = self.events.failure is not None or isinstance(
                err, (OSError, StoreUnwritable, StoreDamaged))
            if fatal:
                self.cancel()
            for name, state in self.states.items():
                if state not in FINAL:
                    after = (FAILED if fatal and state == RUNNING else
                             CANCELLED if self.cancelled else SKIPPED)
                    with contextlib.suppress(MlpipeError):  # the store failed: raised below
                        self._set(name, after, reason=reason)
        except BaseException as err:  # KeyboardInterrupt included: record, then re-raise
            self.cancel()
            for name, state in self.states.items():
                if state not in FINAL:
                    self._set(name, CANCELLED, reason="run interrupted")
            self._finish(CANCELLED, f"interrupted ({type(err).__name__})")
            raise
        finally:
            self.executor.end_run(run_id=self.run_id)
        if fatal:
            final = FAILED
        elif self.cancelled:
            final = CANCELLED
        elif all(s in OK for s in self.states.values()):
            final = SUCCEEDED
        else:
            final = FAILED
            failed = [n for n, s in self.states.items() if s == FAILED]
            reason = reason or (f"step{'s' if len(failed) > 1 else ''} "
                                f"{', '.join(f'`{n}`' for n in failed)} failed" if failed else None)
        self._finish(final, reason)
        if self.events.failure is not None:
            raise self.events.failure
        return final

    def _finish(self, state: str, reason: str | None) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
        self.state, self.reason = state, reason
        self.artifacts.clean_staging()
        if state == SUCCEEDED:  # <home>/latest/<notebook stem>/: its files, swapped in whole
            from .latest import publish_run

            self.latest = publish_run(self.home, self.notebook, self.run_id, self.artifacts,
                                      self.outputs, log=self._run_log)
        with contextlib.suppress(MlpipeError):  # the store's: events.failure, raised by run()
            self.events.on_run_finished(run_id=self.run_id, state=state, at=time.time(),
                                        reason=reason)
        if self.events.failure is not None:  # recorded failed if the store takes it now
            self.state, self.reason = FAILED, str(self.events.failure)
            with contextlib.suppress(MlpipeError):  # else the next opener does (pid, heartbeat)
                self.store.mark_failed(self.run_id, self.reason, wait=2)
        self.store.close()
        from ..kernels.scratch import sweep

        sweep()  # this run's kernels removed theirs; those of runners that died go too

    # -- scheduling --------------------------------------------------------------------------
    def _run_log(self, line: str) -> None:
        self.events.on_step_log(run_id=self.run_id, step="", line=line)

    def _set(self, name: str, state: str, **fields: Any) -> None:
        self.states[name] = state
        self.events.on_step_state(run_id=self.run_id, step=name, state=state, at=time.time(),
                                  **fields)

    def _publish_sources(self) -> None:
        for name in self.order:
            for item in self.graph.nodes[name]["sources"]:
                if item not in self.sources:
                    self.sources[item] = self.artifacts.publish_file(self.base_dir / item, item)

    def _input_digests(self, step: StepSpec) -> dict[str, str]:
        digests = {}
        for item in step.inputs:
            if item in self.sources:
                digests[item] = self.sources[item]
                continue
            for pred in self.graph.predecessors(step.name):
                if item in self.outputs.get(pred, {}):
                    digests[item] = self.outputs[pred][item]
        return digests

    def _try_reuse(self, step: StepSpec, parts: dict, key: str) -> bool:
        if step.no_cache or (self.options.no_cache and step.name in self.selected):
            return False
        row = self.store.find_reusable(step.name, key)
        if row is None:
            return False
        import json

        outputs = json.loads(row["outputs"] or "{}")
        damaged = [item for item, d in outputs.items() if self.artifacts.verify(d) is not None]
        if damaged:  # never reused silently: the step runs again and rewrites them
            self._damaged[step.name] = [f"artifact of `{item}` damaged" for item in damaged]
            return False
        origin = row["reused_from"] or row["run_id"]
        self.outputs[step.name] = outputs
        self._set(step.name, CACHED, reason=f"reused from run {origin}", cache_key=key,
                  key_parts=parts, reused_from=origin, outputs=outputs,
                  reasons=[f"reused from run {origin}"])
        return True

    def _schedule(self) -> None:
        pending = list(self.order)
        running: dict[Future, str] = {}
        pool = ThreadPoolExecutor(self.max_parallel, thread_name_prefix="mlpipe-step")
        try:
            while pending or running:
                progressed = True
                while progressed and not self.cancelled:
                    progressed = False
                    for name in list(pending):
                        preds = list(self.graph.predecessors(name))
                        if any(self.states.get(p, SUCCEEDED) not in FINAL for p in preds):
                            continue
                        bad = [p for p in preds if self.states.get(p, SUCCEEDED) not in OK]
                        if bad:
                            pending.remove(name)
                            self._set(name, SKIPPED,
                                      reason=f"upstream `{bad[0]}` {self.states[bad[0]]}")
                            progressed = True
                            continue
                        if len(running) >= self.max_parallel:
                            break
                        pending.remove(name)
                        progressed = True
                        step = self.graph.nodes[name]["spec"]
                        parts = key_parts(self.spec, step, self.params, self._input_digests(step),
                                          self.executor.environment(step), __version__)
                        key = cache_key(parts)
                        if name not in self.selected:
                            if not self._try_reuse(step, parts, key):
                                raise SpecError(
                                    f"step `{name}` is not selected and has no earlier "
                                    "successful run with the same code, parameters and inputs; "
                                    f"run it first (or add it to --only)", step=name)
                            continue
                        if self._try_reuse(step, parts, key):
                            continue
                        reasons = (["--no-cache"] if step.no_cache or self.options.no_cache
                                   else self._damaged.pop(name, None) or miss_reasons(
                                       self.store.last_key_parts(self.notebook, name), parts))
                        future = pool.submit(self._execute, step, key, parts, reasons)
                        running[future] = name
                if self.cancelled:
                    for name in pending:
                        self._set(name, CANCELLED, reason="run cancelled")
                    pending.clear()
                if not running:
                    if pending:  # nothing can start: only possible if the graph changed under us
                        raise SpecError("no step can start: " + ", ".join(pending))
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    future.result()  # _execute records its own outcome; this re-raises bugs
                    if self.states[name] == FAILED and self.options.fail_fast:
                        self._stop_for_fail_fast(name, pending)
        except BaseException:
            self.cancel()  # stop kernels and containers first, or shutdown() waits for them
            raise
        finally:
            pool.shutdown(wait=True)

    def _stop_for_fail_fast(self, failed: str, pending: list[str]) -> None:
        for name in pending:
            self._set(name, SKIPPED, reason=f"--fail-fast: `{failed}` failed")
        pending.clear()
        self._stop_running_steps()

    # -- one step ----------------------------------------------------------------------------
    def _execute(self, step: StepSpec, key: str, parts: dict, reasons: list[str]) -> None:
        reason = short_reason(reasons)  # what live displays show; the store keeps them all
        step_dir = self.home.step_dir(self.run_id, step.name)
        step_dir.mkdir(parents=True, exist_ok=True)
        notebook = step_dir / "step.ipynb"
        write_step_notebook(notebook, self.spec, step, pipeline=Path(self.notebook).stem)
        attempts = step.retries + 1
        with open(step_dir / "log.txt", "a", encoding="utf-8") as log_file:
            def log(line: str) -> None:
                log_file.write(line + "\n")
                log_file.flush()
                self.events.on_step_log(run_id=self.run_id, step=step.name, line=line)

            for attempt in range(1, attempts + 1):
                if self.cancelled:
                    self._set(step.name, CANCELLED, reason="run cancelled", attempt=attempt)
                    return
                self._set(step.name, RUNNING, reason=reason, attempt=attempt, cache_key=key,
                          key_parts=parts, reasons=reasons)
                if attempts > 1:
                    log(f"--- attempt {attempt} of {attempts} ---")
                try:
                    outputs = self._attempt(step, step_dir, attempt, log)
                except Cancelled as err:
                    if self.cancelled:
                        self._set(step.name, CANCELLED, reason="run cancelled", attempt=attempt)
                    else:  # stopped by --fail-fast
                        self._set(step.name, CANCELLED, reason="stopped by --fail-fast",
                                  attempt=attempt, error=err.to_dict())
                    return
                except MlpipeError as err:
                    log(f"attempt {attempt} failed: {err}")
                    if attempt < attempts and not self.cancelled:
                        delay = min(2 ** (attempt - 1), 30)
                        log(f"retrying in {delay} s")
                        self._cancel.wait(delay)
                        continue
                    self._set(step.name, FAILED, reason=str(err), error=err.to_dict(),
                              attempt=attempt)
                    return
                self.outputs[step.name] = outputs
                self._set(step.name, SUCCEEDED, reason=reason, attempt=attempt, cache_key=key,
                          key_parts=parts, outputs=outputs)
                return

    def _attempt(self, step: StepSpec, step_dir: Path, attempt: int, log) -> dict[str, str]:
        workdir = step_dir / "work"
        outputs_dir = step_dir / "out"
        for path in (workdir, outputs_dir):
            safefs.remove_tree(path)
        inputs, files = {}, {}
        for item, digest in self._input_digests(step).items():
            if (damage := self.artifacts.verify(digest)) is not None:
                raise StepFailed(f"step `{step.name}`: input `{item}` is damaged in the artifact "
                                 f"store ({damage}: {self.artifacts.path(digest)}); run again to "
                                 "rewrite it", step=step.name, cause="artifact-damaged")
            if is_variable(item):
                inputs[item] = self.artifacts.path(digest)
            else:
                files[item] = self.artifacts.data_path(digest)
        job = StepJob(
            run_id=self.run_id, step=step, attempt=attempt, notebook=step_dir / "step.ipynb",
            output=step_dir / "output.ipynb", workdir=workdir, outputs_dir=outputs_dir,
            inputs=inputs, files=files, parameters=dict(self.params), log=log,
            progress=lambda done, total: self.events.on_step_progress(
                run_id=self.run_id, step=step.name, done=done, total=total),
            env={**dict(step.env), "MLPIPE_RUN_ID": self.run_id, "MLPIPE_STEP": step.name,
                 "MLPIPE_ATTEMPT": str(attempt)},
        )
        timer = None
        if step.timeout:
            def expire() -> None:
                job.timed_out.set()
                if job.stop is not None:
                    job.stop()
            timer = threading.Timer(step.timeout, expire)
            timer.daemon = True
            timer.start()
        with self._lock:
            self._jobs[step.name] = job
        try:
            self.executor.run(job)
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                self._jobs.pop(step.name, None)
        published = self.artifacts.publish_step_outputs(step.name, step.outputs, workdir,
                                                        outputs_dir)
        safefs.remove_tree(outputs_dir)
        return published
