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
from enum import Enum
from pathlib import Path
from typing import Any

from ..errors import NotFound
from ..home import Home
from ..model.states import StepState, is_final
from ..run.processes import process_alive, process_start
from ..run.reaper import reap
from ..run.runner import new_run_id
from ..run.store import RunStore
from ..run.storecheck import os_error_line
from .db import ServiceDB
from .errors import Conflict
from .times import iso as _iso
from .times import restamp

log = logging.getLogger("mlpipe_jupyter.service")


class QueueState(str, Enum):
    """The state of a queue row whose run has not ended. Once it has, the row holds the run's
    final state (a StepState: succeeded, failed or cancelled)."""

    QUEUED = StepState.QUEUED.value
    STARTING = "starting"  # claimed, its process being started: still `queued` to a client
    RUNNING = StepState.RUNNING.value

    def __str__(self) -> str:
        return self.value


Q = QueueState
CANCELLED_EARLY = "cancelled before it started"


def enqueue(c: sqlite3.Connection, *, pipeline: str, version: int, params: dict[str, Any],
            experiment: str | None, source: str, schedule_id: int | None = None,
            idempotency_key: str | None = None) -> str:
    """Insert a queued run inside the caller's transaction; its id."""
    run_id = new_run_id()
    c.execute("INSERT INTO queue (id, pipeline, version, experiment, params, source, "
              "schedule_id, idempotency_key, state, submitted) VALUES (?,?,?,?,?,?,?,?,?,?)",
              (run_id, pipeline, version, experiment, json.dumps(params), source, schedule_id,
               idempotency_key, Q.QUEUED, time.time()))
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
        return _shown(row["state"]) if row else "unknown"

    # -- the loop's work ---------------------------------------------------------------------
    def recover(self) -> None:
        """At start: runs whose process is gone are failed "interrupted"; live ones adopted;
        what dead runners left (runs of `mlpipe run`s too, containers, scratch) is removed.
        A run left `starting` (the service stopped while starting it) is adopted when its
        worker claimed it and lives; failed when its run began; else queued again, its old
        claim void (a worker still booting with it runs nothing)."""
        reap(self.store)
        for row in self.db.all("SELECT * FROM queue WHERE state=?", (Q.STARTING,)):
            if process_alive(row["pid"], row["pid_start"]):
                self.db.write("UPDATE queue SET state=? WHERE id=? AND state=?",
                              (Q.RUNNING, row["id"], Q.STARTING))
                continue
            try:
                self.store.run(row["id"])
                began = True
            except NotFound:
                began = False
            if began or row["reason"]:
                self._ended(row, "was interrupted while starting (the service stopped)")
            elif row["cancel_requested"]:
                self.db.write("UPDATE queue SET state=?, reason=?, finished=? WHERE id=?",
                              (StepState.CANCELLED, CANCELLED_EARLY, time.time(), row["id"]))
            else:
                self.db.write("UPDATE queue SET state=?, started=NULL, pid=NULL, "
                              "pid_start=NULL WHERE id=? AND state=?",
                              (Q.QUEUED, row["id"], Q.STARTING))
        for row in self.db.all("SELECT * FROM queue WHERE state=?", (Q.RUNNING,)):
            if not process_alive(row["pid"], row["pid_start"]):
                self._ended(row, "interrupted (the service stopped while it ran)")

    def poll(self) -> None:
        """Reap run processes that ended, then start queued runs while there is room."""
        for row in self.db.all("SELECT * FROM queue WHERE state=?", (Q.RUNNING,)):
            child = self.children.get(row["id"])
            if child is not None:
                code = child.poll()
                if code is None:
                    continue
                self.children.pop(row["id"])
                self._ended(row, _exit_reason(code))
            elif not process_alive(row["pid"], row["pid_start"]):
                self._ended(row, "its run process is gone")
        running = self.db.one("SELECT COUNT(*) AS n FROM queue WHERE state IN (?,?)",
                              (Q.STARTING, Q.RUNNING))["n"]
        for row in self.db.all("SELECT * FROM queue WHERE state=? ORDER BY seq LIMIT ?",
                               (Q.QUEUED, max(0, self.max_concurrent - running))):
            self._start(row)

    def _start(self, row: sqlite3.Row) -> None:
        """Claim the row (`starting`, stamped with a claim the worker must show), only then
        start its process, then record the process and `running`. A service that dies in
        between leaves a `starting` row, which recover() settles; it never starts a second
        worker for the run (a worker whose claim is stale runs nothing)."""
        claim = time.time()
        if not self.db.write("UPDATE queue SET state=?, started=? WHERE id=? AND state=?",
                             (Q.STARTING, claim, row["id"], Q.QUEUED)):
            return  # cancelled between the SELECT and now
        self.logs.mkdir(parents=True, exist_ok=True)
        argv = [self.python, "-m", "mlpipe_jupyter.service.worker", "--home",
                str(self.home.root), "--run-id", row["id"], "--claim", repr(claim)]
        if self.executor:
            argv += ["--executor", self.executor]
        try:
            with open(self.logs / f"{row['id']}.log", "ab") as out:
                # its own session: a Ctrl-C at the service's terminal does not reach the run,
                # and the run outlives a service that dies (the next one adopts it)
                child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, "MLPIPE_HOME": str(self.home.root)})
        except OSError as err:
            self.db.write("UPDATE queue SET state=?, reason=?, finished=? WHERE id=?",
                          (StepState.FAILED, f"its run process could not start: "
                           f"{os_error_line(err)}", time.time(), row["id"]))
            return
        self.children[row["id"]] = child
        with self.db.transaction() as c:
            changed = c.execute(
                "UPDATE queue SET state=?, pid=?, pid_start=? WHERE id=? AND state=?",
                (Q.RUNNING, child.pid, process_start(child.pid), row["id"], Q.STARTING)).rowcount
            fresh = c.execute("SELECT cancel_requested FROM queue WHERE id=?",
                              (row["id"],)).fetchone()
        if not changed:  # settled by someone else meanwhile: this process must not run it
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            self.children.pop(row["id"], None)
        elif fresh["cancel_requested"]:  # cancelled while it was starting: the worker cancels
            child.send_signal(signal.SIGTERM)

    def _ended(self, row: sqlite3.Row, why: str) -> None:
        """The run process of `row` is gone: the queue row takes the run's final state."""
        try:
            run = self.store.run(row["id"])
        except NotFound:
            run = None
        if run is not None and not is_final(run["state"]):
            self.store.mark_failed(row["id"], f"run process {why}")
            run = self.store.run(row["id"])
            # what its runner left: containers (a docker run), kernels' scratch
            reap(self.store, docker=run.get("executor") == "docker")
        if run is not None:
            state, reason = run["state"], run["reason"]
        elif row["cancel_requested"]:
            state, reason = StepState.CANCELLED, CANCELLED_EARLY
        else:
            fresh = self.db.one("SELECT reason FROM queue WHERE id=?", (row["id"],))
            state, reason = StepState.FAILED, (fresh["reason"] if fresh and fresh["reason"] else
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
        if self.db.write("UPDATE queue SET state=?, reason=?, finished=? WHERE id=? AND state=?",
                         (StepState.CANCELLED, CANCELLED_EARLY, time.time(), run_id, Q.QUEUED)):
            return StepState.CANCELLED.value
        row = self.db.one("SELECT * FROM queue WHERE id=?", (run_id,))
        if row["state"] == Q.RUNNING and process_alive(row["pid"], row["pid_start"]):
            os.kill(row["pid"], signal.SIGTERM)
            return "cancelling"
        if row["state"] == Q.STARTING:  # the loop SIGTERMs its process once it has one
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
        restamp(run)
        if row is not None:
            run["submitted"] = _iso(row["submitted"])
            if row["state"] == Q.RUNNING and is_final(run["state"]):
                run["state"] = Q.RUNNING.value  # the process is still finishing up (latest/, logs)
        return run

    def views(self, *, pipeline: str | None = None, experiment: str | None = None,
              state: str | None = None, limit: int = 50) -> list[dict]:
        found = [restamp(r) for r in self.store.runs(
            limit=limit, pipeline=pipeline, experiment=experiment, state=state)]
        known = {r["id"] for r in found}
        sql, args = "SELECT * FROM queue WHERE 1=1", []  # runs not (yet) in the run store
        for column, value in (("pipeline", pipeline), ("experiment", experiment),
                              ("state", state)):
            if value is None:
                continue
            if column == "state" and value == Q.QUEUED:  # `starting` is shown as queued
                sql += " AND state IN (?,?)"
                args += [Q.QUEUED, Q.STARTING]
            else:
                sql += f" AND {column}=?"
                args.append(value)
        waiting = [_queued_view(r) for r in self.db.all(sql + " ORDER BY seq DESC LIMIT ?",
                                                        (*args, limit)) if r["id"] not in known]
        both = sorted(waiting + found, key=lambda r: r.get("submitted") or r["started"] or "",
                      reverse=True)
        return both[:limit]

    def active_of_schedule(self, schedule_id: int) -> list[str]:
        return [r["id"] for r in self.db.all(
            "SELECT id FROM queue WHERE schedule_id=? AND state IN (?,?,?)",
            (schedule_id, *QueueState))]


def _queued_view(row: sqlite3.Row) -> dict:
    return {"id": row["id"], "notebook": None, "state": _shown(row["state"]),
            "reason": row["reason"], "started": None, "finished": _iso(row["finished"]),
            "params": json.loads(row["params"]), "param_defaults": None, "params_changed": None,
            "executor": None, "pipeline": row["pipeline"], "version": row["version"],
            "experiment": row["experiment"], "source": row["source"], "steps": [],
            "submitted": _iso(row["submitted"])}


def _shown(state: str) -> str:
    """The API's word for a queue state: `starting` (claimed, its process being started) is
    still `queued` to a client."""
    return Q.QUEUED.value if state == Q.STARTING else state


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def log_path(home: Home, run_id: str) -> Path:
    return home.root / "service" / "logs" / f"{run_id}.log"
