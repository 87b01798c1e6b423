"""A fan-out step's workers on the docker executor (run/foreach.py): each worker is one
container running the step's kernel, driven from the runner over kernel-bridge sockets
(kernelbridge.py), in the same sandbox as a step's container (containers.py, sandbox.py): its
user, limits, labels, and mounts, with the worker's directory as its working directory.

A worker writes its batch results in a directory of its own under Home.batches' `.tmp`,
handed to the container's user and mounted at BATCHES; each result is settled (sandbox.settle)
before the runner renames it into place. Where the runner cannot reach a container's sockets
(papermill=container) there are no workers: one line says so.

A worker's container is removed when the worker is closed, killed (a hang, a cancel, the step's
timeout) or replaced; the run's end and cancel_run sweep what is left by label.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import threading
from pathlib import Path

from ..errors import ExecutorError
from . import kernelbridge, sandbox
from .base import StepJob
from .containers import container_kwargs
from .daemon import ContainerWatch, remove_quietly
from .docker import KERNEL_START_TIMEOUT, DockerExecutor
from .workers import KernelWorker

BATCHES = "/mlpipe/batches"  # the worker's directory for batch results (rw)
WORKER_LABEL = "mlpipe.worker"


def open_worker(executor: DockerExecutor, job: StepJob, workdir: Path,
                scratch: Path) -> KernelWorker:
    """A started worker container for fan-out step `job.step`, its kernel connected."""
    if executor.papermill_in != "host":
        raise ExecutorError(f"step `{job.step.name}`: the docker executor cannot run --foreach "
                            "steps where the runner cannot reach a container's kernel sockets "
                            "(papermill=container)", step=job.step.name, option="--foreach")
    image = executor.environment(job.step)
    token = secrets.token_hex(4)
    box = scratch / f"w-{token}"
    box.mkdir()
    seen = dataclasses.replace(job, workdir=workdir)  # the step as this worker sees it
    made = sandbox.make_mount_points(seen)
    sandbox.hand_over([workdir, box, *(p for p in made if p.is_dir())], executor.run_as)
    dirs = sandbox.open_dirs([workdir])
    files = kernelbridge.kernel_files(executor.run_as)
    owner = executor.user if executor.run_as != executor.user else None
    state = {"container": None, "done": False}
    lock = threading.Lock()

    def release() -> None:
        """Remove the container, then give back what it wrote: once, from any thread."""
        with lock:
            if state["done"]:
                return
            state["done"] = True
        if state["container"] is not None:
            remove_quietly(state["container"], None, files)
        else:
            files.remove()
        sandbox.settle(dirs, owner)
        shutil.rmtree(box, ignore_errors=True)  # results were renamed out of it

    try:
        kwargs = container_kwargs(seen, image=image, user=executor.run_as,
                                  network=executor.network, owner=executor._owner,
                                  kernel=(files.mount_dir, files.container_file),
                                  limits=executor.limits())
        kwargs["name"] = f"{kwargs['name']}-w{workdir.name}-{token}"
        kwargs["labels"][WORKER_LABEL] = workdir.name
        kwargs["mounts"].append({"Type": "bind", "Source": str(box), "Target": BATCHES,
                                 "ReadOnly": False})
        container = executor._docker(lambda: executor.client.containers.create(**kwargs))
        state["container"] = container
        executor._docker(container.start)
        watch = ContainerWatch(container, job.kernel_log)
        kernelbridge.wait_ready(files, watch.running, KERNEL_START_TIMEOUT)
        return KernelWorker(
            files.info(str(files.host_dir / kernelbridge.PREFIX)), job.log,
            alive=watch.running, kill=release, release=release, scratch=box,
            seen=lambda path: f"{BATCHES}/{path.relative_to(box).as_posix()}",
            settle=lambda path: sandbox.settle(sandbox.open_dirs([path]), owner)).start()
    except BaseException:
        release()
        raise

