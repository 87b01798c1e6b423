"""A fan-out step (`%%step --foreach ITEMS`): its items split into mini-batches, the batches
run on `--workers` kernels, their outputs gathered in item order.

Design: each worker is one fresh kernel (the executor's, Executor.open_worker) that runs a
prelude once (the parameters, the step's inputs, the setup code: Azure's `init()`), then three
execute requests per batch: bind the batch, the step's own code, save the batch's outputs. Not
a papermill notebook per batch: that costs a notebook's load, parameterisation and save per
batch (hundreds of ms), while a request costs a few ms, and the step's code still runs as its
own cell, so a traceback's line is the line of the step's code.

Each batch's result is a directory `batches/<key>/` (Home.batch), renamed into place once
complete; its key is the step's key without the split input, plus its items' digest
(cache.batch_key). A rerun, or one after the runner was killed, runs only the batches without
one. Failed batches are counted against --max-failures; the gathered outputs leave out their
items.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import safefs
from ..errors import Cancelled, MlpipeError, StepFailed
from ..executors import Executor, StepJob
from ..executors.workers import KernelWorker, Reply, WorkerLost, WorkerTimeout
from ..home import Home
from ..model.cache import batch_key
from ..model.spec import is_variable
from ..step import foreach as items_of
from ..step import runtime


@dataclass(frozen=True)
class Batch:
    index: int
    start: int
    stop: int
    key: str

    @property
    def items(self) -> str:
        """`items 200-299`: the batch's item range, as a person counts it (from 0)."""
        last = self.stop - 1
        return f"item {self.start}" if last == self.start else f"items {self.start}-{last}"


@dataclass
class FanOut:
    """One attempt of a fan-out step: the batches, their workers, what they made."""

    job: StepJob
    executor: Executor
    home: Home
    parts: dict[str, Any]
    workers: int
    setup: str  # the pipeline's setup code, run once by each worker
    reuse: bool = True  # False (--no-cache): every batch runs, its result replaces the old
    batches: list[Batch] = field(default_factory=list)
    cached: int = 0
    done: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    _todo: queue.Queue = field(default_factory=queue.Queue)
    _live: set[KernelWorker] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _fatal: list[MlpipeError] = field(default_factory=list)

    @property
    def step(self):
        return self.job.step

    def run(self) -> dict[str, Any]:
        """Run the batches without a result; gather; the step's record of them."""
        try:
            self.executor.prepare(self.job)
            self._run_workers()
        finally:
            self.executor.cleanup(self.job)  # what prepare() took (mount points, dir fds)
        stopped = self.executor.stop_reason(self.job)
        if stopped is not None:
            raise stopped
        if self._fatal:
            raise self._fatal[0]
        if len(self.failures) > self.step.max_failures:
            raise self._too_many()
        self._gather()
        return self.record()

    def _run_workers(self) -> None:
        self.batches = self._split()
        todo = [b for b in self.batches
                if not (self.reuse and self.home.batch(b.key).is_dir())]
        self.cached = self.done = len(self.batches) - len(todo)
        for batch in todo:
            self._todo.put(batch)
        self._progress()
        self.job.stop = self.stop
        threads = [threading.Thread(target=self._worker, args=(n,), daemon=True,
                                    name=f"mlpipe-foreach-{n}")
                   for n in range(min(self.workers, len(todo)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.job.stop = None

    def record(self) -> dict[str, Any]:
        failed = len(self.failures)
        return {"batches": {"total": len(self.batches), "succeeded": len(self.batches) - failed,
                            "failed": failed, "cached": self.cached},
                "failures": sorted(self.failures, key=lambda f: f["batch"])}

    def stop(self) -> None:
        """Kill every worker (cancel, the step's --timeout): from any thread."""
        with self._lock:
            live = list(self._live)
        for worker in live:
            worker.kill()

    # -- items -------------------------------------------------------------------------------
    def _split(self) -> list[Batch]:
        split = self.step.foreach
        try:
            if is_variable(split):
                items = runtime.load_input({"inputs": {k: str(v) for k, v in
                                                       self.job.inputs.items()}}, split)
                base = None
            else:
                base = self.job.files[split]
                items = items_of.directory_items(base, split)
            spans = items_of.batches(items_of.count(items), self.step.batch_size)
        except TypeError as err:
            raise StepFailed(f"step `{self.step.name}` --foreach `{split}`: {err}",
                             step=self.step.name, option="--foreach") from None
        return [Batch(n, start, stop, batch_key(self.parts, self.step, items_of.digest(
                    items_of.take(items, start, stop), base)))
                for n, (start, stop) in enumerate(spans)]

    # -- workers -----------------------------------------------------------------------------
    def _stopping(self) -> bool:
        return self.job.cancel.is_set() or self.job.timed_out.is_set() or bool(self._fatal)

    def _worker(self, number: int) -> None:
        worker = None
        try:
            while not self._stopping():
                try:
                    batch = self._todo.get_nowait()
                except queue.Empty:
                    return
                if worker is None:
                    worker = self._open(number)
                    if worker is None:
                        return
                if not self._run_batch(worker, batch):
                    self._close(worker, kill=True)  # replaced: it hung, or it died
                    worker = None
        except MlpipeError as err:
            self._fatal.append(err)
        except Exception as err:  # a kernel that cannot start, a client error
            self._fatal.append(StepFailed(f"step `{self.step.name}`: worker {number}: "
                                          f"{type(err).__name__}: {err}".splitlines()[0],
                                          step=self.step.name))
        finally:
            if worker is not None:
                self._close(worker, kill=self._stopping())

    def _open(self, number: int) -> KernelWorker | None:
        """A worker that ran the prelude and the setup code; None once the step is stopping."""
        workdir = self.home.step_files(self.job.run_id, self.step.name).worker(number)
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        worker = self.executor.open_worker(self.job, workdir, self.home.batches / ".tmp")
        with self._lock:
            self._live.add(worker)
        if self._stopping():
            self._close(worker, kill=True)
            return None
        variables = [i for i in self.step.inputs if is_variable(i)]
        prelude = (
            "import mlpipe_jupyter.step.runtime as _mlpipe_runtime\n"
            "import mlpipe_jupyter.step.foreach as _mlpipe_foreach\n"
            f"globals().update(_mlpipe_foreach.prelude({self.executor.io_for(self.job)!r}, "
            f"{self.job.parameters!r}, {variables!r}, {self.step.foreach!r}))")
        for code, where in ((prelude, "the inputs cell"), (self.setup, "the pipeline setup code")):
            reply = worker.run(code) if code else Reply(True)
            if not reply.ok:
                raise self._failed_in(where, reply)
        return worker

    def _run_batch(self, worker: KernelWorker, batch: Batch) -> bool:
        """Run one batch on `worker`; False when the worker must be replaced."""
        step, deadline = self.step, None
        if step.item_timeout is not None:
            deadline = time.monotonic() + step.item_timeout
        tmp = worker.scratch / f"{batch.key}-{secrets.token_hex(4)}"
        requests = (
            f"_mlpipe_foreach.bind(globals(), {step.foreach!r}, {batch.start}, {batch.stop}, "
            f"{list(step.outputs)!r})",
            step.code,
            f"_mlpipe_foreach.save(globals(), {worker.seen(tmp)!r}, "
            f"{list(step.variable_outputs)!r}, {list(step.file_outputs)!r})")
        try:
            for code in requests:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                reply = worker.run(code, left)
                if not reply.ok:
                    self._fail(batch, reply)
                    return True
            worker.settle(tmp)
            self._keep(tmp, batch)
        except safefs.Refused as err:  # a link or a device in what the batch left
            self._fail(batch, Reply(False, "Refused", str(err)))
        except WorkerTimeout:
            self._fail(batch, Reply(False, "TimeoutError", f"{batch.items} timed out after "
                                                            f"{step.item_timeout:g} s"))
            return False
        except WorkerLost:
            if not self._stopping():
                self._fail(batch, Reply(False, "DeadKernelError", "the worker's kernel died"))
            return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return True

    def _keep(self, tmp: Path, batch: Batch) -> None:
        """A finished batch's result, copied out of the worker's reach without following any
        link the step planted (a symlink is refused), then renamed into place: from now on
        it is reused."""
        target = self.home.batch(batch.key)
        staged = self.home.batches / f".kept-{secrets.token_hex(8)}"  # the runner's alone
        try:
            safefs.copy_out(tmp.parent, tmp.name, staged, label=f"mini-batch {batch.index}",
                            shown="", links=False)
            with contextlib.suppress(OSError):  # another run made the same batch: same result
                if not self.reuse and target.is_dir():  # --no-cache: the earlier result goes
                    old = staged.with_name(staged.name + "-old")
                    os.rename(target, old)
                    shutil.rmtree(old, ignore_errors=True)
                os.rename(staged, target)
        finally:
            safefs.remove_tree(staged)
        with self._lock:
            self.done += 1
        self._progress()

    def _fail(self, batch: Batch, reply: Reply) -> None:
        with self._lock:
            self.done += 1
            self.failures.append({"batch": batch.index, "items": [batch.start, batch.stop - 1],
                                  "ename": reply.ename, "evalue": reply.evalue,
                                  "line": reply.line, "traceback": reply.traceback})
        self.job.log(f"mini-batch {batch.index} ({batch.items}) failed: {reply.ename}: "
                     f"{_first(reply.evalue)}")
        self._progress()

    def _close(self, worker: KernelWorker, *, kill: bool) -> None:
        with self._lock:
            self._live.discard(worker)
        worker.close(kill=kill)

    def _progress(self) -> None:
        self.job.progress(self.done, len(self.batches), len(self.failures))

    # -- errors ------------------------------------------------------------------------------
    def _failed_in(self, where: str, reply: Reply) -> StepFailed:
        at = f", line {reply.line}" if reply.line else ""
        return StepFailed(f"step `{self.step.name}` failed in {where}{at}: {reply.ename}: "
                          f"{_first(reply.evalue)}", step=self.step.name, cell=where,
                          ename=reply.ename, evalue=reply.evalue, traceback=reply.traceback)

    def _too_many(self) -> StepFailed:
        first = min(self.failures, key=lambda f: f["batch"])
        batch = self.batches[first["batch"]]
        at = f", line {first['line']}" if first["line"] else ""
        err = StepFailed(
            f"step `{self.step.name}`: {len(self.failures)} of {len(self.batches)} mini-batches "
            f"failed (--max-failures {self.step.max_failures}); first: {batch.items}: "
            f"{first['ename']}: {_first(first['evalue'])}{at}", step=self.step.name,
            cell="the step code", ename=first["ename"], evalue=first["evalue"],
            traceback=first["traceback"])
        err.fanout = self.record()
        return err

    # -- gathering ---------------------------------------------------------------------------
    def _gather(self) -> None:
        failed = {f["batch"] for f in self.failures}
        kept = [self.home.batch(b.key) for b in self.batches if b.index not in failed]
        values = {name: items_of.gather([items_of.load_output(d, name) for d in kept])
                  for name in self.step.variable_outputs}
        runtime.save_outputs({"outputs_dir": str(self.job.outputs_dir)}, values,
                             list(values), [])
        owners: dict[str, int] = {}
        for batch in (b for b in self.batches if b.index not in failed):
            for name in self.step.file_outputs:
                self._merge(batch, name.rstrip("/"), owners)

    def _merge(self, batch: Batch, name: str, owners: dict[str, int]) -> None:
        """Batch `batch`'s file output `name` into the step's work dir; a file two batches
        wrote is a StepFailed naming both."""
        source = self.home.batch(batch.key) / "files" / name
        paths = [source] if source.is_file() else sorted(p for p in source.rglob("*")
                                                         if p.is_file())
        for path in paths:
            rel = f"{name}/{path.relative_to(source).as_posix()}" if path != source else name
            if rel in owners:
                other = self.batches[owners[rel]]
                raise StepFailed(f"step `{self.step.name}`: `{rel}` was written by mini-batch "
                                 f"{other.index} ({other.items}) and mini-batch {batch.index} "
                                 f"({batch.items})", step=self.step.name, file=rel)
            owners[rel] = batch.index
            target = self.job.workdir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def _first(text: str) -> str:
    return text.splitlines()[0] if text else ""


def run_foreach(job: StepJob, executor: Executor, home: Home, parts: dict[str, Any],
                setup: str, *, reuse: bool = True) -> dict[str, Any]:
    """Run fan-out step `job.step` (see FanOut); its record: batches and failures. `reuse`
    False (--no-cache): no earlier batch result is used."""
    if job.cancel.is_set():
        raise Cancelled(f"step `{job.step.name}` was cancelled", step=job.step.name)
    home.batches.joinpath(".tmp").mkdir(parents=True, exist_ok=True)
    workers = job.step.workers or executor.max_parallel
    return FanOut(job, executor, home, parts, workers, setup, reuse).run()
