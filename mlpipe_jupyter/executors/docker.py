"""The `docker` executor: every step in its own container, from the pipeline's runtime image.

A step's container (its mounts, labels and sandbox: containers.py, sandbox.py) runs the step's
fresh kernel as the invoking user's uid:gid (never root), and is removed when the step ends, is
cancelled or times out. Papermill runs in the runner and drives that kernel over sockets in a
mounted directory (kernelbridge.py), as the local executor drives its kernels; where the runner
cannot reach such sockets (Docker Desktop's VM, a remote daemon) the container runs papermill
too (stepmain) and its output is streamed into the step's log. Option `papermill`
(host|container, MLPIPE_DOCKER_PAPERMILL) chooses. The Docker socket is never mounted.

Memory: a step's `--memory`, else option `memory` (MLPIPE_DOCKER_MEMORY, `none`: no cap), else
the engine's memory less a tenth, at least 1 GiB (containers.default_memory). Without any cap
one runaway step (a join that explodes) took the host down, runner and Jupyter with it, saying
nothing; a cap that only keeps a margin for the host kills no step that would have survived
without it, and says "out of memory". Swap is never added on top. CPU: only `--cpus`.

The `docker` SDK is imported only when the executor is used, so the CLI starts fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ExecutorError, MlpipeError, StepFailed, UsageError
from ..model.rules import NETWORKS
from ..model.spec import PipelineSpec, StepSpec
from ..run.stepbook import failure_from_notebook
from . import kernelbridge, sandbox
from .base import Executor, StepJob
from .containers import (
    NOTEBOOK,
    RUN_LABEL,
    STEP,
    container_kwargs,
    container_user,
    io_paths,
    owner_label,
    parse_memory_option,
    parse_user,
)
from .daemon import (
    API_TIMEOUT,
    PING_TIMEOUT,
    ContainerWatch,
    LogTail,
    connect,
    daemon_address,
    daemon_down,
    docker_error,
)
from .workers import KernelWorker

KERNEL_START_TIMEOUT = 60  # s for a container's kernel to bind its sockets
EXIT_WAIT = 5  # s a kernel holding file outputs gets to exit (and flush them)
EXIT_GRACE = 1  # s any other finished kernel gets before its container is removed
PAPERMILL_IN = ("host", "container")


class DockerExecutor(Executor):
    """Options: `network` (none|bridge, the run's default), `base_image`, `user` (UID[:GID] whose
    the step's files are; root's steps run as containers.SANDBOX_USER), `papermill`
    (host|container: where papermill runs; default host where it can reach the container's
    sockets), `memory` (the cap of steps without --memory: a size, or none),
    `pids_limit`."""

    name = "docker"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.user = parse_user(options.get("user"))  # whose the step's files are
        self.run_as = container_user(self.user)  # who runs in the container
        self.memory = parse_memory_option(options.get("memory",
                                                      os.environ.get("MLPIPE_DOCKER_MEMORY")))
        self.pids_limit = int(options.get("pids_limit") or 0) or None
        self._limits: sandbox.Limits | None = None
        if self.user != (os.getuid(), os.getgid()) and os.getuid() != 0:
            # the step's directories are handed to that user before it runs
            raise UsageError(f"executor option user={options['user']}: only root can run steps "
                             "as another user", option="user")
        self.network: str | None = options.get("network")
        self.base_image: str | None = options.get("base_image")
        where = options.get("papermill") or os.environ.get("MLPIPE_DOCKER_PAPERMILL") or (
            "host" if kernelbridge.usable(daemon_address()) else "container")
        if where not in PAPERMILL_IN:
            raise UsageError(f"executor option papermill={where}: use one of "
                             f"{', '.join(PAPERMILL_IN)}", option="papermill")
        self.papermill_in: str = where
        self._kernel_files: dict[int, kernelbridge.KernelFiles] = {}
        self._exits: dict[int, Callable[[], None]] = {}  # id(job) -> ask its kernel to exit
        self._client = None
        self._images: dict[str | None, str] = {}
        self._base: str | None = None  # the base image, once resolved
        self._containers: dict[int, Any] = {}  # id(job) -> container
        self._placeholders: dict[int, list[Path]] = {}
        self._settle: dict[int, list[int]] = {}  # id(job) -> fds of the dirs it wrote
        self._removals: list[threading.Thread] = []
        self._owner = owner_label()
        self._lock = threading.Lock()

    @classmethod
    def available(cls) -> str | None:
        try:
            connect(timeout=PING_TIMEOUT).close()
        except ExecutorError as err:
            return str(err)
        return None

    def ready(self) -> str | None:
        try:
            self._client = connect(timeout=PING_TIMEOUT)
        except ExecutorError as err:
            return str(err)
        self._client.api.timeout = API_TIMEOUT  # the short timeout was for the ping only
        return None

    @property
    def client(self):
        if self._client is None:
            self._client = connect()
        return self._client

    # -- once per run ------------------------------------------------------------------------
    def preflight(self, *, spec: PipelineSpec, base_dir: Path) -> None:
        """The network setting is valid and a base image is here (or pulled)."""
        self._base_for(base_dir, log=lambda line: None)

    def _base_for(self, base_dir: Path, *, log) -> str:
        from ..ui.config import load_config
        from . import images

        if self._base is None:
            config = load_config(base_dir)
            self.network = self.network or config.network
            if self.network is not None and self.network not in NETWORKS:
                raise UsageError(f"network: `{self.network}` is not one of "
                                 f"{', '.join(NETWORKS)}", option="--network")
            self._base = self._docker(lambda: images.resolve_base(
                self.client, self.base_image or config.base_image, log=log))
        return self._base

    def _docker(self, call: Callable[[], Any]) -> Any:
        """Call the engine; its errors as one MlpipeError."""
        try:
            return call()
        except MlpipeError:
            raise
        except Exception as exc:
            raise docker_error(exc) or ExecutorError(
                f"docker executor: {type(exc).__name__}: {exc}", cause="docker") from exc

    def start_run(self, *, spec: PipelineSpec, base_dir: Path, run_id: str, log) -> None:
        from . import images

        base = self._base_for(Path(base_dir), log=log)
        self._images = self._docker(lambda: images.pipeline_images(
            self.client, spec, Path(base_dir), base=base, log=log))

    def environment(self, step: StepSpec) -> str:
        """The id (sha256:...) of the image the step runs in: part of its cache key."""
        try:
            return self._images[step.image]
        except KeyError:
            raise ExecutorError(f"step `{step.name}`: no image prepared for it (start_run was "
                                "not called for this pipeline)", step=step.name) from None

    def cancel_run(self, *, run_id: str) -> None:
        self.remove_run_containers(run_id)

    def end_run(self, *, run_id: str) -> None:
        for removal in self._removals:
            removal.join(30)
        self._removals.clear()
        try:
            self.remove_run_containers(run_id)
        finally:
            if self._client is not None:
                self._client.close()
                self._client = None

    def remove_run_containers(self, run_id: str) -> list[str]:
        """Stop and remove every container of the run (force: they may be running)."""
        removed = []
        try:
            found = self.client.containers.list(
                all=True, filters={"label": f"{RUN_LABEL}={run_id}"})
        except Exception:
            return removed
        for container in found:
            try:
                container.remove(force=True)
                removed.append(container.name)
            except Exception:  # already gone: removed by its step's cleanup
                pass
        return removed

    # -- one step ----------------------------------------------------------------------------
    def io_for(self, job: StepJob) -> dict:
        return io_paths(job)

    def prepare(self, job: StepJob) -> None:
        super().prepare(job)
        self._placeholders[id(job)] = made = sandbox.make_mount_points(job)
        # the container's user must be able to write where the step writes
        sandbox.hand_over([job.workdir, job.outputs_dir, *(p for p in made if p.is_dir())],
                          self.run_as)
        self._settle[id(job)] = sandbox.open_dirs([job.workdir, job.outputs_dir])

    def limits(self) -> sandbox.Limits:
        if self._limits is None:
            self._limits = self._docker(lambda: sandbox.engine_limits(
                self.client, self.memory, self.pids_limit))
        return self._limits

    def execute(self, job: StepJob, parameters: dict[str, Any]) -> None:
        image = self.environment(job.step)
        if self.papermill_in == "host":
            self._drive_kernel(job, parameters, image)
        else:
            self._run_stepmain(job, parameters, image)

    def _drive_kernel(self, job: StepJob, parameters: dict[str, Any], image: str) -> None:
        """Papermill here, the kernel in the container (kernelbridge.py)."""
        from jupyter_core.utils import run_sync

        from ..kernels.client import exit_kernel
        from ..step.engine import import_papermill, run_step_notebook

        files = kernelbridge.kernel_files(self.run_as)
        self._kernel_files[id(job)] = files
        container = self._start(job, container_kwargs(
            job, image=image, user=self.run_as, network=self.network, owner=self._owner,
            kernel=(files.mount_dir, files.container_file), limits=self.limits()))
        watch = ContainerWatch(container, job.kernel_log)
        import_papermill()  # while the container boots
        alive = watch.running
        km = None
        try:
            kernelbridge.wait_ready(files, alive, KERNEL_START_TIMEOUT)
            km = kernelbridge.kernel_manager(
                files, alive=alive, interrupt=lambda: container.kill(signal="SIGINT"))
            run_step_notebook(job, parameters, km)
        except Exception:
            if self.stop_reason(job) is not None:
                raise self.stop_reason(job) from None
            if watch.exited.wait(2 if not alive() else 0):  # the kernel died with its container
                code = watch.code if watch.code is not None else -1
                raise self._failure(job, code, self._oom(container), watch.tail()) from None
            raise
        finally:
            if self.user != sandbox.runner_ids():  # written here, for the step's user
                for path in (job.output, job.kernel_log):
                    with contextlib.suppress(OSError):
                        os.chown(path, *self.user, follow_symlinks=False)
            if km is not None and alive():
                def ask_exit(wait: float, km=km) -> None:
                    with contextlib.suppress(Exception):
                        run_sync(exit_kernel)(km, wait, exited=watch.exited.is_set)

                # file outputs are complete once the kernel has exited (it may hold them open);
                # variable outputs were written and closed by the outputs cell, so that exit
                # happens off the step's critical path, before its container is removed
                if job.step.file_outputs:
                    ask_exit(EXIT_WAIT)
                else:
                    self._exits[id(job)] = lambda: ask_exit(EXIT_GRACE)
        if job.cancel.is_set():
            raise self.stop_reason(job)

    def _run_stepmain(self, job: StepJob, parameters: dict[str, Any], image: str) -> None:
        """Papermill and the kernel in the container, its output streamed here."""
        # the container writes in a box the runner collects from (sandbox.collect_box)
        sandbox.make_box(job, self.run_as, json.dumps({
            "notebook": NOTEBOOK, "output": f"{STEP}/{job.output.name}",
            "parameters": repr(parameters), "kernel_log": f"{STEP}/{job.kernel_log.name}",
            "image": image,
        }, indent=1))
        try:
            container = self._start(job, container_kwargs(
                job, image=image, user=self.run_as, network=self.network, owner=self._owner,
                limits=self.limits()))
            tail = self._follow(container, job)
            code = container.wait()["StatusCode"]
            oom = code != 0 and self._oom(container)  # an OOM kill exits non-zero
        except Exception:
            sandbox.collect_box(job, self.user)
            if self.stop_reason(job) is not None:  # removed by cancel_run
                raise self.stop_reason(job) from None
            raise
        sandbox.collect_box(job, self.user)
        if self.stop_reason(job) is not None:
            raise self.stop_reason(job)
        if code != 0:
            raise self._failure(job, code, oom, tail)

    @staticmethod
    def _oom(container) -> bool:
        with contextlib.suppress(Exception):  # removed meanwhile: no verdict
            container.reload()
            return bool(container.attrs["State"].get("OOMKilled"))
        return False

    def _start(self, job: StepJob, kwargs: dict[str, Any]):
        """Create and start the step's container; job.stop kills it from another thread."""
        container = self.client.containers.create(**kwargs)
        with self._lock:
            self._containers[id(job)] = container
        gate = threading.Lock()
        state = {"started": False, "stopped": False}

        def stop() -> None:
            with gate:
                state["stopped"] = True
                if state["started"]:
                    with contextlib.suppress(Exception):  # it ended meanwhile
                        container.kill()

        job.stop = stop
        with gate:  # a stop() from now on either prevents the start or kills what started
            if state["stopped"] or self.stop_reason(job) is not None:
                raise self.stop_reason(job) or ExecutorError(
                    f"step `{job.step.name}` was stopped", step=job.step.name)
            container.start()
            state["started"] = True
        return container

    def _follow(self, container, job: StepJob) -> list[str]:
        """Stream the container's output into the step's log and progress, live; return the
        last lines (for an error message)."""
        from ..step.main import parse_progress

        def sink(line: str) -> bool:
            progress = parse_progress(line)
            if progress is not None:
                job.progress(*progress)
                return False
            job.log(line)
            return True

        tail = LogTail(sink)
        try:
            tail.follow(container.logs(stream=True, follow=True))
        except Exception:
            if self.stop_reason(job) is None:  # a broken stream is fine only when stopped
                raise
        return tail.lines()

    def _failure(self, job: StepJob, code: int, oom: bool, tail: list[str]) -> MlpipeError:
        name = job.step.name
        if oom:
            default = self._limits.memory if self._limits else None
            limit = (f"limit {job.step.memory}" if job.step.memory else
                     f"default limit {default / 2**30:.1f}g; set --memory" if default else
                     "no memory limit set")
            return StepFailed(f"step `{name}` was killed: out of memory ({limit})", step=name,
                              cause="oom", ename="OutOfMemory")
        failure = failure_from_notebook(name, job.output)
        if failure is not None:
            return failure
        last = next((line.strip() for line in reversed(tail) if line.strip()), "")
        if code in (137, 143):
            return StepFailed(f"step `{name}` was killed (exit {code})" +
                              (f": {last}" if last else ""), step=name, cause="killed")
        return StepFailed(f"step `{name}`: its container exited with code {code}" +
                          (f": {last}" if last else ""), step=name, cause="exit")

    def open_worker(self, job: StepJob, workdir: Path, scratch: Path) -> KernelWorker:
        """A worker container for a fan-out step (docker_workers.py)."""
        from .docker_workers import open_worker

        return open_worker(self, job, workdir, scratch)

    def cleanup(self, job: StepJob) -> None:
        job.stop = None
        with self._lock:
            container = self._containers.pop(id(job), None)
        ask_exit = self._exits.pop(id(job), None)
        files = self._kernel_files.pop(id(job), None)
        # what the step wrote goes back to its owner, with no setuid bit, once nothing in the
        # container can change it any more (sandbox.settle)
        settle = functools.partial(sandbox.settle, self._settle.pop(id(job), []),
                                   self.user if self.run_as != self.user else None)
        if container is not None:
            # off the step's critical path (0.1-0.2 s); end_run waits for it and sweeps by label
            removal = threading.Thread(target=sandbox.remove, daemon=True,
                                       args=(container, ask_exit, files, settle))
            removal.start()
            self._removals.append(removal)
        else:  # no container was created
            sandbox.remove(None, None, files, settle)
        sandbox.remove_mount_points(self._placeholders.pop(id(job), []))

    def translate(self, job: StepJob, exc: Exception) -> MlpipeError:
        stopped = self.stop_reason(job)
        if stopped is not None:
            return stopped
        if job.step.gpus and "device driver" in str(exc):
            return ExecutorError(f"step `{job.step.name}` --gpus {job.step.gpus}: this Docker "
                                 "engine cannot give containers GPUs (install the NVIDIA "
                                 "Container Toolkit), or drop --gpus", step=job.step.name,
                                 option="--gpus", cause="gpus")
        return docker_error(exc, step=job.step.name) or super().translate(job, exc)


__all__ = ["DockerExecutor", "connect", "daemon_down", "docker_error"]
