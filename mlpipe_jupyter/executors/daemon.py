"""Talking to the Docker daemon: connecting, its errors as one line, and watching and removing
a step's container. The `docker` SDK is imported only when a daemon is used."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import ExecutorError, MlpipeError
from ..step.lines import LineBuffer
from . import kernelbridge

PING_TIMEOUT = 2
API_TIMEOUT = 60  # seconds for any other call to the engine


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
        client = docker.from_env(timeout=timeout or API_TIMEOUT)
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


class LogTail:
    """A container's output followed line by line: each line goes to `sink` as it comes, and
    the last `keep` lines the sink says are log lines (not, say, progress marks) are kept
    for the error message of a step that failed."""

    def __init__(self, sink: Callable[[str], bool], keep: int = 20) -> None:
        self._sink = sink
        self._lines = LineBuffer()
        self._tail: deque[str] = deque(maxlen=keep)

    def follow(self, chunks: Iterable[bytes]) -> None:
        """Until the stream ends. A stream that breaks (the container was removed) raises,
        once the line it had begun was passed on."""
        try:
            for chunk in chunks:
                self._pass(self._lines.feed(chunk))
        finally:
            self._pass(self._lines.flush())

    def _pass(self, lines: list[str]) -> None:
        for line in lines:
            if self._sink(line):
                self._tail.append(line)

    def lines(self) -> list[str]:
        return list(self._tail)


class ContainerWatch:
    """A thread that copies a container's output (the kernel's own chatter) to a file and
    then records its exit code: `exited` is set the moment the container stops."""

    def __init__(self, container, log_file: Path) -> None:
        self.exited = threading.Event()
        self.code: int | None = None
        self._tail: LogTail | None = None
        self._thread = threading.Thread(target=self._watch, args=(container, log_file),
                                        daemon=True)
        self._thread.start()

    def running(self) -> bool:
        return not self.exited.is_set()

    def tail(self) -> list[str]:
        return self._tail.lines() if self._tail is not None else []

    def _watch(self, container, log_file: Path) -> None:
        try:
            with open(log_file, "a", encoding="utf-8") as sink:
                def write(line: str) -> bool:
                    sink.write(line + "\n")
                    return True

                self._tail = LogTail(write)
                with contextlib.suppress(Exception):  # removed meanwhile (cancel)
                    self._tail.follow(container.logs(stream=True, follow=True))
            with contextlib.suppress(Exception):
                self.code = container.wait()["StatusCode"]
        finally:
            self.exited.set()
