"""The run queue: submissions wait in SQLite (FIFO) and run each in its own process
(`python -m mlpipe_jupyter.service.worker`), at most `max_concurrent` at once.

A run's id is chosen at submit time and given to the runner (RunOptions.run_id), so the id a
`202` returns is the id of the run in the run store. What a run did is read from the run store;
the queue row only says where the run is in its life (queued, running, or how it ended) and
which process runs it (pid and start time, so a restarted service tells a live run process
from a reused pid). A process that ends without its run having finished makes the run `failed`
with the reason (its exit code or signal), never a ghost `running`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import NotFound
from ..events import FINAL
from ..home import Home
from ..reaper import reap
from ..runner import new_run_id
from ..store import RunStore, process_alive, process_start
from .db import ACTIVE, ServiceDB
from .errors import Conflict

log = logging.getLogger("mlpipe_jupyter.service")


def enqueue(c: sqlite3.Connection, *, pipeline: str, version: int, params: dict[str, Any],
            experiment: str | None, source: str, schedule_id: int | None = None,
            idempotency_key: str | None = None) -> str:
    """Insert a queued run inside the caller's transaction; its id."""
    run_id = new_run_id()
    c.execute("INSERT INTO queue (id, pipeline, version, experiment, params, source, "
              "schedule_id, idempotency_key, state, submitted) VALUES (?,?,?,?,?,?,?,?,?,?)",
              (run_id, pipeline, version, experiment, json.dumps(params), source, schedule_id,
               idempotency_key, "queued", time.time()))
    return run_id


class RunQueue:
    def __init__(self, db: ServiceDB, home: Home, *, max_concurrent: int = 2,
                 executor: str | None = None, python: str = sys.executable) -> None:
        self.db, self.home = db, home
        self.max_concurrent = max_concurrent
        self.executor = executor
        self.python = python
        self.children: dict[str, subprocess.Popen] = {}
        self.logs = home.root / "service" / "logs"
        self._store: RunStore | None = None

    @property
    def store(self) -> RunStore:
        if self._store is None:
            self._store = RunStore(self.home.db, recover=False)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # -- submitting --------------------------------------------------------------------------
    def submit(self, *, pipeline: str, version: int, params: dict[str, Any],
               experiment: str | None, source: str = "rest",
               idempotency_key: str | None = None) -> tuple[str, bool]:
        """(run id, True when queued now); a key seen before gives the first run's id."""
        with self.db.transaction() as c:
            if idempotency_key is not None:
                seen = c.execute("SELECT id, pipeline FROM queue WHERE idempotency_key=?",
                                 (idempotency_key,)).fetchone()
                if seen is not None:
                    if seen["pipeline"] != pipeline:
                        raise Conflict(f"Idempotency-Key {idempotency_key!r} was used for a run "
                                       f"of pipeline `{seen['pipeline']}`", cause="idempotency")
                    return seen["id"], False
            return enqueue(c, pipeline=pipeline, version=version, params=params,
                           experiment=experiment, source=source,
                           idempotency_key=idempotency_key), True

    def status(self, run_id: str) -> str:
        row = self.db.one("SELECT state FROM queue WHERE id=?", (run_id,))
        return row["state"] if row else "unknown"

    # -- the loop's work ---------------------------------------------------------------------
    def recover(self) -> None:
        """At start: runs whose process is gone are failed "interrupted"; live ones adopted;
        what dead runners left (runs of `mlpipe run`s too, containers, scratch) is removed."""
        reap(self.store)
        for row in self.db.all("SELECT * FROM queue WHERE state='running'"):
            if not process_alive(row["pid"], row["pid_start"]):
                self._ended(row, "interrupted (the service stopped while it ran)")

    def poll(self) -> None:
        """Reap run processes that ended, then start queued runs while there is room."""
        for row in self.db.all("SELECT * FROM queue WHERE state='running'"):
            child = self.children.get(row["id"])
            if child is not None:
                code = child.poll()
                if code is None:
                    continue
                self.children.pop(row["id"])
                self._ended(row, _exit_reason(code))
            elif not process_alive(row["pid"], row["pid_start"]):
                self._ended(row, "its run process is gone")
        running = self.db.one("SELECT COUNT(*) AS n FROM queue WHERE state='running'")["n"]
        for row in self.db.all("SELECT * FROM queue WHERE state='queued' ORDER BY seq LIMIT ?",
                               (max(0, self.max_concurrent - running),)):
            self._start(row)

    def _start(self, row: sqlite3.Row) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        argv = [self.python, "-m", "mlpipe_jupyter.service.worker", "--home",
                str(self.home.root), "--run-id", row["id"]]
        if self.executor:
            argv += ["--executor", self.executor]
        with open(self.logs / f"{row['id']}.log", "ab") as out:
            # its own session: a Ctrl-C at the service's terminal does not reach the run, and
            # the run outlives a service that dies (the next one adopts it)
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "MLPIPE_HOME": str(self.home.root)})
        self.children[row["id"]] = child
        changed = self.db.write(
            "UPDATE queue SET state='running', started=?, pid=?, pid_start=? "
            "WHERE id=? AND state='queued'",
            (time.time(), child.pid, process_start(child.pid), row["id"]))
        if not changed:  # cancelled between the SELECT and now
            child.send_signal(signal.SIGTERM)

    def _ended(self, row: sqlite3.Row, why: str) -> None:
        """The run process of `row` is gone: the queue row takes the run's final state."""
        try:
            run = self.store.run(row["id"])
        except NotFound:
            run = None
        if run is not None and run["state"] not in FINAL:
            self.store.mark_failed(row["id"], f"run process {why}")
            run = self.store.run(row["id"])
            # what its runner left: containers (a docker run), kernels' scratch
            reap(self.store, docker=run.get("executor") == "docker")
        if run is not None:
            state, reason = run["state"], run["reason"]
        elif row["cancel_requested"]:
            state, reason = "cancelled", "cancelled before it started"
        else:
            fresh = self.db.one("SELECT reason FROM queue WHERE id=?", (row["id"],))
            state, reason = "failed", (fresh["reason"] if fresh and fresh["reason"] else
                                       f"run process {why} before the run started")
        self.db.write("UPDATE queue SET state=?, reason=?, finished=? WHERE id=?",
                      (state, reason, time.time(), row["id"]))

    # -- cancelling --------------------------------------------------------------------------
    def cancel(self, run_id: str) -> str:
        """Cancel a queued run at once, or SIGTERM a running one (the worker cancels it)."""
        row = self.db.one("SELECT * FROM queue WHERE id=?", (run_id,))
        if row is None:
            self.store.run(run_id)  # NotFound when nobody knows it
            raise Conflict(f"run {run_id} was not started by the service; stop it where it "
                           "runs (Ctrl-C, or `kill` its mlpipe process)", cause="not-queued")
        self.db.write("UPDATE queue SET cancel_requested=1 WHERE id=?", (run_id,))
        if self.db.write("UPDATE queue SET state='cancelled', reason='cancelled before it "
                         "started', finished=? WHERE id=? AND state='queued'",
                         (time.time(), run_id)):
            return "cancelled"
        row = self.db.one("SELECT * FROM queue WHERE id=?", (run_id,))
        if row["state"] == "running" and process_alive(row["pid"], row["pid_start"]):
            os.kill(row["pid"], signal.SIGTERM)
            return "cancelling"
        return row["state"]

    # -- what the API shows ------------------------------------------------------------------
    def view(self, run_id: str) -> dict:
        """The `mlpipe show --json` shape, plus pipeline, version, experiment, source."""
        row = self.db.one("SELECT * FROM queue WHERE id=?", (run_id,))
        try:
            run = self.store.run(run_id)
        except NotFound:
            if row is None:
                raise
            return _queued_view(row)
        if row is not None:
            run["submitted"] = _iso(row["submitted"])
            if row["state"] == "running" and run["state"] in FINAL:
                run["state"] = "running"  # the process is still finishing up (latest/, logs)
        return run

    def views(self, *, pipeline: str | None = None, experiment: str | None = None,
              state: str | None = None, limit: int = 50) -> list[dict]:
        found = self.store.runs(limit=limit, pipeline=pipeline, experiment=experiment,
                                state=state)
        known = {r["id"] for r in found}
        sql, args = "SELECT * FROM queue WHERE 1=1", []  # runs not (yet) in the run store
        for column, value in (("pipeline", pipeline), ("experiment", experiment),
                              ("state", state)):
            if value is not None:
                sql += f" AND {column}=?"
                args.append(value)
        waiting = [_queued_view(r) for r in self.db.all(sql + " ORDER BY seq DESC LIMIT ?",
                                                        (*args, limit)) if r["id"] not in known]
        both = sorted(waiting + found, key=lambda r: r.get("submitted") or r["started"] or "",
                      reverse=True)
        return both[:limit]

    def active_of_schedule(self, schedule_id: int) -> list[str]:
        return [r["id"] for r in self.db.all(
            f"SELECT id FROM queue WHERE schedule_id=? AND state IN {ACTIVE}", (schedule_id,))]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"


def _queued_view(row: sqlite3.Row) -> dict:
    return {"id": row["id"], "notebook": None, "state": row["state"], "reason": row["reason"],
            "started": None, "finished": _iso(row["finished"]),
            "params": json.loads(row["params"]), "param_defaults": None, "params_changed": None,
            "executor": None, "pipeline": row["pipeline"], "version": row["version"],
            "experiment": row["experiment"], "source": row["source"], "steps": [],
            "submitted": _iso(row["submitted"])}


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def log_path(home: Home, run_id: str) -> Path:
    return home.root / "service" / "logs" / f"{run_id}.log"
