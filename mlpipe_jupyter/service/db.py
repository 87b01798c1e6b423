"""The pipeline service's SQLite file: `<home>/service.db`, beside the run store `mlpipe.db`.

A separate file so the run store's schema and locking stay exactly what `mlpipe run` knows;
the service only reads `mlpipe.db` (through RunStore) for what a run did. Tables:
published pipelines and their versions, the run queue, schedules and their tick log. Every
write that must happen together (a tick and the run it queues) is one transaction here.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS pipelines (
  name TEXT PRIMARY KEY, description TEXT, default_version INTEGER,
  enabled INTEGER NOT NULL DEFAULT 1, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
  name TEXT NOT NULL REFERENCES pipelines(name), version INTEGER NOT NULL,
  digest TEXT NOT NULL, created REAL NOT NULL, notebook TEXT NOT NULL, source TEXT,
  parameters TEXT NOT NULL, steps TEXT NOT NULL, files TEXT NOT NULL, description TEXT,
  PRIMARY KEY (name, version), UNIQUE (name, digest)
);
CREATE TABLE IF NOT EXISTS queue (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, pipeline TEXT NOT NULL,
  version INTEGER NOT NULL, experiment TEXT, params TEXT NOT NULL, source TEXT NOT NULL,
  schedule_id INTEGER, idempotency_key TEXT UNIQUE, state TEXT NOT NULL,
  submitted REAL NOT NULL, started REAL, finished REAL, pid INTEGER, pid_start TEXT,
  reason TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queue_by_state ON queue(state, seq);
CREATE TABLE IF NOT EXISTS schedules (
  id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT NOT NULL, cron TEXT NOT NULL,
  timezone TEXT NOT NULL, experiment TEXT, params TEXT NOT NULL, catchup TEXT NOT NULL,
  overlap TEXT NOT NULL, enabled INTEGER NOT NULL, version INTEGER, created REAL NOT NULL,
  checked_until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ticks (
  id INTEGER PRIMARY KEY AUTOINCREMENT, schedule_id INTEGER NOT NULL,
  scheduled_for REAL NOT NULL, fired_at REAL NOT NULL, outcome TEXT NOT NULL, run_id TEXT,
  reason TEXT, UNIQUE (schedule_id, scheduled_for)
);
"""


class ServiceDB:
    """One connection, shared by threads under a lock; `transaction()` for grouped writes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30,
                                   isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): other processes wait for the lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def write(self, sql: str, args: tuple = ()) -> int:
        """Run one statement; the number of rows it changed."""
        with self._lock:
            return self._db.execute(sql, args).rowcount
