"""Whether `mlpipe.db` can be trusted and written, said in one line.

- A file that is not a whole SQLite database (zero bytes, a garbled header, cut short inside a
  page, a page SQLite finds malformed) is StoreDamaged: one line naming the file and the
  command that sets it aside and rebuilds it (`mlpipe doctor`, doctor.py). A new store is
  created whole under another name and linked into place, so a zero-byte `mlpipe.db` is never a
  store being created: it is always damage, never "no runs yet".
- A write that fails (locked by another process for longer than MLPIPE_DB_TIMEOUT seconds, the
  disk full, the file or its directory read-only) is StoreUnwritable: the run that needed it
  stops (events.Broadcaster, runner.py), it is never dropped silently.
- A running run's runner beats: `runs.heartbeat` is updated every HEARTBEAT_EVERY seconds, so a
  run whose runner is on another host, or in another pid namespace, is judged by the age of its
  heartbeat (MLPIPE_HEARTBEAT_TIMEOUT seconds, default 60) and not only by its pid.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import MlpipeError

log = logging.getLogger("mlpipe_jupyter")

HEADER = b"SQLite format 3\x00"
HEARTBEAT_EVERY = 5.0


def db_timeout() -> float:
    """Seconds a write waits for another process's lock before the run stops."""
    return _env_seconds("MLPIPE_DB_TIMEOUT", 30.0)


def heartbeat_timeout() -> float:
    """Seconds without a heartbeat after which a running run counts as interrupted."""
    return _env_seconds("MLPIPE_HEARTBEAT_TIMEOUT", 60.0)


def heartbeat_every() -> float:
    return min(HEARTBEAT_EVERY, heartbeat_timeout() / 4)


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        return default
    return value if 0 < value < 1e6 else default


class StoreDamaged(MlpipeError):
    """mlpipe.db is not a whole SQLite database of runs."""

    http_status = 500

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path} is damaged ({why}): run `mlpipe doctor --home {path.parent}` "
                         "to set it aside and rebuild", file=str(path), cause="store-damaged")
        self.why = why


class StoreUnwritable(MlpipeError):
    """A write to mlpipe.db failed: the run that needed it cannot go on."""

    http_status = 503

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"run store {path} cannot be written: {why}", file=str(path),
                         cause="store-unwritable")


def header_problem(path: Path) -> str | None:
    """What is wrong with the start of the file at `path` (None: looks like a database)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(100)
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"unreadable: {err.strerror or err}"
    if size == 0:
        return "a zero-byte file: not a database"
    if not HEADER.startswith(head[:16]):
        return "garbled header: not an SQLite database"
    if len(head) < 100:
        return f"truncated to {size} bytes"
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    if page < 512 or page & (page - 1):
        return "garbled header: impossible page size"
    if size % page:
        return f"truncated: {size} bytes is not a whole number of {page}-byte pages"
    return None


def classify(err: sqlite3.Error, path: Path) -> MlpipeError:
    """An sqlite3 error as StoreDamaged or StoreUnwritable, in one line."""
    name = getattr(err, "sqlite_errorname", "") or ""
    text = str(err)
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text \
            or "not a database" in text:
        return StoreDamaged(path, text)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return StoreUnwritable(path, f"another process has held it locked for more than "
                                     f"{db_timeout():g} s (MLPIPE_DB_TIMEOUT)")
    if name.startswith("SQLITE_FULL") or "full" in text:
        return StoreUnwritable(path, "the disk is full")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")) \
            or "readonly" in text:
        return StoreUnwritable(path, f"read-only ({text}); it and its directory must be "
                                     "writable by you")
    return StoreUnwritable(path, text)


@contextlib.contextmanager
def guard(path: Path, db: sqlite3.Connection | None = None) -> Iterator[None]:
    """sqlite3 errors inside become one-line MlpipeErrors; an open transaction is rolled back."""
    try:
        yield
    except sqlite3.Error as err:
        if db is not None and db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise classify(err, path) from None


def guarded(method):
    """A RunStore method whose sqlite3 errors are StoreDamaged/StoreUnwritable."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with guard(self.path, self._db):
            return method(self, *args, **kwargs)
    return wrapper


def create_whole(path: Path, setup) -> None:
    """Create the database at `path` (unless it exists) so that it appears complete or not at
    all: `setup(connection)` runs on a file beside it, which is then linked into place."""
    if path.exists():
        return
    tmp = path.with_name(f".{path.name}.new-{os.getpid()}-{threading.get_ident()}")
    try:
        with guard(path):
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                setup(conn)
            finally:
                conn.close()
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process created it first: theirs is used
            pass
        except OSError as err:
            raise StoreUnwritable(path, err.strerror or str(err)) from None
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
            with contextlib.suppress(OSError):
                leftover.unlink()


class Heartbeat:
    """Calls `beat()` every few seconds from a daemon thread until `stop()`. A failed beat is
    logged (a store locked for a moment) and tried again at the next one."""

    def __init__(self, beat, every: float | None = None) -> None:
        self._beat = beat
        self._every = every or heartbeat_every()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlpipe-heartbeat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        warned = False
        while not self._stop.wait(self._every):
            try:
                self._beat()
                warned = False
            except MlpipeError as err:
                if not warned:
                    log.warning("heartbeat not recorded: %s", err)
                warned = True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(10)


def stale(heartbeat: float | None, now: float | None = None) -> bool:
    return heartbeat is not None and (now or time.time()) - heartbeat > heartbeat_timeout()


def os_error_line(err: OSError) -> str:
    """An OSError met while running (a full disk, a read-only directory) as one line."""
    import errno

    where = f" ({err.filename})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full{where}: free space and run again"
    if err.errno == errno.EROFS:
        return f"read-only file system{where}"
    return f"{err.strerror or err}{where}"
