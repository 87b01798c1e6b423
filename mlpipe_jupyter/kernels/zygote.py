"""The kernel zygote: one process per run that imports ipykernel once, then forks every step
kernel the local executor asks for (`python [FLAGS] -m mlpipe_jupyter.kernels.zygote FD`, FLAGS
the interpreter flags of the run's kernelspec, so that its kernels have them; the runner's side
is fork.py).

A kernel started as a new interpreter spends most of its start-up CPU importing ipykernel,
IPython, zmq and tornado (about 0.25 of 0.3 CPU-s here); on 2 cores, eight steps starting at
once queue behind that. A forked kernel inherits the imported modules and only initialises
its IPKernelApp. It is still a kernel that has run nothing: the zygote never creates a kernel,
a zmq context, an event loop or a thread, so a child starts from a process that only imported
modules, and each child becomes its own session in the step's directory with the step's
environment, with the zygote as the parent it watches.

Protocol, over a SOCK_SEQPACKET pair (one JSON message each way, file descriptors attached):
  {"op": "fork", "argv": [...], "cwd": ..., "env": {...}} + [log fd]  -> {"pid": n} + [pidfd]
                                                                       or {"error": why}
  {"op": "reap", "pid": n}                                          -> {"code": int | null}
End of file (the runner closed its side, or died) makes the zygote SIGKILL every kernel it
forked that is still running, together with its process group, and exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys

MAX_MESSAGE = 1 << 20
# What a step kernel imports by the time it runs the step's first cell (debugpy excepted, see
# stepkernel.KERNEL_UNNEEDED), measured on a started kernel; a name that is not installed is
# skipped. tests/integration/test_kernelfork.py checks a forked kernel has nothing a kernel
# started the usual way would not have.
PRELOAD = (
    "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.comm",
    "IPython.core.interactiveshell", "IPython.core.completer", "IPython.core.debugger",
    "tornado.gen", "tornado.locks", "tornado.queues", "sqlite3", "pdb",
)


def preload() -> None:
    import importlib

    from .stepkernel import KERNEL_UNNEEDED, hidden_modules

    with hidden_modules(KERNEL_UNNEEDED):
        for name in PRELOAD:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)


def serve(sock: socket.socket) -> dict | None:
    """Answer requests until end of file (returns None). In a forked child, returns that
    child's request instead, with the process already in the step's session, directory and
    output files."""
    children: set[int] = set()
    zygote = os.getpid()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 1)
            if not data:
                return None
            request = json.loads(data)
            if request["op"] == "reap":
                sock.send(json.dumps({"code": _reap(children, request["pid"])}).encode())
                continue
            log_fd = fds[0]
            try:
                pid = os.fork()
            except OSError as exc:  # this kernel starts the usual way; the others run on
                os.close(log_fd)
                sock.send(json.dumps({"error": f"fork: {exc}"}).encode())
                continue
            if pid == 0:
                children.clear()  # the zygote's, not this kernel's: nothing to kill on exit
                request["zygote"] = zygote
                return _become_kernel(request, sock, log_fd)
            os.close(log_fd)
            children.add(pid)
            try:
                pidfd = os.pidfd_open(pid)
            except OSError as exc:
                _kill(pid)
                _reap(children, pid)
                sock.send(json.dumps({"error": f"pidfd_open: {exc}"}).encode())
                continue
            try:
                socket.send_fds(sock, [json.dumps({"pid": pid}).encode()], [pidfd])
            finally:
                os.close(pidfd)
    finally:
        for pid in children:  # the run is over (or the runner died): no kernel outlives it
            _kill(pid)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _kill(pid: int) -> None:
    """SIGKILL a child not yet reaped (its pid cannot have been reused) and its process group;
    the group may not exist yet (a child that has not reached setsid)."""
    for kill in (os.kill, os.killpg):
        with contextlib.suppress(OSError):
            kill(pid, signal.SIGKILL)


def _reap(children: set[int], pid: int) -> int | None:
    if pid not in children:
        return None
    _, status = os.waitpid(pid, 0)  # asked for once the runner saw it exit: does not block
    children.discard(pid)
    return os.waitstatus_to_exitcode(status)


def _become_kernel(request: dict, sock: socket.socket, log_fd: int) -> dict:
    sock.close()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if os.getppid() != request["zygote"]:  # the zygote died while forking: nobody wants this
        os._exit(1)
    os.setsid()  # its own process group, as jupyter_client starts kernels
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null)
    os.close(log_fd)
    try:
        os.chdir(request["cwd"])
    except OSError as exc:
        print(f"mlpipe kernel: cannot enter {request['cwd']}: {exc}", file=sys.stderr)
        os._exit(1)
    return request


def run_kernel(request: dict) -> None:
    """In the forked child: become the step's kernel."""
    from .stepkernel import launch_kernel

    zygote = str(request["zygote"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ["JPY_PARENT_PID"] = zygote
    # (`random` reseeds itself in a forked child: CPython registers that at import)
    # the kernel exits if the zygote dies (which exits with the run); ipykernel read the
    # default of this option from the environment when the zygote imported it
    sys.argv = [sys.argv[0], *request["argv"], f"--IPKernelApp.parent_handle={zygote}"]
    launch_kernel()


def main() -> None:
    # `-m` put the runner's cwd first on sys.path; a kernel's cwd is its step's, added by
    # IPython as ''
    if sys.path and sys.path[0] == os.getcwd():
        del sys.path[0]
    sock = socket.socket(fileno=int(sys.argv[1]))
    sys.argv = sys.argv[:1]
    preload()
    # what the zygote imported lives as long as any kernel: kept out of the children's
    # collections, which would otherwise walk (and copy-on-write) all of it (W2: 0.4 CPU-s)
    import gc

    gc.collect()
    gc.freeze()
    del sys.modules["gc"]  # not imported by a kernel started the usual way: nor by these
    import threading

    if threading.active_count() != 1:  # a fork would copy a lock another thread holds
        sys.exit(f"mlpipe zygote: an import started a thread ({threading.enumerate()})")
    request = serve(sock)
    if request is not None:
        run_kernel(request)  # and the interpreter exits as any kernel's does: atexit, flushes

if __name__ == "__main__":
    main()
