"""Scratch directories of a runner in the system's temp dir (kernel logs, kernel sockets),
named by the runner's pid so that `mlpipe gc` can remove those a killed runner left behind."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

# the kernel-socket directories live in /tmp itself: a unix socket path has at most 107 bytes
ROOTS = (Path("/tmp"),)
NAME = re.compile(r"^mlpipe-(?P<kind>[a-z]+)-(?P<pid>\d+)-[\w]+$")


def scratch_dir(kind: str, *, root: Path | None = None) -> Path:
    """A new private directory `mlpipe-<kind>-<pid>-<random>`."""
    return Path(tempfile.mkdtemp(prefix=f"mlpipe-{kind}-{os.getpid()}-",
                                 dir=str(root) if root else None))


def sweep(*, roots: tuple[Path, ...] | None = None, dry_run: bool = False) -> list[Path]:
    """Remove the scratch directories whose runner is no longer alive; return them."""
    from ..run.processes import process_alive

    roots = roots or (*ROOTS, Path(tempfile.gettempdir()))
    found: list[Path] = []
    for root in dict.fromkeys(roots):  # the same dir once, in order
        try:
            entries = list(root.iterdir())
        except OSError:
            continue
        for path in entries:
            m = NAME.match(path.name)
            if m is None or not path.is_dir() or path.is_symlink():
                continue
            if process_alive(int(m["pid"])):
                continue  # its runner's, or a new process's with that pid: left alone
            if not dry_run:
                shutil.rmtree(path, ignore_errors=True)
            found.append(path)
    return found
