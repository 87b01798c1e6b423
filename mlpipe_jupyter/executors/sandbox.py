"""The host side of a docker step's sandbox (containers.py says what the container gets): the
directories a step writes, handed to the uid it runs as and back; the box stepmain writes its
record in, collected without following a link; the engine's size, for the default limits.

Ownership. A step runs as the invoking user, except that root's steps run as SANDBOX_USER
(containers.py). Then its work and outputs directories (and the mount points made in them)
are handed to that uid before it runs, and once its container is gone everything in them is
handed back to the invoking user (`settle`: top-down, by fd, links changed as themselves), so
what a step leaves is readable and removable by whoever ran it, as after a local step. Either
way no setuid or setgid bit survives in them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .. import safefs
from ..errors import StepFailed
from .base import StepJob
from .containers import BOX, JOB_FILE, Limits, default_memory, default_pids
from .daemon import remove_quietly

RECORD_LIMIT = 256 << 20  # the largest executed notebook or kernel log collected from a box
RECORD_WHY = "refused, the runner reads no link a step left"


def runner_ids() -> tuple[int, int]:
    return os.getuid(), os.getgid()


def hand_over(paths: list[Path], user: tuple[int, int]) -> None:
    """Give directories the runner just made to the uid the container runs as."""
    if user == runner_ids():
        return
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.chown(path, *user, follow_symlinks=False)


def make_mount_points(job: StepJob) -> list[Path]:
    """Mount points of file inputs, made here, not by Docker, which would make them root-owned
    inside the working directory: what was made, deepest first (for `remove_mount_points`)."""
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
    made.sort(key=lambda p: len(p.parts), reverse=True)
    return made


def remove_mount_points(made: list[Path]) -> None:
    """Remove the empty ones (the step may have written beside an input); never through a
    link the step put in their place."""
    for path in made:
        with contextlib.suppress(OSError):
            st = path.lstat()
            if os.path.isdir(path) and not path.is_symlink():
                path.rmdir()
            elif path.is_file() and not path.is_symlink() and st.st_size == 0:
                path.unlink()


def make_box(job: StepJob, user: tuple[int, int], job_text: str) -> Path:
    """A fresh box for stepmain's container, holding its job file, writable by `user`."""
    box = job.dir / BOX
    safefs.remove_tree(box)  # a former attempt's
    box.mkdir(mode=0o755)
    (box / JOB_FILE).write_text(job_text, encoding="utf-8")
    hand_over([box, box / JOB_FILE], user)
    return box


def collect_box(job: StepJob, owner: tuple[int, int]) -> None:
    """Copy the executed notebook and the kernel's log the container wrote in its box into
    the step's run directory, then drop the box. A link or anything but a file in place of
    the notebook fails the step; in place of the log, the log is not kept."""
    box = job.dir / BOX
    try:
        # in the box under the names they have in the step's directory (the job file says so)
        for target, label in ((job.kernel_log, "its kernel log"),
                              (job.output, f"its executed notebook {job.output.name}")):
            try:
                data = safefs.read_file(box, target.name, label=label, why=RECORD_WHY,
                                        limit=RECORD_LIMIT)
            except safefs.Refused as err:
                if target == job.kernel_log:
                    job.log(f"{target.name} not kept: {err}")
                    continue
                raise StepFailed(f"step `{job.step.name}`: {err}", step=job.step.name,
                                 cause="unsafe-record") from None
            if data is None:
                continue
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            if owner != runner_ids():
                os.chown(target, *owner)
    finally:
        safefs.remove_tree(box)


def open_dirs(paths: list[Path]) -> list[int]:
    """The directories as fds (those still there and no link), for `settle` to work on even
    once a next attempt has made new ones at the same paths."""
    fds = []
    for path in paths:
        with contextlib.suppress(OSError):
            fds.append(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW))
    return fds


def settle(fds: list[int], owner: tuple[int, int] | None) -> None:
    """safefs.settle each directory (handed back to `owner` when given), then close it."""
    for fd in fds:
        try:
            safefs.settle(fd, owner)
        except (OSError, safefs.Refused):
            pass  # publishing refuses a deeper output in one line; the rest is settled
        finally:
            os.close(fd)


def remove(container, ask_exit, files, settle_dirs) -> None:
    """Remove the step's container (daemon.remove_quietly: its kernel asked to exit first),
    then settle what it wrote."""
    if container is not None:
        remove_quietly(container, ask_exit, files)
    elif files is not None:
        files.remove()
    settle_dirs()


def engine_limits(client, memory: int | None | bool, pids: int | None) -> Limits:
    """The limits of a step that sets none: `memory` True means the default for this engine's
    memory (the daemon's machine, which may not be this one), None no cap."""
    info = client.info() if memory is True or pids is None else {}
    if memory is True:
        memory = default_memory(int(info.get("MemTotal") or
                                    os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")))
    return Limits(memory=memory, pids=pids or default_pids(int(info.get("NCPU") or
                                                                os.cpu_count() or 1)))
