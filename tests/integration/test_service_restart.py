"""The service survives its own death: a real one-minute cron tick fires, the server is
SIGKILLed mid-run and restarted, and then there is no ghost run, the schedule is intact and
the tick that fired is not fired again. A run process killed outright is `failed` with why."""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
from datetime import datetime

from tests.conftest import wait_for
from tests.integration.servicekit import (
    Service,
    kill_run_processes,
    make_project,
    run_processes,
)


def test_sigkill_of_the_server_mid_run_then_restart(tmp_path):
    root = tmp_path / "root"
    make_project(root)
    token = secrets.token_hex(16)
    first = Service(root, token, tmp_path / "serve.log")
    servers = [first]
    try:
        first.ok("POST", "pipelines", {"notebook": "p.ipynb", "name": "p"}, expect=201)
        sched = first.ok("POST", "schedules", {
            "pipeline": "p", "cron": "* * * * *", "timezone": "Europe/Berlin",
            "ExperimentName": "every-minute", "ParameterAssignments": {"alpha": 0.25},
            "catchup": "all", "overlap": "allow"}, expect=201)
        # a real minute: the tick fires on time, and runs with the schedule's parameters
        tick = wait_for(lambda: [t for t in first.ok("GET", f"schedules/{sched['id']}")["ticks"]
                                 if t["outcome"] == "started"],
                        timeout=75, what="the first real cron tick", every=0.2)[0]
        assert tick["lateness"] < 1.0, tick
        assert datetime.fromisoformat(tick["scheduled_for"]).second == 0
        ticked = first.wait_run(tick["run_id"])
        assert (ticked["source"], ticked["experiment"], ticked["params"]["alpha"]) == (
            "schedule", "every-minute", 0.25)
        first.ok("PATCH", f"schedules/{sched['id']}", {"enabled": False})

        slow = first.ok("POST", "pipelines/p/runs", {"ParameterAssignments": {"sleep": 6.0}},
                        expect=202)["Id"]
        first.wait_step_running(slow)
        first.kill()  # SIGKILL: no shutdown code runs
        # as if it died before recording how far it had looked: the restarted one looks again
        with sqlite3.connect(root / ".mlpipe" / "service.db") as db:
            db.execute("UPDATE schedules SET checked_until = ?, enabled = 1",
                       (datetime.fromisoformat(tick["scheduled_for"]).timestamp() - 1,))
        assert slow in run_processes(root)  # the run's own process outlives the server

        second = Service(root, token, tmp_path / "serve.log")
        servers.append(second)
        assert second.run(slow)["state"] == "running"  # adopted, not a ghost, not failed
        done = second.wait_run(slow, timeout=120)
        assert done["steps"][0]["state"] == "succeeded"

        again = second.ok("GET", f"schedules/{sched['id']}")
        assert (again["cron"], again["timezone"], again["ParameterAssignments"],
                again["catchup"]) == ("* * * * *", "Europe/Berlin", {"alpha": 0.25}, "all")
        fired = [t for t in again["ticks"] if t["scheduled_for"] == tick["scheduled_for"]]
        assert len(fired) == 1 and fired[0]["run_id"] == tick["run_id"]
        times = [t["scheduled_for"] for t in again["ticks"]]
        assert len(times) == len(set(times))
        runs = second.ok("GET", "runs?experiment=every-minute&limit=100")
        assert len(runs) == len([t for t in again["ticks"] if t["outcome"] == "started"])
        second.ok("DELETE", f"schedules/{sched['id']}", expect=204)
        assert second.call("GET", f"schedules/{sched['id']}")[0] == 404

        # the server dies, and so does the run's process while nobody watches: interrupted
        orphan = second.ok("POST", "pipelines/p/runs", {"ParameterAssignments":
                                                        {"sleep": 300.0}}, expect=202)["Id"]
        second.wait_step_running(orphan)
        second.kill()
        os.killpg(run_processes(root)[orphan], signal.SIGKILL)
        wait_for(lambda: orphan not in run_processes(root), timeout=30, what="the run to die")
        third = Service(root, token, tmp_path / "serve.log")
        servers.append(third)
        lost = third.run(orphan)
        assert lost["state"] == "failed" and "interrupted" in lost["reason"], lost

        # and a run process killed while the server watches: failed, saying how it died
        killed = third.ok("POST", "pipelines/p/runs", {"ParameterAssignments":
                                                       {"sleep": 300.0}}, expect=202)["Id"]
        third.wait_step_running(killed)
        os.killpg(run_processes(root)[killed], signal.SIGKILL)
        dead = third.wait_run(killed, ("failed",), timeout=60)
        assert "SIGKILL" in dead["reason"] and dead["steps"][0]["state"] == "failed", dead
    finally:
        for server in servers:
            server.stop()
        kill_run_processes(root)
