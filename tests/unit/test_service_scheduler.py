"""The scheduler on an injected clock, with a real SQLite service store and a real published
pipeline (no run processes: the queue is never polled, so queued runs stay active)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mlpipe_jupyter.errors import UsageError
from mlpipe_jupyter.home import Home
from mlpipe_jupyter.service.db import ServiceDB
from mlpipe_jupyter.service.publish import publish
from mlpipe_jupyter.service.queue import RunQueue
from mlpipe_jupyter.service.scheduler import MAX_CATCHUP, Scheduler, ticks_between
from tests.conftest import write_notebook

UTC = ZoneInfo("UTC")


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def env(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MLPIPE_HOME", raising=False)
    write_notebook(tmp_path / "p.ipynb", ["%%pipeline_params\nalpha = 0.1",
                                          "%%step s --outputs x\nx = alpha"])
    home = Home.for_dir(tmp_path).ensure()
    db = ServiceDB(home.root / "service.db")
    publish(db, home, tmp_path, "p.ipynb", "p")
    clock = Clock(datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC))
    queue = RunQueue(db, home)
    yield db, queue, clock, home
    db.close()


def _sched(env, **kw) -> tuple[Scheduler, dict]:
    db, queue, clock, _ = env
    sched = Scheduler(db, queue, clock=clock)
    return sched, sched.create(pipeline="p", cron=kw.pop("cron", "*/10 * * * *"), **kw)


def _outcomes(db: ServiceDB, sid: int) -> list[tuple[str, str]]:
    return [(datetime.fromtimestamp(r["scheduled_for"], UTC).strftime("%H:%M"), r["outcome"])
            for r in db.all("SELECT * FROM ticks WHERE schedule_id=? ORDER BY scheduled_for",
                            (sid,))]


def test_an_on_time_tick_fires_once_and_a_new_schedule_never_fires_for_the_past(env):
    db, queue, clock, _ = env
    sched, s = _sched(env)
    assert s["next_run"].startswith("2026-03-02T10:10:00")
    assert sched.tick() == []  # created at 10:00:30: the 10:00 tick is not its business
    clock.advance(9 * 60 + 30.4)  # 10:10:00.4
    fired = sched.tick()
    assert [o for _, _, o in fired] == ["started"]
    assert sched.tick() == []  # the same tick again: nothing
    ticks = sched.get(s["id"])["ticks"]
    assert ticks[0]["outcome"] == "started" and ticks[0]["lateness"] == pytest.approx(0.4)
    run = db.one("SELECT * FROM queue WHERE id=?", (ticks[0]["run_id"],))
    assert run["source"] == "schedule" and json.loads(run["params"]) == {"alpha": 0.1}


@pytest.mark.parametrize("policy, started", [("none", []), ("latest", ["10:50"]),
                                             ("all", ["10:10", "10:20", "10:30", "10:40",
                                                      "10:50"])])
def test_catchup_after_downtime(env, policy, started):
    db, _, clock, _ = env
    sched, s = _sched(env, catchup=policy)
    clock.advance(55 * 60)  # the service was down from 10:00:30 to 10:55:30
    sched.tick()
    got = _outcomes(db, s["id"])
    assert [t for t, o in got if o == "started"] == started
    assert [t for t, o in got if o == "missed"] == [
        t for t in ("10:10", "10:20", "10:30", "10:40", "10:50") if t not in started]
    reasons = {r["reason"] for r in db.all("SELECT reason FROM ticks WHERE outcome='missed'")}
    assert all(policy in (r or "") for r in reasons)


def test_catchup_all_is_bounded(env):
    db, _, clock, _ = env
    sched, s = _sched(env, cron="* * * * *", catchup="all", overlap="allow")
    clock.advance(150 * 60)  # 150 ticks due: 12:30 is 30 s old (on time), 149 are catch-up
    sched.tick()
    counts = dict(db.all("SELECT outcome, COUNT(*) FROM ticks WHERE schedule_id=? "
                         "GROUP BY outcome", (s["id"],)))
    assert counts == {"started": MAX_CATCHUP + 1, "missed": 149 - MAX_CATCHUP}
    assert db.one("SELECT COUNT(*) AS n FROM queue")["n"] == MAX_CATCHUP + 1
    missed = db.one("SELECT MAX(scheduled_for) AS t FROM ticks WHERE outcome='missed'")["t"]
    started = db.one("SELECT MIN(scheduled_for) AS t FROM ticks WHERE outcome='started'")["t"]
    assert missed < started  # the most recent ones run, the oldest are logged missed


def test_overlap_skip_replace_allow(env):
    db, queue, clock, _ = env
    skip = _sched(env, overlap="skip")[1]
    replace = _sched(env, overlap="replace")[1]
    sched, allow = _sched(env, overlap="allow")
    for _ in range(2):
        clock.advance(600)
        sched.tick()
    assert [o for _, o in _outcomes(db, skip["id"])] == ["started", "skipped_overlap"]
    assert "still active" in sched.get(skip["id"])["ticks"][0]["reason"]
    assert [o for _, o in _outcomes(db, allow["id"])] == ["started", "started"]
    assert len(queue.active_of_schedule(allow["id"])) == 2
    first, second = [r["run_id"] for r in reversed(sched.get(replace["id"])["ticks"])]
    assert queue.status(first) == "cancelled" and queue.status(second) == "queued"
    assert sched.get(replace["id"])["ticks"][0]["reason"] == f"replaced run {first}"


def test_a_tick_fires_at_most_once_across_a_restart(env):
    db, queue, clock, home = env
    sched, s = _sched(env)
    clock.advance(600)
    assert len(sched.tick()) == 1
    # a service that died before it recorded how far it had looked: the next one looks again
    db.write("UPDATE schedules SET checked_until=? WHERE id=?", (clock() - 300, s["id"]))
    again = Scheduler(ServiceDB(home.root / "service.db"), queue, clock=clock)
    assert again.tick() == []
    assert db.one("SELECT COUNT(*) AS n FROM queue")["n"] == 1


def test_a_disabled_pipeline_is_a_failed_to_start_tick_with_its_reason(env):
    db, _, clock, _ = env
    sched, s = _sched(env)
    db.write("UPDATE pipelines SET enabled=0")
    clock.advance(600)
    sched.tick()
    tick = sched.get(s["id"])["ticks"][0]
    assert tick["outcome"] == "failed_to_start" and "disabled" in tick["reason"]


def test_dst_follows_debian_cron_in_the_schedules_time_zone():
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 28, 12, 0, tzinfo=berlin).timestamp()
    end = datetime(2026, 3, 30, 12, 0, tzinfo=berlin).timestamp()
    # 02:30 does not exist on 29 March 2026 in Berlin: Debian cron runs it once, at 03:00
    got = [datetime.fromtimestamp(t, berlin).strftime("%d %H:%M %Z")
           for t in ticks_between("30 2 * * *", "Europe/Berlin", start, end)]
    assert got == ["29 03:00 CEST", "30 02:30 CEST"]
    # the repeated hour in October: a 02:30 job runs once, not twice
    start = datetime(2026, 10, 24, 12, 0, tzinfo=berlin).timestamp()
    end = datetime(2026, 10, 26, 12, 0, tzinfo=berlin).timestamp()
    assert len(ticks_between("30 2 * * *", "Europe/Berlin", start, end)) == 2


def test_bad_cron_timezone_and_parameters_are_one_line_400s(env):
    sched = Scheduler(env[0], env[1], clock=env[2])
    for kw, word in ((dict(cron="61 * * * *"), "cron"), (dict(cron="* * *"), "five fields"),
                     (dict(cron="* * * * *", timezone="Mars/Base"), "time zone"),
                     (dict(cron="* * * * *", params={"beta": 1}), "beta")):
        with pytest.raises(UsageError) as err:
            sched.create(pipeline="p", **kw)
        assert word in str(err.value) and "\n" not in str(err.value)
        assert err.value.http_status == 400
