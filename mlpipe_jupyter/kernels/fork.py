"""The runner's side of the kernel zygote (kernelzygote.py): starting it, asking it for kernels,
and a jupyter_client provisioner that launches through it.

A forked kernel costs about a sixth of the CPU of one started as a new interpreter, which is
what eight parallel steps on two cores wait on. It is used only where it is exactly the kernel
the step would have got: the stock Python kernel of this interpreter (stepkernel's command, in
any form stepkernel.stock_kernel_argv accepts), with the interpreter flags the zygote was started
with (those of the run's kernelspec, read when the zygote starts: spec_flags), and only when the
variables read at interpreter start (stepkernel.STARTUP_ENV) are those the zygote started with;
any other launch goes through jupyter_client's own LocalProvisioner, as does every launch once
the zygote has failed. A forked kernel's sys.executable is the runner's, even where its
kernelspec names the same interpreter by another path. The one thing kernels forked in a run
share is the hash seed of str and bytes (set iteration order), which differs from run to run.

Forked kernels are the zygote's children, not the runner's: a kernel's exit is seen through a
pidfd (Linux 5.3), its exit code comes from the zygote, which reaps it, and the zygote kills
whatever is left when the run ends or the runner dies (it sees its socket close).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from jupyter_client.provisioning import LocalProvisioner

from .stepkernel import STARTUP_ENV, STEP_KERNEL, stock_kernel_argv

MAX_MESSAGE = 1 << 16  # a reply
MAX_REQUEST = 1 << 17  # one datagram, within the socket's default send buffer
KILLED = -signal.SIGKILL  # the exit code of a kernel whose zygote is gone: it killed them all


class ForkUnavailable(RuntimeError):
    """The zygote cannot fork this kernel (it failed, or the request does not fit)."""


def supported() -> bool:
    """Linux with pidfds (5.3), not refused by a seccomp filter."""
    if not sys.platform.startswith("linux") or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def startup_vars(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if STARTUP_ENV.match(k) and k != "JPY_PARENT_PID"}


def spec_flags(kernel_name: str) -> tuple[str, ...] | None:
    """The interpreter flags of kernelspec `kernel_name` when it is the stock kernel of this
    interpreter, None when it is not (then no kernel can be forked). Read as jupyter_client's
    KernelSpecManager finds it (the first directory of jupyter_path("kernels"), then IPython's,
    then ipykernel's own spec for python3), without importing IPython to ask where its
    directory is: this runs before the zygote starts. A guess only: a kernel whose command turns
    out otherwise starts the usual way (Zygote.kernel_args)."""
    from jupyter_core.paths import jupyter_path

    wanted = kernel_name.lower()
    ipython = os.environ.get("IPYTHONDIR") or os.path.expanduser("~/.ipython")
    for directory in [*jupyter_path("kernels"), os.path.join(ipython, "kernels")]:
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(directory)):
                spec = os.path.join(directory, name, "kernel.json")
                if name.lower() == wanted and os.path.isfile(spec):
                    try:
                        argv = json.loads(Path(spec).read_text())["argv"]
                    except (OSError, ValueError, KeyError, TypeError):
                        return None
                    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
                        return None
                    stock = stock_kernel_argv(argv)
                    return None if stock is None else stock.flags
    return () if wanted == "python3" else None  # ipykernel's own: sys.executable -m ...


class Zygote:
    """One zygote process: started at once, ready once its imports are done (a fork request
    sent before then waits in its socket). `flags`: its interpreter's, and so its kernels'."""

    def __init__(self, scratch: Path, *, flags: tuple[str, ...] = (),
                 timeout: float = 60) -> None:
        env = dict(os.environ)
        self._startup = startup_vars(env)
        self.flags = tuple(flags)
        self._lock = threading.Lock()
        self.broken: str | None = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.log = scratch / "zygote.log"
        try:
            with open(self.log, "ab") as out:
                self.process = subprocess.Popen(
                    [sys.executable, *self.flags, "-m", "mlpipe_jupyter.kernels.zygote",
                     str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=out,
                    stderr=out, env=env, cwd=scratch, start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(timeout)
        self._sock = ours

    def kernel_args(self, cmd: list[str], env: Mapping[str, str]) -> list[str] | None:
        """The arguments to fork with when a kernel forked from here is the one `cmd` (as
        StepKernelManager formats it) with `env` would start; None when it is not."""
        if self.broken is not None:
            return None
        stock = stock_kernel_argv(cmd, env.get("PATH"))
        if (stock is None or stock.module != STEP_KERNEL or stock.flags != self.flags
                or startup_vars(env) != self._startup):
            return None
        return list(stock.args)

    def fork(self, argv: list[str], cwd: str, env: Mapping[str, str], out_fd: int) -> ForkedProcess:
        """A kernel running `argv` (stepkernel's arguments) in `cwd` with `env`, its stdout and
        stderr on `out_fd`. Blocks while the zygote is still importing."""
        request = json.dumps({"op": "fork", "argv": argv, "cwd": cwd, "env": dict(env)}).encode()
        if len(request) > MAX_REQUEST:  # an enormous environment: this kernel starts as usual
            raise ForkUnavailable(f"the request is {len(request)} bytes")
        with self._lock:
            reply, fds = self._ask(request, [out_fd], nfds=1)
        if "error" in reply:  # that fork failed; the zygote serves on
            raise ForkUnavailable(reply["error"])
        if "pid" not in reply or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            self._fail(f"unexpected reply {reply}")
        return ForkedProcess(self, reply["pid"], fds[0])

    def reap(self, pid: int) -> int:
        """The exit code of an exited kernel, which the zygote reaps."""
        with self._lock:
            try:
                reply, _ = self._ask(json.dumps({"op": "reap", "pid": pid}).encode(), [], 0)
            except ForkUnavailable:
                return KILLED
        code = reply.get("code")
        return KILLED if code is None else int(code)

    def close(self, timeout: float = 5) -> None:
        """End the zygote (it kills any kernel of its own still running). Idempotent."""
        with contextlib.suppress(OSError):  # wakes a fork() waiting on the zygote, at once
            self._sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            self.broken = self.broken or "closed"
            self._sock.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _ask(self, data: bytes, fds: list[int], nfds: int) -> tuple[dict, list[int]]:
        if self.broken is not None:
            raise ForkUnavailable(self.broken)
        try:
            socket.send_fds(self._sock, [data], fds)
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:  # nothing was sent: only this request fails
                raise ForkUnavailable(f"the request is {len(data)} bytes") from None
            self._fail(f"{type(exc).__name__}: {exc}")
        try:
            reply, got, _flags, _addr = socket.recv_fds(self._sock, MAX_MESSAGE, nfds)
        except OSError as exc:  # a timeout included
            self._fail(f"{type(exc).__name__}: {exc}")
        for fd in got:
            os.set_inheritable(fd, False)
        if not reply:
            self._fail(f"the zygote exited ({self.process.poll()}); see {self.log}")
        return json.loads(reply), got

    def _fail(self, why: str):
        """The conversation is lost (the zygote died, hangs, or answered out of turn): no more
        forks. A zygote still running is killed, so that it cannot fork late a kernel the
        runner has meanwhile started the usual way; the kernels it forked see it go and exit."""
        self.broken = why
        with contextlib.suppress(OSError):
            self.process.kill()
        raise ForkUnavailable(why)


class ForkedProcess:
    """What jupyter_client and the pool need of a subprocess.Popen, for a forked kernel."""

    stdin = stdout = stderr = None

    def __init__(self, zygote: Zygote, pid: int, pidfd: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._zygote = zygote
        self._pidfd: int | None = pidfd
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        return self._check(0)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self._check(0.05)) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout or 0)
        return code

    def send_signal(self, signum: int) -> None:
        with self._lock:
            if self._pidfd is not None:  # not reaped: the pid is still this kernel's
                signal.pidfd_send_signal(self._pidfd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _check(self, timeout: float) -> int | None:
        with self._lock:
            if self._pidfd is None:
                return self.returncode
            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            if not poller.poll(timeout * 1000):
                return None
            self.returncode = self._zygote.reap(self.pid)
            os.close(self._pidfd)
            self._pidfd = None
            return self.returncode

    def __del__(self) -> None:
        if getattr(self, "_pidfd", None) is not None:
            os.close(self._pidfd)


class ForkProvisioner(LocalProvisioner):
    """LocalProvisioner that forks the kernel from the run's zygote when it can."""

    zygote: Zygote | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs):
        env = kwargs.get("env") or os.environ
        out = kwargs.get("stdout")
        zygote = self.zygote
        args = None if zygote is None or out is None else zygote.kernel_args(cmd, env)
        if args is None:
            return await super().launch_kernel(cmd, **kwargs)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        fd = out if isinstance(out, int) else out.fileno()
        try:
            proc = await asyncio.get_running_loop().run_in_executor(
                None, zygote.fork, args, cwd, env, fd)
        except ForkUnavailable:
            return await super().launch_kernel(cmd, **kwargs)
        self.process = proc
        self.pid = self.pgid = proc.pid  # the child called setsid()
        self.cwd = cwd
        return self.connection_info


def use_zygote(km, zygote: Zygote) -> None:
    """Make `km` (a KernelManager not yet started) launch through `zygote` when it can: when
    jupyter_client would use its LocalProvisioner (a kernelspec or configuration naming another
    provisioner keeps it)."""
    import uuid

    from jupyter_client.provisioning.factory import KernelProvisionerFactory

    spec = km.kernel_spec
    if (spec.metadata.get("kernel_provisioner")
            or KernelProvisionerFactory.instance().default_provisioner_name
            != "local-provisioner"):
        return
    km.kernel_id = km.kernel_id or str(uuid.uuid4())
    provisioner = ForkProvisioner(kernel_id=km.kernel_id, kernel_spec=spec, parent=km)
    provisioner.zygote = zygote
    km.provisioner = provisioner
