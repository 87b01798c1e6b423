"""Pipeline service benchmarks (issue 12).

1. REST submit to first step running: POST pipelines/NAME/runs, then GET runs/ID every 5 ms
   until its step is `running`; split into submit -> run process started (the queue's part,
   target < 0.5 s) and the run's own start (Python, the runner, a kernel).
2. Scheduler lateness (fired_at - scheduled_for): 20 ticks on an injected clock stepped by the
   service's poll interval, and `--real N` (default 3) real one-minute ticks on a live server.

    .venv/bin/python bench/service_latency.py [--runs 10] [--real 3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

CELLS = ["%%pipeline_params\nalpha = 0.1", "%%step s --outputs x\nx = alpha"]


def notebook(path: Path) -> None:
    cells = [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None,
              "outputs": [], "source": src} for i, src in enumerate(CELLS)]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))


class Live:
    def __init__(self, root: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.token, self.root = secrets.token_hex(8), root
        self.url = f"http://127.0.0.1:{self.port}/mlpipe/api/"
        mlpipe = str(Path(sys.executable).with_name("mlpipe"))
        self.proc = subprocess.Popen(
            [mlpipe, "serve", "--root", str(root), "--port", str(self.port), "--allow-root",
             "--executor", "local"], env={**os.environ, "MLPIPE_TOKEN": self.token},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            try:
                self.call("GET", "openapi.json")
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("mlpipe serve did not start") from None
                time.sleep(0.1)

    def call(self, method: str, path: str, body=None):
        request = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": f"token {self.token}"},
            data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=30) as reply:
            raw = reply.read()
        return json.loads(raw) if raw else None

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


def submit_latency(live: Live, runs: int) -> None:
    live.call("POST", "pipelines", {"notebook": "p.ipynb", "name": "bench"})
    queue_part, total = [], []
    db = sqlite3.connect(live.root / ".mlpipe" / "service.db")
    for i in range(runs):
        t0 = time.time()
        run_id = live.call("POST", "pipelines/bench/runs",
                           {"ParameterAssignments": {"alpha": float(i)}})["Id"]
        while True:
            run = live.call("GET", f"runs/{run_id}")
            if run["steps"] and run["steps"][0]["state"] != "queued":
                break
            time.sleep(0.005)
        total.append(time.time() - t0)
        started = db.execute("SELECT started FROM queue WHERE id=?", (run_id,)).fetchone()[0]
        queue_part.append(started - t0)
        while live.call("GET", f"runs/{run_id}")["state"] in ("queued", "running"):
            time.sleep(0.05)
    print(f"submit -> run process started: median {statistics.median(queue_part):.3f} s, "
          f"max {max(queue_part):.3f} s (target < 0.5 s)")
    print(f"submit -> first step running:  median {statistics.median(total):.3f} s, "
          f"max {max(total):.3f} s (includes the run process's own start)")


def injected_lateness(ticks: int = 20) -> None:
    from mlpipe_jupyter.home import Home
    from mlpipe_jupyter.service.app import PipelineService
    from mlpipe_jupyter.service.db import ServiceDB
    from mlpipe_jupyter.service.publish import publish
    from mlpipe_jupyter.service.queue import RunQueue
    from mlpipe_jupyter.service.scheduler import Scheduler

    step = PipelineService.poll_interval.default_value
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        notebook(root / "p.ipynb")
        home = Home(root / ".mlpipe").ensure()
        db = ServiceDB(home.root / "service.db")
        publish(db, home, root, "p.ipynb", "bench")
        now = [datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp() + 0.123]
        sched = Scheduler(db, RunQueue(db, home), clock=lambda: now[0])
        sid = sched.create(pipeline="bench", cron="* * * * *")["id"]
        cost = []
        while db.one("SELECT COUNT(*) AS n FROM ticks")["n"] < ticks:
            now[0] += step
            t0 = time.perf_counter()
            sched.tick()
            cost.append(time.perf_counter() - t0)
        late = [r[0] for r in db.all("SELECT fired_at - scheduled_for FROM ticks WHERE "
                                         "schedule_id=?", (sid,))]
    print(f"injected clock, {ticks} ticks, loop every {step} s: lateness max {max(late):.3f} s,"
          f" one scheduler pass {statistics.median(cost) * 1000:.2f} ms median (target < 1 s)")


def real_lateness(live: Live, ticks: int) -> None:
    sid = live.call("POST", "schedules", {"pipeline": "bench", "cron": "* * * * *"})["id"]
    deadline = time.monotonic() + 61 * ticks + 30
    while time.monotonic() < deadline:
        got = live.call("GET", f"schedules/{sid}")["ticks"]
        if len(got) >= ticks:
            late = [t["lateness"] for t in got]
            print(f"real clock, {len(late)} ticks: lateness {', '.join(f'{x:.3f}' for x in late)}"
                  " s (target < 1 s)")
            return
        time.sleep(1)
    print("real clock: the ticks did not come in time")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--real", type=int, default=3, help="real one-minute ticks (0: none)")
    args = parser.parse_args()
    injected_lateness()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        notebook(root / "p.ipynb")
        live = Live(root)
        try:
            submit_latency(live, args.runs)
            if args.real:
                real_lateness(live, args.real)
        finally:
            live.stop()


if __name__ == "__main__":
    main()
