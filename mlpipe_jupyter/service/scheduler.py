"""Cron schedules of published pipelines, run by the service process.

Cron times come from cronsim: maintained, zoneinfo-native, and modeled on Debian cron, which is
what people expect of a crontab line at a DST change (a job at a wall-clock time inside the
spring gap runs once right after it, a job in the repeated autumn hour runs once; jobs every
minute or hour follow real time). croniter has changed hands and DST behaviour over the years;
cronsim documents and tests its rules against Debian cron.

Every tick considered is written to the tick log, UNIQUE(schedule, scheduled_for): the row is
inserted in the same transaction as the run it queues, so a tick fires at most once, also when
the service dies and restarts mid-way. Each schedule remembers how far it has looked
(`checked_until`); ticks between that and now are due. A due tick at most `GRACE` seconds old is
on time; older ones are catch-up, handled by the schedule's `catchup` policy. The clock is
injected, so tests move time instead of waiting for it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..errors import MlpipeError, NotFound, UsageError
from .db import ServiceDB
from .publish import pipeline_version, runnable
from .queue import RunQueue, enqueue
from .times import iso

GRACE = 60.0  # a tick this late is still on time (the service polls twice a second)
MAX_CATCHUP = 100
CATCHUP = ("none", "latest", "all")
OVERLAP = ("allow", "skip", "replace")
FIELDS = ("pipeline", "cron", "timezone", "experiment", "params", "catchup", "overlap",
          "enabled", "version")


def _zone(name: str):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"timezone {name!r}: not an IANA time zone (e.g. Europe/Berlin, UTC)",
                         option="timezone") from None


def check_cron(expr: str, tz: str) -> None:
    from cronsim import CronSim, CronSimError

    if len(expr.split()) != 5:
        raise UsageError(f"cron {expr!r}: give five fields (minute hour day month weekday)",
                         option="cron")
    try:
        CronSim(expr, datetime.now(_zone(tz)))
    except CronSimError as err:
        raise UsageError(f"cron {expr!r}: {err}", option="cron") from None


def ticks_between(expr: str, tz: str, after: float, until: float, limit: int = 10_000
                  ) -> list[float]:
    """Tick times t with after < t <= until (at most `limit`, the earliest)."""
    from cronsim import CronSim

    out: list[float] = []
    for moment in CronSim(expr, datetime.fromtimestamp(after, _zone(tz))):
        stamp = moment.timestamp()
        if stamp > until or len(out) >= limit:
            break
        if stamp > after:
            out.append(stamp)
    return out


def next_tick(expr: str, tz: str, after: float) -> float:
    from cronsim import CronSim

    for moment in CronSim(expr, datetime.fromtimestamp(after, _zone(tz))):
        if moment.timestamp() > after:
            return moment.timestamp()
    raise UsageError(f"cron {expr!r} never fires", option="cron")  # pragma: no cover


def _iso(ts: float | None, tz: str = "UTC") -> str | None:
    return iso(ts, _zone(tz))


class Scheduler:
    def __init__(self, db: ServiceDB, queue: RunQueue,
                 clock: Callable[[], float] = time.time) -> None:
        self.db, self.queue, self.clock = db, queue, clock

    # -- CRUD ---------------------------------------------------------------------------------
    def create(self, *, pipeline: str, cron: str, timezone: str = "UTC",
               experiment: str | None = None, params: dict[str, Any] | None = None,
               catchup: str = "none", overlap: str = "allow", enabled: bool = True,
               version: int | None = None) -> dict:
        params = params or {}
        self._check(pipeline, cron, timezone, params, version)
        now = self.clock()  # a new schedule looks forward only: it never fires for the past
        with self.db.transaction() as c:
            cur = c.execute(
                "INSERT INTO schedules (pipeline, cron, timezone, experiment, params, catchup, "
                "overlap, enabled, version, created, checked_until) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (pipeline, cron, timezone, experiment, json.dumps(params), catchup, overlap,
                 int(enabled), version, now, now))
        return self.get(cur.lastrowid)

    def _check(self, pipeline: str, cron: str, tz: str, params: dict, version: int | None
               ) -> None:
        check_cron(cron, tz)
        from .publish import _pipeline_row

        _pipeline_row(self.db, pipeline)
        runnable_params = pipeline_version(self.db, pipeline, version)["parameters"]
        if params:
            from ..model.checks import check_params

            bad = [k for k in params if k not in runnable_params]
            if bad:
                from .errors import BadParameters

                raise BadParameters(f"ParameterAssignments: unknown parameter(s) "
                                    f"{', '.join(bad)} (pipeline parameters: "
                                    f"{', '.join(runnable_params) or 'none'})", parameters=bad)
            try:
                check_params(runnable_params, params)
            except UsageError as err:
                from .errors import BadParameters

                raise BadParameters(f"ParameterAssignments: {str(err).removeprefix('-p ')}",
                                    parameters=[err.option or "?"]) from None

    def _row(self, schedule_id: int):
        row = self.db.one("SELECT * FROM schedules WHERE id=?", (schedule_id,))
        if row is None:
            raise NotFound(f"no schedule {schedule_id}", cause="schedule")
        return row

    def get(self, schedule_id: int, ticks: int = 50) -> dict:
        row = self._row(schedule_id)
        out = self._dict(row)
        out["ticks"] = [
            {"scheduled_for": _iso(t["scheduled_for"], row["timezone"]),
             "fired_at": _iso(t["fired_at"], row["timezone"]), "outcome": t["outcome"],
             "run_id": t["run_id"], "reason": t["reason"],
             "lateness": round(t["fired_at"] - t["scheduled_for"], 3)}
            for t in self.db.all("SELECT * FROM ticks WHERE schedule_id=? ORDER BY "
                                 "scheduled_for DESC LIMIT ?", (schedule_id, ticks))]
        return out

    def list(self) -> list[dict]:
        return [self._dict(r) for r in self.db.all("SELECT * FROM schedules ORDER BY id")]

    def _dict(self, row) -> dict:
        nxt = (next_tick(row["cron"], row["timezone"], max(self.clock(), row["checked_until"]))
               if row["enabled"] else None)
        return {"id": row["id"], "pipeline": row["pipeline"], "version": row["version"],
                "cron": row["cron"], "timezone": row["timezone"],
                "ExperimentName": row["experiment"],
                "ParameterAssignments": json.loads(row["params"]), "catchup": row["catchup"],
                "overlap": row["overlap"], "enabled": bool(row["enabled"]),
                "created": _iso(row["created"], row["timezone"]),
                "next_run": _iso(nxt, row["timezone"])}

    def update(self, schedule_id: int, **changes: Any) -> dict:
        row = self._row(schedule_id)
        merged = {k: row[k] for k in FIELDS}
        merged["params"] = json.loads(row["params"])
        merged.update({k: v for k, v in changes.items() if k in FIELDS})
        self._check(merged["pipeline"], merged["cron"], merged["timezone"], merged["params"],
                    merged["version"])
        restart = (not row["enabled"] and merged["enabled"]) or merged["cron"] != row["cron"] \
            or merged["timezone"] != row["timezone"]
        self.db.write(
            "UPDATE schedules SET pipeline=?, cron=?, timezone=?, experiment=?, params=?, "
            "catchup=?, overlap=?, enabled=?, version=?, checked_until=? WHERE id=?",
            (merged["pipeline"], merged["cron"], merged["timezone"], merged["experiment"],
             json.dumps(merged["params"]), merged["catchup"], merged["overlap"],
             int(bool(merged["enabled"])), merged["version"],
             # a schedule re-enabled or re-timed looks forward from now, like a new one
             self.clock() if restart else row["checked_until"], schedule_id))
        return self.get(schedule_id)

    def delete(self, schedule_id: int) -> None:
        self._row(schedule_id)
        with self.db.transaction() as c:
            c.execute("DELETE FROM ticks WHERE schedule_id=?", (schedule_id,))
            c.execute("DELETE FROM schedules WHERE id=?", (schedule_id,))

    # -- firing -------------------------------------------------------------------------------
    def tick(self) -> list[tuple[int, float, str]]:
        """Handle every due tick of every enabled schedule: (schedule, tick, outcome) each."""
        now = self.clock()
        done: list[tuple[int, float, str]] = []
        for row in self.db.all("SELECT * FROM schedules WHERE enabled=1 ORDER BY id"):
            due = ticks_between(row["cron"], row["timezone"], row["checked_until"], now)
            late = [t for t in due if now - t > GRACE]
            on_time = due[len(late):]
            run: list[float] = list(on_time)
            if row["catchup"] == "latest" and late and not on_time:
                run = [late[-1]]
            elif row["catchup"] == "all":
                run = late[-MAX_CATCHUP:] + on_time
            for stamp in due:
                if stamp in run:
                    outcome = self._fire(row, stamp, now)
                else:
                    why = ("missed while the service was not running (catchup=none)"
                           if row["catchup"] == "none" else
                           f"missed: catchup={row['catchup']} runs only "
                           + ("the latest" if row["catchup"] == "latest"
                              else f"the last {MAX_CATCHUP}"))
                    outcome = self._log(row["id"], stamp, now, "missed", None, why)
                if outcome is not None:
                    done.append((row["id"], stamp, outcome))
            self.db.write("UPDATE schedules SET checked_until=MAX(checked_until, ?) WHERE id=?",
                          (now, row["id"]))
        return done

    def _log(self, schedule_id: int, stamp: float, now: float, outcome: str,
             run_id: str | None, reason: str | None) -> str | None:
        changed = self.db.write(
            "INSERT OR IGNORE INTO ticks (schedule_id, scheduled_for, fired_at, outcome, run_id, "
            "reason) VALUES (?,?,?,?,?,?)", (schedule_id, stamp, now, outcome, run_id, reason))
        return outcome if changed else None

    def _fire(self, row, stamp: float, now: float) -> str | None:
        sid = row["id"]
        if self.db.one("SELECT 1 FROM ticks WHERE schedule_id=? AND scheduled_for=?",
                       (sid, stamp)):
            return None  # fired (or logged) before, maybe by a service that died since
        try:
            version, params = runnable(self.db, row["pipeline"], row["version"],
                                       json.loads(row["params"]))
        except MlpipeError as err:
            return self._log(sid, stamp, now, "failed_to_start", None, str(err))
        active = self.queue.active_of_schedule(sid)
        if active and row["overlap"] == "skip":
            return self._log(sid, stamp, now, "skipped_overlap", None,
                             f"run {active[0]} of this schedule is still active")
        reason = None
        if active and row["overlap"] == "replace":
            for run_id in active:
                self.queue.cancel(run_id)
            reason = f"replaced run {', '.join(active)}"
        with self.db.transaction() as c:
            cur = c.execute("INSERT OR IGNORE INTO ticks (schedule_id, scheduled_for, fired_at, "
                            "outcome, reason) VALUES (?,?,?,?,?)",
                            (sid, stamp, now, "started", reason))
            if cur.rowcount == 0:
                return None
            run_id = enqueue(c, pipeline=row["pipeline"], version=version, params=params,
                             experiment=row["experiment"], source="schedule", schedule_id=sid)
            c.execute("UPDATE ticks SET run_id=? WHERE id=?", (run_id, cur.lastrowid))
        return "started"
