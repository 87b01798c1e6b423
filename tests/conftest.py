"""Shared test helpers and fixtures: notebooks written from cell lists, the real `mlpipe` CLI,
waiting on a condition, a free port, a real `jupyter server` with the package's extensions, a
notebook kernel (tests/kernelkit.py) and executors registered for one test.

Test modules import helpers from here or from a kit module (tests/kernelkit.py,
tests/integration/servicekit.py), never from another test module (tests/unit/
test_test_hygiene.py checks)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from mlpipe_jupyter.executors import Executor
    from tests.kernelkit import Kernel

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MLPIPE = str(Path(sys.executable).with_name("mlpipe"))
# The base image the Docker tests build FROM: the one scripts/setup-docker.sh makes (no registry
# is reachable here; `make test` runs it), or MLPIPE_BASE_IMAGE. Never `python:3.11-slim`, which
# a machine may hold as the real image or not at all.
BASE_IMAGE = os.environ.get("MLPIPE_BASE_IMAGE", "mlpipe-base:bookworm-py3.11")


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A minimal nbformat-4 notebook whose code cells are `cells` (markdown if it starts `#md`)."""
    nb_cells = []
    for i, src in enumerate(cells):
        if src.startswith("#md\n"):
            nb_cells.append({"cell_type": "markdown", "id": f"c{i}", "metadata": {},
                             "source": src[4:]})
        else:
            nb_cells.append({"cell_type": "code", "id": f"c{i}", "metadata": {},
                             "execution_count": None, "outputs": [], "source": src})
    nb = {"cells": nb_cells, "metadata": {"kernelspec": {"name": "python3",
                                                       "display_name": "Python 3",
                                                       "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb, indent=1))
    return path


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("MLPIPE_HOME", None)
    return subprocess.run([MLPIPE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def no_run_started(directory: Path) -> bool:
    """No run directory under `directory`'s .mlpipe: nothing ran."""
    runs = directory / ".mlpipe" / "runs"
    return not runs.exists() or not any(runs.iterdir())


def wait_for(condition: Callable[[], T], what: str | Callable[[], str], timeout: float = 60,
             every: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy, and return that; at the deadline
    fail naming `what` (a callable: worded then, e.g. with the last value seen). The one way
    a test waits for something to happen: never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for "
                                 f"{what() if callable(what) else what}")
        time.sleep(every)


def running(pid: int) -> bool:
    """The process is alive: not gone, not a zombie waiting for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_exited(pid: int, timeout: float = 10, what: str = "the process") -> None:
    """Wait until process `pid` has exited (`what` says which process it is)."""
    wait_for(lambda: not running(pid), f"{what} (pid {pid}) to exit", timeout)


def scratch_of(pid: int | str = "*", kind: str = "*") -> list[Path]:
    """The scratch directories of runner `pid` (kernels/scratch.py), where runners make them:
    `mlpipe-<kind>-<pid>-*` in scratch.ROOTS and the temp dir."""
    from mlpipe_jupyter.kernels.scratch import ROOTS

    roots = dict.fromkeys((*ROOTS, Path(tempfile.gettempdir())))
    return sorted(p for root in roots for p in root.glob(f"mlpipe-{kind}-{pid}-*"))


@pytest.fixture
def notebook_dir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.delenv("MLPIPE_HOME", raising=False)
    return tmp_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class JupyterServer:
    url: str
    token: str
    root: Path
    log: Path


@contextlib.contextmanager
def jupyter_server(base: Path, root: Path, *options: str,
                   env: dict[str, str | None] | None = None,
                   app: str = "jupyter_server") -> Iterator[JupyterServer]:
    """A real `jupyter server` on 127.0.0.1 serving `root`, with the package's extensions and a
    fresh config and data dir under `base` (its log: base/server.log); yielded once it answers,
    stopped by its pid at the end (its kernels with it). `env` adds variables (None removes
    one); `app` is the module run (`jupyterlab`, `notebook`: the same server, their pages)."""
    port, token = free_port(), secrets.token_hex(16)
    full_env = {**os.environ, "JUPYTER_CONFIG_DIR": str(base / "config"),
                "JUPYTER_DATA_DIR": str(base / "data"), **(env or {})}
    full_env.pop("JUPYTER_PATH", None)
    full_env = {k: v for k, v in full_env.items() if v is not None}
    log = base / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", app, "--no-browser", "--ip=127.0.0.1",
             f"--port={port}", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", "--allow-root", *options],
            env=full_env, cwd=base, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                return True
        except OSError:
            return False

    try:
        wait_for(answers, lambda: f"jupyter server at {url}: {log.read_text()[-3000:]}", 90,
                 every=0.3)
        yield JupyterServer(url, token, root, log)
    finally:
        # the server stops its kernels on SIGTERM; the group kill catches any straggler
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> Iterator[Kernel]:
    """One notebook kernel per test module (tests/kernelkit.py: notebook_kernel)."""
    from tests.kernelkit import notebook_kernel

    with notebook_kernel(tmp_path_factory.mktemp("kernel")) as k:
        yield k


@pytest.fixture(scope="session")
def client():
    """A docker client of the real engine the Docker tests need, with the base image there:
    a test that has neither fails saying how to get them (never skips)."""
    from mlpipe_jupyter.executors.docker import DockerExecutor, connect

    why = DockerExecutor.available()
    if why is not None:
        pytest.fail(f"the Docker tests need a real engine and none answers: {why}. Run "
                    "`bash scripts/setup-docker.sh` (as `make test` and .ci/run do).",
                    pytrace=False)
    c = connect()
    if not c.images.list(name=BASE_IMAGE):
        pytest.fail(f"base image {BASE_IMAGE} is missing: run `bash scripts/setup-docker.sh`",
                    pytrace=False)
    yield c
    c.close()


@contextlib.contextmanager
def registered(cls: type[Executor]) -> Iterator[str]:
    """`cls` is the executor named `cls.name` inside the block, and no longer after it."""
    from mlpipe_jupyter.executors import executors

    executors.register(cls.name, cls)
    try:
        yield cls.name
    finally:
        executors.unregister(cls.name)


@pytest.fixture
def register_executor() -> Iterator[Callable[[type[Executor]], str]]:
    """Register a test's executor for that test only (never at import time): runs started in
    the test may name it; the registry is as it was once the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda cls: stack.enter_context(registered(cls))
