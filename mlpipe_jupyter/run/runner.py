"""Run a pipeline's DAG: a ready queue, parallel branches, reuse, retries, timeouts,
cancellation. Everything it does is told to its listeners (store, CLI, widget, server).

Constructing a PipelineRunner plans the run (plan.py: validation, parameters, selection) and
chooses its executor, writing nothing; `run()` opens the run store, recovers what runners that
died left (reaper.py), records the run and runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import MlpipeError, SpecError
from ..executors import executors
from ..home import Home
from ..model.cache import cache_key, key_parts, miss_reasons
from ..model.spec import PipelineSpec, StepSpec
from ..model.states import StepState
from .artifacts import ArtifactStore
from .events import Broadcaster, RunListener
from .plan import RunOptions, new_run_id, plan_run, refusal
from .steprun import StepRunner
from .store import RunStore, failed_batches, reused_fanout
from .storecheck import Heartbeat, StoreDamaged, StoreUnwritable, os_error_line


class PipelineRunner:
    """One run of one pipeline. Construct (plans, refuses what cannot run), then `run()`."""

    latest: Path | None = None  # once the run succeeded: its file outputs' stable directory
    store: RunStore | None = None  # opened by run()

    def __init__(self, spec: PipelineSpec, *, notebook: str, base_dir: str | Path,
                 options: RunOptions | None = None, home: Home | None = None,
                 listeners: list[RunListener] = ()) -> None:
        plan = plan_run(spec, notebook=notebook, base_dir=base_dir, options=options, home=home)
        self.spec, self.notebook, self.base_dir = plan.spec, plan.notebook, plan.base_dir
        self.options, self.home, self.graph = plan.options, plan.home, plan.graph
        self.params, self.selected, self.order = plan.params, plan.selected, plan.order
        # notes: one line each for the user (why the steps run locally, say)
        self.executor_name, self.executor, self.notes = executors.choose(
            self.options.executor, self.options.executor_options, spec=spec,
            base_dir=self.base_dir)
        self.max_parallel = max(1, self.options.max_parallel or os.cpu_count() or 1)
        self.executor.max_parallel = self.max_parallel  # bounds work an executor does ahead
        self.run_id = self.options.run_id or new_run_id()
        self.artifacts = ArtifactStore(self.home.artifacts, run_id=self.run_id,
                                       staging=self.home.staging(self.run_id))
        self.events = Broadcaster(list(listeners))
        self.recorded = False  # the store took the run's start (else nothing ran)
        self._heartbeat: Heartbeat | None = None
        # written under _lock: the pool's threads set the states of the steps they run
        self.states: dict[str, StepState] = dict.fromkeys(self.order, StepState.QUEUED)
        self.outputs: dict[str, dict[str, str]] = {}
        self.sources: dict[str, str] = {}
        self._unusable: dict[str, list[str]] = {}  # step -> why its earlier result is unusable
        self.refused: str | None = None  # why a step the run needs could not be reused
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self.state: StepState = StepState.QUEUED
        self.reason: str | None = None
        self._steps = StepRunner(
            run_id=self.run_id, spec=self.spec, notebook=self.notebook, params=self.params,
            home=self.home, executor=self.executor, artifacts=self.artifacts,
            events=self.events, set_state=self._set, cancelled=self._cancel)

    # -- public ------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop the run: running steps are stopped (kernels, containers), queued ones dropped."""
        self._cancel.set()
        self._steps.stop_all()
        self.executor.cancel_run(run_id=self.run_id)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def add_listener(self, listener: RunListener) -> None:
        self.events.add(listener)

    def run(self) -> str:
        """Run to the end; return the run's final state. History must be written: when the run
        store fails (StoreUnwritable, StoreDamaged) the run stops, its steps are stopped, and
        that error is raised once the run is wound up. A disk full (any OSError) fails it."""
        try:
            self._open_history()
            self.state = StepState.RUNNING
            self.events.on_run_started(
                run_id=self.run_id, notebook=self.notebook, params=self.params,
                steps=self.order, executor=self.executor_name, started=time.time(),
                defaults=self.spec.param_defaults, experiment=self.options.experiment,
                source=self.options.source, pipeline=self.options.pipeline,
                pipeline_version=self.options.pipeline_version)
        except MlpipeError as err:  # the store cannot be opened or written: nothing recorded
            self.state, self.reason = StepState.FAILED, str(err)
            if self.store is not None:
                self.store.close()
            # a view shown before run() (the kernel's widget) says why, instead of waiting on
            self.events.on_run_finished(run_id=self.run_id, state=self.state, at=time.time(),
                                        reason=self.reason)
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
            self._settle(lambda state: (
                StepState.FAILED if fatal and state == StepState.RUNNING else
                StepState.CANCELLED if self.cancelled else StepState.SKIPPED), reason)
        except BaseException as err:  # KeyboardInterrupt included: record, then re-raise
            self.cancel()
            self._settle(lambda state: StepState.CANCELLED, "run interrupted")
            self._finish(StepState.CANCELLED, f"interrupted ({type(err).__name__})")
            raise
        finally:
            self.executor.end_run(run_id=self.run_id)
        final, reason = self._outcome(fatal, reason)
        self._finish(final, reason)
        if self.events.failure is not None:
            raise self.events.failure
        return final

    def _open_history(self) -> None:
        """The run store, opened for writing, then the explicit recovery step: the runs of
        runners that died are failed, their containers and scratch removed. The store is an
        essential listener: the Broadcaster calls it before any view, so history is written
        before a view shows it, and its failure stops the run."""
        from .reaper import reap

        self.home.ensure()
        self.store = RunStore(self.home.db)
        reap(self.store)
        self.events.add(self.store)

    def _settle(self, after, reason: str | None) -> None:
        """Steps the run ends before their end get the state `after(state)`; once the store
        failed, what it refuses is raised by run() (events.failure)."""
        for name, state in list(self.states.items()):
            if not state.is_final:
                with contextlib.suppress(MlpipeError):
                    self._set(name, after(state), reason=reason)

    def _outcome(self, fatal: bool, reason: str | None) -> tuple[StepState, str | None]:
        if fatal:
            return StepState.FAILED, reason
        if self.cancelled:
            return StepState.CANCELLED, reason
        if all(state.is_ok for state in self.states.values()):
            return StepState.SUCCEEDED, reason
        failed = [n for n, s in self.states.items() if s == StepState.FAILED]
        return StepState.FAILED, reason or self.refused or (
            f"step{'s' if len(failed) > 1 else ''} {', '.join(f'`{n}`' for n in failed)} "
            "failed" if failed else None)

    def _finish(self, state: StepState, reason: str | None) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
        self.state, self.reason = state, reason
        self.artifacts.clean_staging()
        if state == StepState.SUCCEEDED:  # <home>/latest/<notebook stem>/: its files, swapped in
            from .latest import publish_run

            self.latest = publish_run(self.home, self.notebook, self.run_id, self.artifacts,
                                      self.outputs, log=self._run_log)
        with contextlib.suppress(MlpipeError):  # the store's: events.failure, raised by run()
            self.events.on_run_finished(run_id=self.run_id, state=state, at=time.time(),
                                        reason=reason)
        if self.events.failure is not None:  # recorded failed if the store takes it now
            self.state, self.reason = StepState.FAILED, str(self.events.failure)
            with contextlib.suppress(MlpipeError):  # else the next opener does (pid, heartbeat)
                self.store.mark_failed(self.run_id, self.reason, wait=2)
        self.store.close()
        from ..kernels.scratch import sweep

        sweep()  # this run's kernels removed theirs; those of runners that died go too

    # -- scheduling --------------------------------------------------------------------------
    def _run_log(self, line: str) -> None:
        self.events.on_step_log(run_id=self.run_id, step="", line=line)

    def _set(self, name: str, state: StepState, **fields: Any) -> None:
        with self._lock:
            self.states[name] = state
            if "outputs" in fields:  # a result (run or reused) that steps after it read
                self.outputs[name] = fields["outputs"]
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

    def _schedule(self) -> None:
        """Steps start as their upstream ends, up to max_parallel at once, until none is left."""
        pending = list(self.order)
        running: dict[Future, str] = {}
        pool = ThreadPoolExecutor(self.max_parallel, thread_name_prefix="mlpipe-step")
        try:
            while pending or running:
                if self.cancelled:
                    for name in pending:
                        self._set(name, StepState.CANCELLED, reason="run cancelled")
                    pending.clear()
                for work in self._admit(pending, room=self.max_parallel - len(running)):
                    running[pool.submit(self._steps.execute, *work)] = work[0].name
                if not running:
                    if pending:  # nothing can start: only possible if the graph changed under us
                        raise SpecError("no step can start: " + ", ".join(pending))
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    future.result()  # execute() records its own outcome; this re-raises bugs
                    if self.states[name] == StepState.FAILED and self.options.fail_fast:
                        self._stop_for_fail_fast(name, pending)
        except BaseException:
            self.cancel()  # stop kernels and containers first, or shutdown() waits for them
            raise
        finally:
            pool.shutdown(wait=True)

    def _admit(self, pending: list[str], room: int) -> list[tuple]:
        """One pass over the waiting steps, in order: a step whose upstream failed is skipped,
        one that can be reused is, the others are returned to start while there is room. As
        the order is topological, what the pass decides for a step is seen by those after it."""
        start = []
        for name in list(pending):
            ready, upstream_bad = self._readiness(name)
            if not ready:
                continue
            if upstream_bad is not None:
                pending.remove(name)
                self._set(name, StepState.SKIPPED, reason=upstream_bad)
                continue
            if len(start) >= room:
                break
            pending.remove(name)
            if (work := self._reuse_or_work(name)) is not None:
                start.append(work)
        return start

    def _readiness(self, name: str) -> tuple[bool, str | None]:
        """(every upstream step has ended, why this one must be skipped: one that failed)."""
        upstream = [(p, self.states.get(p, StepState.SUCCEEDED))
                    for p in self.graph.predecessors(name)]
        if not all(state.is_final for _, state in upstream):
            return False, None
        bad = next(((p, state) for p, state in upstream if not state.is_ok), None)
        return True, None if bad is None else f"upstream `{bad[0]}` {bad[1]}"

    def _reuse_or_work(self, name: str) -> tuple | None:
        """Settle a ready step by its key: reused, refused (a step the run needs but does not
        run must be reused), or the arguments of StepRunner.execute, which runs it."""
        step = self.graph.nodes[name]["spec"]
        digests = self._input_digests(step)
        parts = key_parts(self.spec, step, self.params, digests,
                          self.executor.environment(step), __version__)
        key = cache_key(parts)
        if self._try_reuse(step, parts, key):
            return None
        if name not in self.selected:  # the run fails, saying why; other branches go on
            why = refusal(name, ran_before=True)
            self.refused = self.refused or why
            self._set(name, StepState.SKIPPED, reason=why)
            return None
        fresh = step.no_cache or self.options.no_cache
        reasons = (["--no-cache"] if fresh
                   else self._unusable.pop(name, None) or miss_reasons(
                       self.store.last_key_parts(self.notebook, name), parts))
        return step, key, parts, reasons, digests, fresh

    def _try_reuse(self, step: StepSpec, parts: dict, key: str) -> bool:
        if step.no_cache or (self.options.no_cache and step.name in self.selected):
            return False
        row = self.store.find_reusable(step.name, key)
        if row is None:
            return False
        outputs = json.loads(row["outputs"] or "{}")
        damaged = [item for item, d in outputs.items() if self.artifacts.verify(d) is not None]
        if damaged:  # never reused silently: the step runs again and rewrites them
            self._unusable[step.name] = [f"artifact of `{item}` damaged" for item in damaged]
            return False
        origin = row["reused_from"] or row["run_id"]
        if failed := failed_batches(row):  # its outputs lack items: it runs just those batches
            self._unusable[step.name] = [
                f"{failed} mini-batch{'es' if failed > 1 else ''} failed in run {origin}"]
            return False
        fanout = reused_fanout(row)
        self._set(step.name, StepState.CACHED, reason=f"reused from run {origin}", cache_key=key,
                  key_parts=parts, reused_from=origin, outputs=outputs,
                  reasons=[f"reused from run {origin}"], **({"fanout": fanout} if fanout else {}))
        return True

    def _stop_for_fail_fast(self, failed: str, pending: list[str]) -> None:
        for name in pending:
            self._set(name, StepState.SKIPPED, reason=f"--fail-fast: `{failed}` failed")
        pending.clear()
        self._steps.stop_all()
