"""The `docker` executor: every step in its own container, from the pipeline's runtime image.

A step's container (its mounts and labels: containers.py) runs the step's fresh kernel as the
invoking user's uid:gid, and is removed when the step ends, is cancelled or times out. Papermill
runs in the runner and drives that kernel over sockets in a mounted directory (kernelbridge.py),
as the local executor drives its kernels; where the runner cannot reach such sockets (Docker
Desktop's VM, a remote daemon) the container runs papermill too (stepmain) and its output is
streamed into the step's log. Option `papermill` (host|container, MLPIPE_DOCKER_PAPERMILL)
chooses. The Docker socket is never mounted.

No memory or CPU limit is set unless the step asks (`--memory`, `--cpus`): a default cap would
kill honest data-science steps on big machines with no hint why; a step that asks gets a hard
cap (swap included) and a clear "out of memory" error when it goes over.

The `docker` SDK is imported only when the executor is used, so the CLI starts fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import ExecutorError, MlpipeError, StepFailed, UsageError
from ..spec import PipelineSpec, StepSpec
from ..stepargs import NETWORKS
from ..stepbook import failure_from_notebook
from . import kernelbridge
from .base import Executor, StepJob
from .containers import (
    JOB_FILE,
    NOTEBOOK,
    RUN_LABEL,
    STEP,
    LineSplitter,
    container_kwargs,
    io_paths,
    owner_label,
    parse_user,
)
from .daemon import (
    PING_TIMEOUT,
    ContainerWatch,
    connect,
    daemon_address,
    daemon_down,
    docker_error,
    remove_quietly,
)

KERNEL_START_TIMEOUT = 60  # s for a container's kernel to bind its sockets
EXIT_WAIT = 5  # s a kernel holding file outputs gets to exit (and flush them)
EXIT_GRACE = 1  # s any other finished kernel gets before its container is removed
PAPERMILL_IN = ("host", "container")


class DockerExecutor(Executor):
    """Options: `network` (none|bridge, the run's default), `base_image`, `user` (UID[:GID]),
    `papermill` (host|container: where papermill runs; default host where it can reach the
    container's sockets)."""

    name = "docker"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.user = parse_user(options.get("user"))
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
        from .. import images
        from ..config import load_config

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
        from .. import images

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
        # Mount points of file inputs are made here, not by Docker, which would make them
        # root-owned inside the user's working directory.
        made: list[Path] = []
        for rel, source in job.files.items():
            dest = job.workdir / rel.rstrip("/")
            missing = [p for p in [dest, *dest.parents] if not p.exists()
                       and job.workdir in p.parents]
            dest.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                dest.mkdir(exist_ok=True)
            elif not dest.exists():
                dest.touch()
            made += missing
        # deepest first, so that cleanup can remove directories once they are empty
        made.sort(key=lambda p: len(p.parts), reverse=True)
        self._placeholders[id(job)] = made
        if self.user != (os.getuid(), os.getgid()):
            # the container's user must be able to write where the step writes
            writable = [job.workdir, job.outputs_dir, job.output.parent, job.output,
                        job.output.parent / "kernel.log",
                        *(p for p in made if p.is_dir())]
            for path in writable:
                if path.exists():
                    os.chown(path, *self.user)

    def execute(self, job: StepJob, parameters: dict[str, Any]) -> None:
        image = self.environment(job.step)
        if self.papermill_in == "host":
            self._drive_kernel(job, parameters, image)
        else:
            self._run_stepmain(job, parameters, image)

    def _drive_kernel(self, job: StepJob, parameters: dict[str, Any], image: str) -> None:
        """Papermill here, the kernel in the container (kernelbridge.py)."""
        from jupyter_core.utils import run_sync

        from ..stepengine import import_papermill, run_step_notebook
        from ..stepkernel import exit_kernel

        files = kernelbridge.kernel_files(self.user)
        self._kernel_files[id(job)] = files
        container = self._start(job, container_kwargs(
            job, image=image, user=self.user, network=self.network, owner=self._owner,
            kernel=(files.host_dir, files.container_file)))
        watch = ContainerWatch(container, job.output.parent / "kernel.log")
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
            if self.user != (os.getuid(), os.getgid()):  # written here, for the step's user
                for path in (job.output, job.output.parent / "kernel.log"):
                    with contextlib.suppress(OSError):
                        os.chown(path, *self.user)
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
        step_dir = job.output.parent
        notebook = (f"{STEP}/{job.notebook.name}" if job.notebook.parent == step_dir
                    else NOTEBOOK)
        (step_dir / JOB_FILE).write_text(json.dumps({
            "notebook": notebook, "output": f"{STEP}/{job.output.name}",
            "parameters": repr(parameters), "kernel_log": f"{STEP}/kernel.log", "image": image,
        }, indent=1), encoding="utf-8")
        container = self._start(job, container_kwargs(
            job, image=image, user=self.user, network=self.network, owner=self._owner))
        tail = self._follow(container, job)
        try:
            code = container.wait()["StatusCode"]
            oom = code != 0 and self._oom(container)  # an OOM kill exits non-zero
        except Exception:
            if self.stop_reason(job) is not None:  # removed by cancel_run
                raise self.stop_reason(job) from None
            raise
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
        from ..stepmain import parse_progress

        tail: deque[str] = deque(maxlen=20)
        splitter = LineSplitter()

        def emit(lines: Iterable[str]) -> None:
            for line in lines:
                progress = parse_progress(line)
                if progress is not None:
                    job.progress(*progress)
                else:
                    job.log(line)
                    tail.append(line)

        try:
            for chunk in container.logs(stream=True, follow=True):
                emit(splitter.feed(chunk))
        except Exception:
            if self.stop_reason(job) is None:  # a broken stream is fine only when stopped
                raise
        emit(splitter.close())
        return list(tail)

    def _failure(self, job: StepJob, code: int, oom: bool, tail: list[str]) -> MlpipeError:
        name = job.step.name
        if oom:
            limit = f"limit {job.step.memory}" if job.step.memory else "no --memory limit set"
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

    def cleanup(self, job: StepJob) -> None:
        job.stop = None
        with self._lock:
            container = self._containers.pop(id(job), None)
        ask_exit = self._exits.pop(id(job), None)
        files = self._kernel_files.pop(id(job), None)
        if container is not None:
            # off the step's critical path (0.1-0.2 s); end_run waits for it and sweeps by label
            removal = threading.Thread(target=remove_quietly, args=(container, ask_exit, files),
                                       daemon=True)
            removal.start()
            self._removals.append(removal)
        elif files is not None:  # no container was created
            files.remove()
        for path in self._placeholders.pop(id(job), []):
            try:
                if path.is_dir():
                    path.rmdir()  # only if empty: the step may have written beside an input
                elif path.stat().st_size == 0:
                    path.unlink()
            except OSError:
                pass

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
