"""Talking to the Docker daemon: connecting, its errors as one line, and watching and removing
a step's container. The `docker` SDK is imported only when a daemon is used."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..errors import ExecutorError, MlpipeError
from . import kernelbridge
from .containers import LineSplitter

PING_TIMEOUT = 2


def daemon_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def daemon_down(detail: str = "") -> ExecutorError:
    return ExecutorError(
        f"no Docker daemon answers at {daemon_address()}: start it (`sudo dockerd &` or "
        "`systemctl start docker`) or use `--executor local`" + (f" ({detail})" if detail else ""),
        cause="daemon")


def connect(timeout: float | None = None):
    """A docker client, or a one-line ExecutorError saying how to get a daemon."""
    try:
        import docker
    except ImportError:
        raise ExecutorError("the `docker` Python package is not installed (pip install docker);"
                            " or use `--executor local`", cause="sdk") from None
    try:
        client = docker.from_env(timeout=timeout or 60)
        client.ping()
    except Exception:
        raise daemon_down() from None
    return client


def docker_error(exc: BaseException, *, step: str | None = None) -> MlpipeError | None:
    """A docker SDK or transport error as one clear line; None when it is neither."""
    try:
        from docker import errors
        from requests.exceptions import ConnectionError as RequestsConnectionError
    except ImportError:
        return None
    where = f"step `{step}`: " if step else ""
    if isinstance(exc, RequestsConnectionError) or (
            isinstance(exc, errors.DockerException) and "Connection" in str(exc)
            and not isinstance(exc, errors.APIError)):
        err = daemon_down()
        return ExecutorError(where + err.message, step=step, cause="daemon")
    if isinstance(exc, errors.ImageNotFound):
        return ExecutorError(f"{where}image not found: {exc.explanation or exc}", step=step,
                             cause="image-not-found")
    if isinstance(exc, errors.APIError):
        text = " ".join(str(exc.explanation or exc).split())
        return ExecutorError(f"{where}Docker refused: {text}", step=step, cause="docker")
    return None


def remove_quietly(container, ask_exit: Callable[[], None] | None = None,
                    files: kernelbridge.KernelFiles | None = None) -> None:
    # a kernel still running is asked to exit first (atexit hooks run); gone already
    # (cancel_run), or the daemon went away: nothing left to release
    if ask_exit is not None:
        ask_exit()
    with contextlib.suppress(Exception):
        container.remove(force=True)
    if files is not None:
        files.remove()


class ContainerWatch:
    """A thread that copies a container's output (the kernel's own chatter) to a file and
    then records its exit code: `exited` is set the moment the container stops."""

    def __init__(self, container, log_file: Path) -> None:
        self.exited = threading.Event()
        self.code: int | None = None
        self._lines: deque[str] = deque(maxlen=20)
        self._thread = threading.Thread(target=self._watch, args=(container, log_file),
                                        daemon=True)
        self._thread.start()

    def running(self) -> bool:
        return not self.exited.is_set()

    def tail(self) -> list[str]:
        return list(self._lines)

    def _watch(self, container, log_file: Path) -> None:
        splitter = LineSplitter()
        try:
            with open(log_file, "a", encoding="utf-8") as sink:
                with contextlib.suppress(Exception):  # removed meanwhile (cancel)
                    for chunk in container.logs(stream=True, follow=True):
                        for line in splitter.feed(chunk):
                            sink.write(line + "\n")
                            self._lines.append(line)
                for line in splitter.close():
                    sink.write(line + "\n")
                    self._lines.append(line)
            with contextlib.suppress(Exception):
                self.code = container.wait()["StatusCode"]
        finally:
            self.exited.set()
