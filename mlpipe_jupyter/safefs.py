"""Reading what a step left in a directory the step could write, without following a symlink out
of it.

A step can put a symlink anywhere it can write: its work dir, its outputs dir, the box where
papermill in its container writes the executed notebook. The runner runs on the host, where
such a link resolves to a host file: through one, publishing an output would read the host's
/etc/shadow into the artifact store. Everything here works relative to an open directory
(openat) and opens each path component with O_NOFOLLOW, so a link is only ever seen as a link:
it is refused, or (inside a directory output, pointing inside it) copied as the link itself.
What is copied goes into a directory only the runner writes; a symlink copied there is checked
by resolving it in that copy, where nothing can change it meanwhile.

`Refused` says what was found, as the end of a sentence that starts with what was being read
(`output `data/``): the caller makes it one line naming the step.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1 << 20
KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device",
         stat.S_IFBLK: "a device"}
# How deep a directory output may nest (levels below it): deeper is refused, in one line,
# rather than walked (a tree a step made 100,000 levels deep would exhaust the stack, the open
# files or PATH_MAX of whatever walks it next).
MAX_DEPTH = 256
PUBLISHED = "an output is published as itself, never through a link"


class Refused(Exception):
    """A symlink, or something not a file or directory, where the runner was to read."""


def _target(name: str, dir_fd: int) -> str:
    with contextlib.suppress(OSError):
        return repr(os.readlink(name, dir_fd=dir_fd))
    return "(gone)"


def _open_at(name: str, dir_fd: int, seen: os.stat_result) -> int:
    """Open the entry `seen` (lstat'd) as it is: ELOOP if it became a link meanwhile; an OSError
    if it became another file."""
    fd = os.open(name, _DIR if stat.S_ISDIR(seen.st_mode) else _FILE, dir_fd=dir_fd)
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino):
        os.close(fd)
        raise OSError(errno.ESTALE, f"{name} changed while it was read")
    return fd


def open_beneath(root: Path, rel: str, *, label: str, why: str = PUBLISHED
                 ) -> tuple[int, os.stat_result]:
    """(fd, stat) of `rel` under the directory `root`, a file or a directory, reached without
    going through a symlink. FileNotFoundError when it is not there."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused(f"{label} climbs out of its directory")
    fd = os.open(root, _DIR)
    try:
        for i, part in enumerate(parts):
            seen = os.stat(part, dir_fd=fd, follow_symlinks=False)
            last = i == len(parts) - 1
            if stat.S_ISLNK(seen.st_mode):
                target = _target(part, fd)
                if last:
                    raise Refused(f"{label} is a symlink (to {target}); {why}")
                raise Refused(f"{label} goes through a symlink: `{'/'.join(parts[:i + 1])}` -> "
                              f"{target}")
            if not last and not stat.S_ISDIR(seen.st_mode):
                raise Refused(f"{label}: `{'/'.join(parts[:i + 1])}` is not a directory")
            if last and not (stat.S_ISDIR(seen.st_mode) or stat.S_ISREG(seen.st_mode)):
                raise Refused(f"{label} is {KINDS.get(stat.S_IFMT(seen.st_mode), 'not a file')}"
                              ", neither a file nor a directory")
            try:
                nxt = _open_at(part, fd, seen)
            except OSError as err:
                if err.errno != errno.ELOOP:
                    raise
                raise Refused(f"{label} is a symlink (to {_target(part, fd)}); {why}") from None
            os.close(fd)
            fd = nxt
        return fd, os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise


def copy_fd(src: int, dest: Path) -> None:
    """The open file `src` into a new file `dest`."""
    out = os.open(dest, _NEW, 0o644)
    try:
        while True:
            try:
                sent = os.sendfile(out, src, None, CHUNK)
            except OSError as err:  # a file system sendfile cannot read from
                if err.errno not in (errno.EINVAL, errno.ENOSYS):
                    raise
                sent = os.write(out, os.read(src, CHUNK))
            if not sent:
                break
    finally:
        os.close(out)


def copy_out(root: Path, rel: str, dest: Path, *, label: str, shown: str,
             links: bool) -> str:
    """Copy the file or directory `rel` under `root` to `dest` (which must not exist): "file" or
    "directory". Inside a directory, symlinks are copied as links when `links` (the caller
    checks them with `links_out_of`), else refused; `shown` prefixes paths in messages."""
    fd, st = open_beneath(root, rel, label=label)
    try:
        if stat.S_ISREG(st.st_mode):
            copy_fd(fd, dest)
            return "file"
        _copy_tree(fd, dest, shown=shown, label=label, links=links)
        return "directory"
    finally:
        os.close(fd)


def _too_deep(label: str) -> Refused:
    return Refused(f"{label} is nested deeper than {MAX_DEPTH} levels")


def _copy_tree(top_fd: int, dest: Path, *, shown: str, label: str, links: bool) -> None:
    """Copy the directory open as `top_fd` to `dest`, depth first with an explicit stack (one
    open directory a level, at most MAX_DEPTH levels below the top: Refused deeper)."""
    os.mkdir(dest, 0o755)
    stack: list[tuple[int, Path, str, list[str]]] = [(top_fd, dest, shown, _names(top_fd))]
    try:
        while stack:
            dir_fd, into, prefix, names = stack[-1]
            if not names:
                stack.pop()
                if dir_fd != top_fd:
                    os.close(dir_fd)
                continue
            name = names.pop()
            seen = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            path = f"{prefix}{name}"
            if stat.S_ISLNK(seen.st_mode):
                if not links:
                    raise Refused(f"{label} holds a symlink: `{path}` -> {_target(name, dir_fd)}")
                os.symlink(os.readlink(name, dir_fd=dir_fd), into / name)
                continue
            if not (stat.S_ISDIR(seen.st_mode) or stat.S_ISREG(seen.st_mode)):
                raise Refused(f"{label} holds "
                              f"{KINDS.get(stat.S_IFMT(seen.st_mode), 'a special file')}"
                              f": `{path}`; only files, directories and links are published")
            if stat.S_ISDIR(seen.st_mode) and len(stack) > MAX_DEPTH:
                raise _too_deep(label)
            try:
                fd = _open_at(name, dir_fd, seen)
            except OSError as err:
                if err.errno != errno.ELOOP:
                    raise
                raise Refused(f"{label} holds a symlink: `{path}` -> {_target(name, dir_fd)}"
                              ) from None
            if not stat.S_ISDIR(seen.st_mode):
                try:
                    copy_fd(fd, into / name)
                finally:
                    os.close(fd)
                continue
            try:
                os.mkdir(into / name, 0o755)
                listed = _names(fd)
            except BaseException:
                os.close(fd)
                raise
            stack.append((fd, into / name, f"{path}/", listed))
    finally:
        for dir_fd, *_ in stack:
            if dir_fd != top_fd:
                os.close(dir_fd)


def _names(dir_fd: int) -> list[str]:
    """The names in a directory, in reverse order (popped from the end: sorted order)."""
    with os.scandir(dir_fd) as entries:
        return sorted((entry.name for entry in entries), reverse=True)


def walk(root: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk(root) top-down, without recursion (os.walk recurses a frame a level before
    Python 3.12) and never following a link: (dirpath, dirnames, filenames), links among the
    filenames. Only for trees the runner wrote (paths, not handles); other errors raise."""
    stack = [os.fspath(root)]
    while stack:
        top = stack.pop()
        dirs, files = [], []
        try:
            with os.scandir(top) as entries:
                for entry in entries:
                    (dirs if entry.is_dir(follow_symlinks=False) else files).append(entry.name)
        except (NotADirectoryError, FileNotFoundError):
            continue  # a file, or nothing: nothing under it (as os.walk)
        yield top, dirs, files
        stack += [os.path.join(top, d) for d in sorted(dirs, reverse=True)]


def links_out_of(copy: Path, *, label: str, shown: str) -> None:
    """Refuse the first symlink under `copy` (a directory only the runner writes) that resolves
    outside it: absolute, climbing out, or through a chain of links."""
    top = os.path.realpath(copy)
    for dirpath, dirnames, filenames in walk(copy):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                continue
            real = os.path.realpath(path)
            if os.path.commonpath([top, real]) != top:
                rel = os.path.relpath(path, copy).replace(os.sep, "/")
                raise Refused(f"{label} holds a symlink out of it: `{shown}{rel}` -> "
                              f"{os.readlink(path)!r}")


def read_file(root: Path, name: str, *, label: str, why: str, limit: int) -> bytes | None:
    """The bytes of the regular file `name` in `root` (at most `limit`), None when absent."""
    try:
        fd, st = open_beneath(root, name, label=label, why=why)
    except FileNotFoundError:
        return None
    try:
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{label} is a directory, not a file")
        if st.st_size > limit:
            raise Refused(f"{label} is larger than {limit >> 20} MiB")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(limit)
    finally:
        os.close(fd)


def settle(dir_fd: int, owner: tuple[int, int] | None) -> None:
    """After a step: no setuid or setgid bit left on anything in the directory open as `dir_fd`
    (and, with `owner`, everything in it handed to that uid:gid). Top-down and by fd: a
    directory changes owner before it is listed, so a step still running cannot add to it
    afterwards; a link is changed as itself and never followed. Iterative, one open directory
    a level: nothing deeper than MAX_DEPTH levels is settled (Refused once the rest is)."""
    def fix(name: str | None, parent: int) -> None:
        kw = {"dir_fd": parent, "follow_symlinks": False} if name is not None else {}
        target = name if name is not None else parent
        with contextlib.suppress(OSError, ValueError, NotImplementedError):
            st = os.stat(target, **kw)
            if owner is not None and (st.st_uid, st.st_gid) != owner:
                os.chown(target, *owner, **kw)  # for a file, clears its setuid bits too
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                # a link raises (never followed): it carries no mode of its own anyway
                os.chmod(target, stat.S_IMODE(st.st_mode) & ~0o6000, **kw)

    fix(None, dir_fd)
    stack = [(dir_fd, _names(dir_fd))]
    deep = False
    try:
        while stack:
            fd, names = stack[-1]
            if not names:
                stack.pop()
                if fd != dir_fd:
                    os.close(fd)
                continue
            name = names.pop()
            fix(name, fd)
            try:
                seen = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISDIR(seen.st_mode):
                    continue
                if len(stack) > MAX_DEPTH:
                    deep = True
                    continue
                sub = _open_at(name, fd, seen)
            except OSError:
                continue  # gone, or a link now: nothing of it is followed
            try:
                listed = _names(sub)
            except OSError:
                os.close(sub)
                continue
            stack.append((sub, listed))
    finally:
        for fd, _ in stack:
            if fd != dir_fd:
                os.close(fd)
    if deep:
        raise _too_deep("a directory a step wrote")


def dangling_links(published: Path, item: str, *, label: str) -> None:
    """Refuse a published directory output holding a symlink that resolves to nothing (a loop,
    `a` -> `b` -> `a`, or a missing target): every step reading it, and latest/, would fail on
    it. Checked in the published copy, which only the runner writes (links out of it were
    refused already); what was published stays unreferenced."""
    for dirpath, dirnames, filenames in walk(published):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                continue
            try:
                os.stat(path)
            except OSError as err:
                what = "a symlink loop" if err.errno == errno.ELOOP else "a symlink to nothing"
                rel = os.path.relpath(path, published).replace(os.sep, "/")
                raise Refused(f"{label} holds {what}: `{item.rstrip('/')}/{rel}` -> "
                              f"{os.readlink(path)!r}; a link in an output must lead to a file "
                              "or directory inside it") from None


def remove_tree(path: Path) -> None:
    """Remove a directory a step could write, whatever it holds: shutil.rmtree follows no link
    but recurses once per level (a RecursionError on a tree ~1,000 levels deep, which a step
    can make), so such a tree goes to `rm -rf`, which neither recurses nor follows links."""
    import shutil
    import subprocess

    try:
        shutil.rmtree(path, ignore_errors=True)
    except RecursionError:
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], check=False,
                       stdin=subprocess.DEVNULL, capture_output=True)
