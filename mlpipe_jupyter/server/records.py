"""Run records (a step's `step.ipynb` and executed `output.ipynb`) as read-only contents models.

Records live under `.mlpipe/`, which jupyter_server hides by default, so the contents API
cannot open them. This module serves exactly those files and nothing else: the path must name
`<home>/runs/<run>/<step>/{step,output}.ipynb` inside the server's root, where `<home>` is a
run store: its `mlpipe.db` is a SQLite database with mlpipe's `runs` and `steps` tables, read
without ever being written (a file merely named `mlpipe.db` is not a store).

Everything is reached from the server's root through directory handles, one component at a
time, without following a symlink (`O_NOFOLLOW`): a link anywhere below the root, the record
itself included, is not served, wherever it points, and nothing can swap a component for a link
between a check and the read. The record must be a regular file: a FIFO, socket or device is
refused from its `lstat`, before anything opens it. Its size is checked against a cap before a
byte is read (`RecordTooLarge`, 413), and at most cap + 1 bytes are ever read.

The functions here block on the file system: the server calls them in a worker thread.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import json
import mimetypes
import os
import re
import sqlite3
import stat
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import MlpipeError, NotFound, UsageError
from ..home import Home

# the layout's names, from its owner: <home>/mlpipe.db, <home>/runs/<run>/<step>/<record>
_LAYOUT = Home(Path("home"))
_STEP = _LAYOUT.step_files("run", "step")
RECORD_FILES = (_STEP.output.name, _STEP.notebook.name)
RUNS_DIR = _LAYOUT.runs.name
STORE_FILE = _LAYOUT.db.name
# The largest record served with its content (bytes): the default of the server's
# `MlpipeServer.max_record_size`. A request holds about twice the record while it is checked and
# once while it is sent, so this bounds one request's memory.
MAX_RECORD_SIZE = 64 * 1024 * 1024
NOTEBOOK_MIMETYPE = mimetypes.types_map.get(".ipynb")
# Columns a run store's tables have had since the first release.
STORE_COLUMNS = {"runs": {"id", "state"}, "steps": {"run_id", "name", "state"}}
SQLITE_MAGIC = b"SQLite format 3\x00"
CHUNK = 1 << 20

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device",
          stat.S_IFBLK: "a device", stat.S_IFLNK: "a symlink", stat.S_IFDIR: "a directory"}


class RecordTooLarge(MlpipeError):
    """A record larger than the server's cap: not read, not served."""

    http_status = 413


@dataclass
class Record:
    """An open record file (`fd`, which the caller closes) and its `stat`."""

    path: str
    fd: int
    stat: os.stat_result

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def __enter__(self) -> Record:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def model(self) -> dict[str, Any]:
        """The contents-API model without content, marked read-only."""
        return {
            "name": PurePosixPath(self.path).name, "path": self.path, "type": "notebook",
            "format": None, "mimetype": None, "content": None, "writable": False,
            "size": self.stat.st_size, "created": _iso(self.stat.st_ctime),
            "last_modified": _iso(self.stat.st_mtime), "hash": None, "hash_algorithm": None,
        }


def record_parts(path: str) -> tuple[list[str], list[str]]:
    """(home, `runs/<run>/<step>/<file>`) as path components, if `path` (relative to the server
    root, contents-style) can name a record."""
    if not path or path.startswith("/") or "\\" in path or "\0" in path or any(
            p in ("", ".", "..") for p in path.split("/")):
        raise UsageError(f"record path {path!r}: give a path relative to the server root, "
                         "without '..'", file=path)
    parts = path.split("/")
    if len(parts) < 5 or parts[-1] not in RECORD_FILES or parts[-4] != RUNS_DIR:
        raise NotFound(f"{path}: not a run record (<home>/runs/<run>/<step>/output.ipynb)",
                       file=path)
    return parts[:-4], parts[-4:]


def open_record(root: Path, path: str) -> Record:
    """Open the record `path` names under `root` (see the module's docstring for the rules).
    NotFound for anything that is not a record of a run store."""
    home, rest = record_parts(path)
    fds = [os.open(Path(root).resolve(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    try:
        for i, name in enumerate(home + rest[:-1]):
            fds.append(_subdir(fds[-1], name, path, "/".join((home + rest)[:i + 1])))
            if i == len(home) - 1:
                _check_store(fds[-1], path)
        return Record(path, *_open_file(fds[-1], rest[-1], path))
    finally:
        for fd in fds:
            os.close(fd)


def read_record(record: Record, limit: int = MAX_RECORD_SIZE) -> bytes:
    """The record's bytes, checked to be a JSON object in UTF-8 (what a browser can parse);
    RecordTooLarge, before a byte is read, when it is larger than `limit`."""
    raw = _read(record, limit)
    _check_json(record.path, raw)
    return raw


def _read(record: Record, limit: int) -> bytes:
    _check_size(record.path, record.stat.st_size, limit)
    chunks, total = [], 0
    while total <= limit:
        chunk = os.read(record.fd, min(CHUNK, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    _check_size(record.path, total, limit)  # it grew since it was stat'ed
    return b"".join(chunks)


def _check_size(path: str, size: int, limit: int) -> None:
    if size > limit:
        raise RecordTooLarge(f"{path}: the record is larger than this server serves "
                             f"({_mib(size)} > {_mib(limit)}; MlpipeServer.max_record_size)",
                             file=path, option="MlpipeServer.max_record_size")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


def _refuse(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _unreadable(path: str, exc: Exception) -> NotFound:
    reason = " ".join(str(exc).split())[:200]
    return NotFound(f"{path}: not a readable notebook ({reason})", file=path)


def _check_json(path: str, raw: bytes) -> None:
    """NotFound unless `raw` is a JSON object in UTF-8 without NaN or Infinity (what a browser
    parses), checked in about the record's size of memory instead of several times it: UTF-8
    decoded a chunk at a time; then the JSON parsed from a Latin-1 reading of the bytes (one
    byte a character, where UTF-8 text can take four; JSON's syntax is ASCII, so the bytes parse
    alike either way) with every object dropped as soon as it is parsed."""
    if not re.match(rb"[ \t\r\n]*\{", raw):
        raise NotFound(f"{path}: not a readable notebook (not a JSON object)", file=path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(raw)
    try:
        for start in range(0, len(view), CHUNK):
            decoder.decode(view[start:start + CHUNK])
        decoder.decode(b"", final=True)
        json.loads(raw.decode("latin-1"), object_pairs_hook=_drop, parse_constant=_refuse)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _unreadable(path, exc) from None


def _drop(pairs: list) -> None:
    return None


def _gone(path: str, what: str) -> NotFound:
    return NotFound(f"{path}: no such run record ({what})", file=path)


def _subdir(fd: int, name: str, path: str, where: str) -> int:
    """The directory `name` in the open directory `fd`, opened without following a link."""
    try:
        return os.open(name, _DIR, dir_fd=fd)
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise _gone(path, f"`{where}` does not exist") from None
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _gone(path, f"`{where}` is {_kind(fd, name)}, not a directory") from None
        raise _gone(path, f"`{where}`: {err.strerror}") from None


def _kind(dir_fd: int, name: str) -> str:
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return "gone"
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _open_file(dir_fd: int, name: str, path: str) -> tuple[int, os.stat_result]:
    """(fd, stat) of the regular file `name` in `dir_fd`: never a link, and never opened when
    it is anything but a regular file (opening a FIFO blocks, opening a device can act)."""
    try:
        seen = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise _gone(path, f"no `{name}`") from None
    if not stat.S_ISREG(seen.st_mode):
        raise _gone(path, f"`{name}` is {_KINDS.get(stat.S_IFMT(seen.st_mode), 'not a file')}"
                          ", not a regular file")
    try:
        try:
            fd = os.open(name, _FILE | os.O_NONBLOCK, dir_fd=dir_fd)
        except BlockingIOError:  # a lease another process holds: wait for it, as any reader
            fd = os.open(name, _FILE, dir_fd=dir_fd)
    except OSError as err:
        raise _gone(path, f"`{name}`: {err.strerror}") from None
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino) or not stat.S_ISREG(now.st_mode):
        os.close(fd)
        raise _gone(path, f"`{name}` changed while it was opened")
    return fd, now


def _check_store(home_fd: int, path: str) -> None:
    """NotFound unless the directory `home_fd` holds a run store: `mlpipe.db` a regular file
    (not a link) that SQLite opens read-only with mlpipe's tables, and a `runs/` directory."""
    fd, _ = _open_file(home_fd, STORE_FILE, path)
    try:
        if os.pread(fd, len(SQLITE_MAGIC), 0) != SQLITE_MAGIC:
            raise _gone(path, f"`{STORE_FILE}` beside `runs/` is not a run store")
        tables = _store_tables(home_fd, fd, path)
    except sqlite3.Error as err:
        raise _gone(path, f"`{STORE_FILE}` is not a run store ({err})") from None
    finally:
        os.close(fd)
    for table, columns in STORE_COLUMNS.items():
        if not columns <= tables.get(table, set()):
            raise _gone(path, f"`{STORE_FILE}` is not a run store (no mlpipe `{table}` table)")


def _store_tables(home_fd: int, db_fd: int, path: str) -> dict[str, set[str]]:
    """{table: columns} of the home's store (`db_fd`, the `mlpipe.db` _check_store opened
    without following a link), read without writing to it: `mode=ro`, and `immutable=1` when no
    writer has a WAL open (a read-only connection would otherwise leave `-wal` and `-shm` files
    behind it).

    SQLite opens files by name only. It is given `/proc/self/fd/<db_fd>`, which it resolves
    (as it does any symlink) to the name the kernel keeps for that open file: the checked file
    even if `mlpipe.db` was renamed away and a link put in its place. That name is checked to be
    the same file first (a deleted one is named `... (deleted)`, which anyone writing the
    directory could plant). Left open: a swap of that name between this check and SQLite's
    open, and the `-wal` beside it, which SQLite also finds by name."""
    proc = f"/proc/self/fd/{db_fd}"
    if os.path.exists(proc):
        named = os.readlink(proc)
        opened = os.fstat(db_fd)
        try:
            now = os.stat(named, follow_symlinks=False)
        except OSError:
            now = None
        if now is None or (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            raise _gone(path, f"`{STORE_FILE}` changed while it was opened")
        db = "file:" + urllib.parse.quote(proc)
    else:  # no /proc: the directory's path (macOS, BSD)
        db = "file:" + urllib.parse.quote(f"{_fd_path(home_fd)}/{STORE_FILE}")
    try:
        os.stat(f"{STORE_FILE}-wal", dir_fd=home_fd, follow_symlinks=False)
    except FileNotFoundError:
        return _tables(f"{db}?mode=ro&immutable=1")
    try:
        return _tables(f"{db}?mode=ro")
    except sqlite3.OperationalError:  # the writer's -shm cannot be opened here (not ours)
        return _tables(f"{db}?mode=ro&immutable=1")


def _tables(uri: str) -> dict[str, set[str]]:
    conn = sqlite3.connect(uri, uri=True, timeout=5)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")}
                for t in names if t in STORE_COLUMNS}
    finally:
        conn.close()


def _fd_path(fd: int) -> str:
    import fcntl

    getpath = getattr(fcntl, "F_GETPATH", None)
    if getpath is None:
        raise sqlite3.OperationalError("cannot name the store's directory")
    return os.fsdecode(fcntl.fcntl(fd, getpath, bytes(1024)).rstrip(b"\0"))


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, tz=timezone.utc).isoformat()
