"""A step's kernel in its container, driven from the runner's process.

The container runs nothing but the step's kernel (`python -m mlpipe_jupyter.kernels.stepkernel`);
papermill runs in the runner, as for the local executor, and talks to the kernel over ZMQ `ipc`
sockets in a small directory mounted into the container. A container then spends no CPU on
importing papermill and jupyter_client (about half of a container's 0.72 CPU-s, measured with
bench/w2.py), and a step needs no network for its kernel (`--network none` still works).

Unix sockets on a bind mount only work when the daemon runs on this machine's kernel: Linux
and a daemon socket on this host. Elsewhere (Docker Desktop's VM, a remote DOCKER_HOST) the
container runs papermill itself (stepmain).

The container can write the mounted directory, so it could swap a socket for a symlink to a
host socket (the Docker daemon's) for the runner to connect to, now or when ZMQ reconnects.
The runner therefore never connects through that directory: once the kernel has bound its
sockets, each is hard-linked (the link, never a target) into the runner's own directory around
it and checked to be a socket there; the runner's clients connect to those links, which the
container cannot reach.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..kernels.client import shared_context_class
from ..kernels.scratch import scratch_dir
from .containers import KERNEL

CONNECTION_FILE = "kernel.json"
# ipc endpoints are `<ip>-<port>`: five small numbers under a short prefix keep the host's
# socket paths far below the 107-byte limit of a unix socket path
PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
PREFIX = "k"
MOUNTED = "m"  # the directory in host_dir that the container gets
POLL = 0.005  # seconds between checks that the kernel's sockets exist


def usable(daemon_address: str) -> bool:
    """Whether the runner can reach a container's unix sockets through a bind mount."""
    return sys.platform.startswith("linux") and daemon_address.startswith("unix://")


@dataclass
class KernelFiles:
    """The runner's directory (0700) for one kernel: `mount_dir` in it is mounted at KERNEL
    (the connection file and, once the kernel has bound them, its sockets); the links the
    runner connects to are beside it."""

    host_dir: Path
    key: str

    @property
    def mount_dir(self) -> Path:
        return self.host_dir / MOUNTED

    def info(self, prefix: str) -> dict:
        return {"transport": "ipc", "ip": prefix, **PORTS, "key": self.key,
                "signature_scheme": "hmac-sha256", "kernel_name": "python3"}

    @property
    def container_file(self) -> str:
        return f"{KERNEL}/{CONNECTION_FILE}"

    def ready(self) -> bool:
        return all(os.path.lexists(self.mount_dir / f"{PREFIX}-{port}")
                   for port in PORTS.values())

    def link_sockets(self) -> None:
        """Hard-link each of the kernel's sockets to where the runner connects: refused unless
        what the container left there is a socket."""
        for port in PORTS.values():
            name = f"{PREFIX}-{port}"
            link = self.host_dir / name
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            os.link(self.mount_dir / name, link, follow_symlinks=False)  # the entry as it is
            if not stat.S_ISSOCK(link.lstat().st_mode):
                link.unlink()
                raise RuntimeError(f"the step's container left {KERNEL}/{name}, which is not "
                                   "its kernel's socket: refused")

    def remove(self) -> None:
        shutil.rmtree(self.host_dir, ignore_errors=True)


def kernel_files(user: tuple[int, int]) -> KernelFiles:
    """A fresh directory with, in its mount_dir, the connection file as the container sees it
    (a new key per step); the mount_dir belongs to the container's user, who binds the
    sockets there."""
    host_dir = scratch_dir("k", root=Path("/tmp"))  # short: unix socket paths
    files = KernelFiles(host_dir=host_dir, key=secrets.token_hex(32))
    files.mount_dir.mkdir(mode=0o700)
    path = files.mount_dir / CONNECTION_FILE
    path.write_text(json.dumps(files.info(f"{KERNEL}/{PREFIX}")), encoding="utf-8")
    if user != (os.getuid(), os.getgid()):
        os.chown(files.mount_dir, *user)
        os.chown(path, *user)
    return files


def wait_ready(files: KernelFiles, alive: Callable[[], bool], timeout: float) -> None:
    """Until the kernel has bound its sockets (connecting earlier costs ZMQ's 0.1 s
    reconnect); then link them where the runner connects."""
    deadline = time.monotonic() + timeout
    while not files.ready():
        if not alive():
            raise RuntimeError("the step's container exited before its kernel started")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the kernel in the step's container did not start in "
                               f"{timeout:g} s")
        time.sleep(POLL)
    files.link_sockets()


_MANAGER_CLASS = None
_LOCK = threading.Lock()


def kernel_manager(files: KernelFiles, *, alive: Callable[[], bool],
                   interrupt: Callable[[], None]):
    """A jupyter_client AsyncKernelManager for the kernel in the container: its clients
    connect to the runner's links to the sockets (on the process's one zmq context, as the
    pool's: client.py); alive and interrupt go through the container."""
    global _MANAGER_CLASS
    with _LOCK:
        if _MANAGER_CLASS is None:
            from jupyter_client import AsyncKernelManager

            class ContainerKernelManager(AsyncKernelManager):
                alive: Callable[[], bool] = staticmethod(lambda: False)
                interrupter: Callable[[], None] = staticmethod(lambda: None)

                @property
                def has_kernel(self) -> bool:  # started by Docker, not by this manager
                    return True

                async def _async_is_alive(self) -> bool:
                    return self.alive()

                is_alive = _async_is_alive

                async def _async_interrupt_kernel(self) -> None:
                    self.interrupter()

                interrupt_kernel = _async_interrupt_kernel

            _MANAGER_CLASS = shared_context_class(ContainerKernelManager)
    km = _MANAGER_CLASS(kernel_name="python3")
    km.alive = alive
    km.interrupter = interrupt
    km.load_connection_info(files.info(str(files.host_dir / PREFIX)))
    return km
