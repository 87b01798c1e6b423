"""Run history in SQLite (WAL): runs and their steps, with states, timings, errors and the
cache keys that let a later run reuse a step. Also a RunListener, so a run records itself.

`RunStore(path)` is a runner's (or a tool's) store: created when missing, older ones get the
new columns. `RunStore(path, readonly=True)` is a reader's (`mlpipe runs`, `%pipeline runs`): it
writes nothing, deletes nothing and leaves no file behind, so it also works on a read-only
directory. Failing the runs of runners that died is an explicit step (reaper.py), never a
side effect of opening.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import NotFound
from ..home import Home
from ..model.states import StepState, is_final
from .events import RunListener
from .processes import Owner
from .storecheck import (
    StoreDamaged,
    StoreUnwritable,
    create_whole,
    db_timeout,
    guard,
    guarded,
    header_problem,
    stale,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, notebook TEXT, pipeline TEXT, state TEXT NOT NULL, reason TEXT,
  started REAL, finished REAL, params TEXT, executor TEXT, host TEXT, pid INTEGER,
  pid_start TEXT
);
CREATE TABLE IF NOT EXISTS steps (
  run_id TEXT NOT NULL REFERENCES runs(id), name TEXT NOT NULL, position INTEGER,
  state TEXT NOT NULL, reason TEXT, started REAL, finished REAL, error TEXT, attempt INTEGER,
  cache_key TEXT, key_parts TEXT, reused_from TEXT, outputs TEXT,
  PRIMARY KEY (run_id, name)
);
CREATE INDEX IF NOT EXISTS steps_by_key ON steps(name, cache_key, state);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs(started);
"""
# Columns added after the first release: added to an older db when it is opened (ADD COLUMN is
# instant in SQLite and older mlpipe versions ignore columns they do not know).
# runs.defaults: the pipeline's parameter defaults (JSON), to tell the -p changes from them;
# steps.reasons: every reason a step ran or was reused (JSON list; `reason` is the short form
# a display shows, and a failure's message once it failed).
# runs.experiment, runs.source (cli|kernel|rest|schedule), runs.pipeline_version: what the
# pipeline service files a run under and who started it (None for runs recorded before).
# runs.heartbeat, runs.boot_id: when the runner last said it is alive, and the boot it runs in
# (storecheck.py), so a runner on another host or in another namespace is judged too.
# steps.fanout: a fan-out step's mini-batch counts and failures (JSON, run/foreach.py's record;
# None for other steps).
ADDED_COLUMNS = {"runs": {"defaults": "TEXT", "experiment": "TEXT", "source": "TEXT",
                          "pipeline_version": "INTEGER", "heartbeat": "REAL", "boot_id": "TEXT"},
                 "steps": {"reasons": "TEXT", "fanout": "TEXT"}}


OK_STATES = tuple(s for s in StepState if s.is_ok)  # a result a later run can reuse


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"


def changed_params(params: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a run whose value is not the pipeline's default, in their order."""
    return {k: v for k, v in params.items() if k not in defaults or defaults[k] != v}


def _get(row: sqlite3.Row, column: str) -> Any:
    """A column of a row; None when the store predates it (a reader adds no columns)."""
    try:
        return row[column]
    except IndexError:
        return None


def _reasons(step: sqlite3.Row) -> list[str]:
    if (reasons := _get(step, "reasons")) is not None:
        return json.loads(reasons)
    # recorded before the list was: the short reason is all there is (not a failure's message)
    return [step["reason"]] if step["reason"] and not step["error"] else []


def _fanout(step: sqlite3.Row) -> dict[str, Any]:
    """A fan-out step's `batches` (total, succeeded, failed, cached) and `failures` (each
    with its item range, exception, line and traceback); nothing for other steps."""
    if (fanout := _get(step, "fanout")) is None:
        return {}
    record = json.loads(fanout)
    return {"batches": record["batches"], "failures": record["failures"]}


def failed_batches(step: sqlite3.Row) -> int:
    """How many mini-batches of a fan-out step failed within its --max-failures (0 for any
    other step): its outputs lack their items, so it is not reused whole."""
    fanout = _get(step, "fanout")
    return 0 if fanout is None else json.loads(fanout)["batches"]["failed"]


def reused_fanout(step: sqlite3.Row) -> dict[str, Any] | None:
    """The fan-out record of a run that reuses `step` whole: every mini-batch reused, none
    failed (a step with failed batches is never reused whole); None for other steps."""
    if (fanout := _get(step, "fanout")) is None:
        return None
    total = json.loads(fanout)["batches"]["total"]
    return {"batches": {"total": total, "succeeded": total, "failed": 0, "cached": total},
            "failures": []}


def _setup(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)


class RunStore(RunListener):
    """Opening reads (and, unless `readonly`, creates a missing store or adds the columns an
    older one lacks); runs of dead runners are failed by an explicit `recover_interrupted()`
    (or `recover=True`). A damaged file is StoreDamaged, a failed write StoreUnwritable
    (storecheck.py), a write to a `readonly` store included."""

    essential = True  # events.Broadcaster: a run whose history cannot be written stops

    def __init__(self, path: Path, *, recover: bool = False, readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        if (why := header_problem(self.path)) is not None:
            raise StoreDamaged(self.path, why)
        if readonly:
            self._open_for_reading()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        create_whole(self.path, _setup)
        try:
            self._open(str(self.path))
        except StoreUnwritable:  # a read-only mount, say: read it as it is; writes fail
            self._open(self._uri(immutable=True), migrate=False)
        if recover:
            self.recover_interrupted()

    def _uri(self, *, immutable: bool) -> str:
        return (f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
                + ("&immutable=1" if immutable else ""))

    def _open_for_reading(self) -> None:
        if not self.path.exists():  # nothing recorded yet: an empty store, in memory
            self._open(":memory:")
        elif not all(Path(f"{self.path}{end}").exists() for end in ("-wal", "-shm")):
            # no writer has it open: the file alone (read-only SQLite would leave a -wal and
            # a -shm beside it)
            self._open(self._uri(immutable=True), migrate=False)
        else:  # a writer's WAL holds what is not in the file yet: read through it
            try:
                self._open(self._uri(immutable=False), migrate=False)
            except StoreUnwritable:  # its -shm cannot be opened here (another user's)
                self._open(self._uri(immutable=True), migrate=False)
        self._db.execute("PRAGMA query_only=ON")  # a write is StoreUnwritable, even in memory

    def _open(self, where: str, *, migrate: bool = True) -> None:
        with guard(self.path):
            self._db = sqlite3.connect(where, uri=where.startswith("file:"),
                                       check_same_thread=False, timeout=db_timeout(),
                                       isolation_level=None)
        try:
            with guard(self.path, self._db):
                self._db.row_factory = sqlite3.Row
                tables = {r[0] for r in self._db.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'")}
                if "runs" not in tables and where != ":memory:":
                    raise StoreDamaged(self.path, "no runs table: not a run store")
                if migrate:
                    self._db.execute("PRAGMA synchronous=NORMAL")
                    self._db.executescript(SCHEMA)
                    self._add_columns()
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _add_columns(self) -> None:
        with self._lock:
            for table, columns in ADDED_COLUMNS.items():
                have = {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns.items():
                    if name in have:
                        continue
                    try:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                    except sqlite3.OperationalError as err:  # another process added it first
                        if "duplicate column" not in str(err):
                            raise

    @guarded
    def _write(self, sql: str, args: tuple = ()) -> None:
        with self._lock:
            self._db.execute(sql, args)

    def beat(self, run_id: str) -> None:
        """The runner of `run_id` is alive (storecheck.Heartbeat calls this every few s)."""
        self._write("UPDATE runs SET heartbeat=? WHERE id=?", (time.time(), run_id))

    @guarded
    def interrupted(self) -> dict[str, str]:
        """Runs still `running` whose runner is gone: {run id: reason}. On this host and boot
        by its pid and start time; anywhere by a heartbeat older than the timeout."""
        now = time.time()
        with self._lock:
            rows = self._db.execute("SELECT * FROM runs WHERE state IN (?,?)",
                                    (StepState.QUEUED, StepState.RUNNING)).fetchall()
        dead = {}
        for r in rows:
            owner = Owner(r["host"], r["pid"], r["pid_start"], _get(r, "boot_id"))
            if owner.alive() is False:  # its process is gone, or its machine restarted since
                dead[r["id"]] = "interrupted"
            elif stale(beat := _get(r, "heartbeat"), now):
                dead[r["id"]] = (f"interrupted (no heartbeat from its runner on {r['host']} "
                                 f"for {now - beat:.0f} s)")
        return dead

    def recover_interrupted(self) -> list[str]:
        """Runs left `running` by a runner that died are failed with reason `interrupted`."""
        dead = self.interrupted()
        for run_id, reason in dead.items():
            self.mark_failed(run_id, reason)
        return list(dead)

    @guarded
    def mark_failed(self, run_id: str, reason: str, *, wait: float | None = None) -> None:
        """A run whose runner is gone: its running steps failed, queued ones skipped. `wait`:
        seconds to wait for another process's lock, when not the store's timeout."""
        now = time.time()
        with self._lock:
            if wait is not None:
                self._db.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
            self._db.execute("BEGIN")
            self._db.execute(
                "UPDATE steps SET state=?, reason=?, finished=? WHERE run_id=? AND state=?",
                (StepState.FAILED, reason, now, run_id, StepState.RUNNING))
            self._db.execute(
                "UPDATE steps SET state=?, reason='run interrupted' WHERE run_id=? AND state=?",
                (StepState.SKIPPED, run_id, StepState.QUEUED))
            self._db.execute("UPDATE runs SET state=?, reason=?, finished=? WHERE id=?",
                             (StepState.FAILED, reason, now, run_id))
            self._db.execute("COMMIT")
        # what it was publishing, half-copied (its store is in the home beside this file)
        shutil.rmtree(Home(self.path.parent).staging(run_id), ignore_errors=True)

    # -- RunListener -------------------------------------------------------------------------
    @guarded
    def on_run_started(self, *, run_id, notebook, params, steps, executor, started,
                       defaults=None, experiment=None, source=None, pipeline=None,
                       pipeline_version=None, **_) -> None:
        owner = Owner.this()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO runs (id, notebook, pipeline, state, started, params, executor, "
                "host, pid, pid_start, defaults, experiment, source, pipeline_version, "
                "heartbeat, boot_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, notebook, pipeline or Path(notebook).stem, StepState.RUNNING, started,
                 json.dumps(params), executor, owner.host, owner.pid, owner.start,
                 None if defaults is None else json.dumps(defaults), experiment, source,
                 pipeline_version, time.time(), owner.boot))
            self._db.executemany(
                "INSERT INTO steps (run_id, name, position, state) VALUES (?,?,?,?)",
                [(run_id, name, i, StepState.QUEUED) for i, name in enumerate(steps)])
            self._db.execute("COMMIT")

    def on_step_state(self, *, run_id, step, state, at, reason=None, error=None, attempt=1,
                      cache_key=None, reused_from=None, outputs=None, key_parts=None,
                      reasons=None, fanout=None, **_) -> None:
        sets = ["state=?", "reason=?", "attempt=?"]
        args: list[Any] = [state, reason, attempt]
        if state == StepState.RUNNING:
            sets += ["started=COALESCE(started, ?)"]
            args.append(at)
        if is_final(state):
            sets += ["finished=?", "started=COALESCE(started, ?)"]
            args += [at, at]
        for col, value in (("error", error), ("cache_key", cache_key), ("key_parts", key_parts),
                           ("reused_from", reused_from), ("outputs", outputs),
                           ("reasons", reasons), ("fanout", fanout)):
            if value is not None:
                sets.append(f"{col}=?")
                args.append(value if isinstance(value, str) else json.dumps(value))
        self._write(f"UPDATE steps SET {', '.join(sets)} WHERE run_id=? AND name=?",
                    (*args, run_id, step))

    def on_run_finished(self, *, run_id, state, at, reason=None, **_) -> None:
        self._write("UPDATE runs SET state=?, finished=?, reason=? WHERE id=?",
                    (state, at, reason, run_id))

    # -- queries -----------------------------------------------------------------------------
    @guarded
    def find_reusable(self, step: str, cache_key: str) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(
                "SELECT * FROM steps WHERE name=? AND cache_key=? "
                "AND state IN (?,?) ORDER BY finished DESC LIMIT 1",
                (step, cache_key, *OK_STATES)).fetchone()

    @guarded
    def steps_with_results(self, names: Iterable[str]) -> set[str]:
        """Of these steps, those some earlier run (of any notebook) succeeded or reused,
        whatever their key: a step with none can be reused by no run."""
        names = list(names)
        if not names:
            return set()
        with self._lock:
            rows = self._db.execute(
                f"SELECT DISTINCT name FROM steps WHERE name IN ({','.join('?' * len(names))}) "
                "AND state IN (?,?)", (*names, *OK_STATES)).fetchall()
        return {r["name"] for r in rows}

    @guarded
    def last_key_parts(self, notebook: str, step: str) -> dict | None:
        """The key parts of this step's newest run that got as far as computing them."""
        with self._lock:
            row = self._db.execute(
                "SELECT s.key_parts FROM steps s JOIN runs r ON r.id = s.run_id WHERE "
                "r.notebook=? AND s.name=? AND s.key_parts IS NOT NULL "
                "AND s.state IN (?,?) ORDER BY s.finished DESC LIMIT 1",
                (notebook, step, *OK_STATES)).fetchone()
        return json.loads(row["key_parts"]) if row else None

    @guarded
    def runs(self, limit: int = 20, notebook: str | None = None, **where: str | None
             ) -> list[dict]:
        """Newest first; `where`: equality filters on pipeline, experiment, state, source."""
        filters = {"notebook": notebook, **where}
        unknown = set(filters) - {"notebook", "pipeline", "experiment", "state", "source"}
        if unknown:
            raise TypeError(f"unknown filters {sorted(unknown)}")
        used = {k: v for k, v in filters.items() if v is not None}
        if not set(used) <= self._columns("runs"):  # a reader of an older store: none has it
            return []
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(f"{k}=?" for k in used)
                                      if used else "")
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY started DESC, id DESC LIMIT ?",
                                    (*used.values(), limit)).fetchall()
            return [self._run_dict(r) for r in rows]

    @guarded
    def run(self, run_id: str) -> dict:
        with self._lock:
            row = self._db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                row = self._db.execute("SELECT * FROM runs WHERE id LIKE ? ORDER BY started "
                                       "DESC LIMIT 2", (run_id + "%",)).fetchall()
                if len(row) != 1:
                    raise NotFound(f"no run `{run_id}` in {self.path}", cause="run")
                row = row[0]
            return self._run_dict(row)

    def _columns(self, table: str) -> set[str]:
        with self._lock:
            return {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}

    def _run_dict(self, row: sqlite3.Row) -> dict:
        try:
            return self._decode_run(row)
        except ValueError as err:  # a record's JSON garbled: the store is damaged, say where
            raise StoreDamaged(self.path, f"run {row['id']}'s record cannot be read: {err}") \
                from None

    def _decode_run(self, row: sqlite3.Row) -> dict:
        steps = self._db.execute("SELECT * FROM steps WHERE run_id=? ORDER BY position",
                                 (row["id"],)).fetchall()
        params = json.loads(row["params"] or "{}")
        defaults = json.loads(row["defaults"]) if _get(row, "defaults") is not None else None
        return {
            "id": row["id"], "notebook": row["notebook"], "state": row["state"],
            "reason": row["reason"], "started": _iso(row["started"]),
            "finished": _iso(row["finished"]), "params": params,
            # None for a run recorded before defaults were: nothing known to compare with
            "param_defaults": defaults,
            "params_changed": None if defaults is None else changed_params(params, defaults),
            "executor": row["executor"],
            "pipeline": row["pipeline"], "version": _get(row, "pipeline_version"),
            "experiment": _get(row, "experiment"), "source": _get(row, "source"),
            "steps": [{
                "name": s["name"], "state": s["state"], "reason": s["reason"],
                "reasons": _reasons(s),
                "started": _iso(s["started"]), "finished": _iso(s["finished"]),
                "error": json.loads(s["error"]) if s["error"] else None,
                "attempt": s["attempt"], "reused_from": s["reused_from"],
                "outputs": json.loads(s["outputs"]) if s["outputs"] else {},
                "duration": (s["finished"] - s["started"]
                             if s["finished"] is not None and s["started"] is not None else None),
                **_fanout(s),
            } for s in steps],
        }
