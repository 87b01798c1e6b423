"""Timeline of one `mlpipe run`, for finding where a run's time goes (bench/w2.py --trace).

    python bench/trace.py OUT.json mlpipe-args...

Runs the mlpipe CLI in this process with timestamps recorded around what a step does: kernel
start requested, kernel process spawned, kernel answering, each cell, papermill's saves, kernel
shutdown, and (docker) container create/start/wait/remove. Instrumentation wraps functions from
the outside (nothing in the package knows about it), so it measures the code as it is; the
wrappers cost microseconds. At exit it writes the events and this process's CPU (self and
reaped children) to OUT.json.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import json
import resource
import sys
import threading
import time

EVENTS: list[tuple[float, str, str, str]] = []  # (time, step/thread, what, detail)
_local = threading.local()
_T0 = time.time()


def mark(what: str, detail: str = "") -> None:
    who = getattr(_local, "step", None) or threading.current_thread().name
    EVENTS.append((time.time() - _T0, who, what, detail))


def wrap(owner, name: str, label: str, detail=None) -> None:
    fn = getattr(owner, name)
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def awrapper(*args, **kwargs):
            d = detail(*args, **kwargs) if detail else ""
            mark(label + ":begin", d)
            try:
                return await fn(*args, **kwargs)
            finally:
                mark(label + ":end", d)
        setattr(owner, name, awrapper)
    else:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            d = detail(*args, **kwargs) if detail else ""
            mark(label + ":begin", d)
            try:
                return fn(*args, **kwargs)
            finally:
                mark(label + ":end", d)
        setattr(owner, name, wrapper)


def install() -> None:
    from mlpipe_jupyter.executors import base
    from mlpipe_jupyter.kernels import pool as kernelpool
    from mlpipe_jupyter.step import engine as stepengine

    run = base.Executor.run

    def traced_run(self, job):
        _local.step = job.step.name
        mark("step:begin")
        cpu = time.thread_time()
        try:
            return run(self, job)
        finally:
            mark("step:end", f"thread cpu {time.thread_time() - cpu:.3f}")
            _local.step = None

    base.Executor.run = traced_run
    kid = {}

    def kname(kernel):
        return f"k{kid.setdefault(id(kernel), len(kid))}"

    wrap(kernelpool.KernelPool, "_stop", "kernel-stop", lambda self, k, **kw: kname(k))
    wrap(kernelpool.KernelPool, "shutdown", "pool-shutdown")
    from mlpipe_jupyter.run import runner

    wrap(runner.PipelineRunner, "_finish", "run-finish")
    wrap(kernelpool.KernelPool, "request", "pool-request")
    wrap(stepengine, "_connect_client", "connect")

    start = kernelpool.KernelPool._start

    async def traced_start(self, *, cwd, env, warm):
        mark("kernel-start:begin", "warm" if warm else "cold")
        kernel = await start(self, cwd=cwd, env=env, warm=warm)
        mark("kernel-start:end", f"{'warm' if warm else 'cold'} {kname(kernel)}")
        return kernel

    kernelpool.KernelPool._start = traced_start

    from mlpipe_jupyter.executors import docker as docker_executor

    start_run = docker_executor.DockerExecutor.start_run

    def traced_start_run(self, **kwargs):
        from docker.models.containers import Container, ContainerCollection

        if not hasattr(ContainerCollection.create, "__wrapped__"):
            wrap(ContainerCollection, "create", "container-create")
            wrap(Container, "start", "container-start")
            wrap(Container, "wait", "container-wait")
            wrap(Container, "remove", "container-remove")
        mark("start-run:begin")
        try:
            return start_run(self, **kwargs)
        finally:
            mark("start-run:end")

    docker_executor.DockerExecutor.start_run = traced_start_run


def dump(path: str) -> None:
    self_ = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"events": EVENTS, "cpu_self": self_.ru_utime + self_.ru_stime,
                   "cpu_children": kids.ru_utime + kids.ru_stime,
                   "wall": time.time() - _T0}, fh)


if __name__ == "__main__":
    out = sys.argv[1]
    sys.argv = ["mlpipe", *sys.argv[2:]]
    # papermill and nbclient are imported lazily by the package; import their classes only
    # after the package's own guarded import (stepengine.import_papermill) has run
    from mlpipe_jupyter.step import engine as stepengine

    install()
    guarded = stepengine.import_papermill

    once = threading.Lock()

    @functools.wraps(guarded)
    def import_then_instrument():
        mark("import-papermill:begin")
        mod = guarded()
        mark("import-papermill:end")
        with once:
            from nbclient.client import NotebookClient
            from papermill.engines import NotebookExecutionManager

            if not hasattr(NotebookClient.execute_cell, "__wrapped__"):
                wrap(NotebookClient, "execute_cell", "cell",
                     lambda self, cell, cell_index, *a, **k: str(cell_index))
            if not hasattr(NotebookExecutionManager.save, "__wrapped__"):
                wrap(NotebookExecutionManager, "save", "pm-save")
        return mod

    stepengine.import_papermill = import_then_instrument
    from mlpipe_jupyter.executors import local

    local.import_papermill = import_then_instrument
    atexit.register(dump, out)
    from mlpipe_jupyter.ui.cli import main

    main()
