"""Is a process still the one it was? Its pid, with its start time and the machine's boot,
names one process: the run store records a runner's, a container's `mlpipe.owner` label carries
one, and recovery (reaper.py) asks whether it is alive before failing its runs."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


def process_start(pid: int) -> str | None:
    """The kernel's start time of a process: with the pid, it tells a process from its reuse."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: int | None, start: str | None = None) -> bool:
    """Whether process `pid` runs on this host (and, given its start time, is the same one)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start is None or process_start(pid) == start


def boot_id() -> str:
    """This boot of this machine: with a pid and its start time, it names one process."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Owner:
    """The process that started something (a run, a container), as recorded at the time."""

    host: str
    pid: int | None
    start: str | None = None  # process_start(); None: recorded before it was
    boot: str | None = None  # boot_id(); None: recorded before it was

    @classmethod
    def this(cls) -> Owner:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, process_start(pid), boot_id())

    def label(self) -> str:
        """`host:pid:start-time:boot-id`, as a container's `mlpipe.owner` label."""
        return f"{self.host}:{self.pid or ''}:{self.start or ''}:{self.boot or ''}"

    @classmethod
    def parse(cls, label: str | None) -> Owner | None:
        """The owner a label names; None for one that is not a label (labels older than the
        boot id have three fields)."""
        host, _, rest = (label or "").partition(":")
        pid, _, rest = rest.partition(":")
        start, _, boot = rest.partition(":")
        if not host or not pid.isdigit():
            return None
        return cls(host, int(pid), start or None, boot or None)

    def alive(self) -> bool | None:
        """True/False for a process of this host; None when it cannot be told here (another
        host, or a boot id this machine cannot read). A process of an earlier boot is dead
        whatever runs under its pid now."""
        if self.host != socket.gethostname():
            return None
        now = boot_id()
        if self.boot and self.boot != now:
            return False if now else None
        return process_alive(self.pid, self.start)
