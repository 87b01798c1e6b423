"""A run the service had claimed but not yet seen start (the service stopped in between) is
settled by the next service: queued again and run once, a worker with the stale claim running
nothing; a failure of the worker before its run starts is one line in the run's reason."""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from mlpipe_jupyter.run.runner import new_run_id
from tests.integration.servicekit import (
    Service,
    kill_run_processes,
    make_project,
    step_output,
)


def _insert(root: Path, state: str, *, started: float | None, pipeline: str = "p") -> str:
    run_id = new_run_id()
    with sqlite3.connect(root / ".mlpipe" / "service.db") as db:
        db.execute("INSERT INTO queue (id, pipeline, version, params, source, state, submitted, "
                   "started) VALUES (?,?,?,?,?,?,?,?)",
                   (run_id, pipeline, 1, json.dumps({"alpha": 0.75}), "rest", state,
                    time.time(), started))
    return run_id


def test_a_run_left_starting_runs_once_and_a_stale_worker_runs_nothing(tmp_path: Path):
    root = tmp_path / "root"
    make_project(root)
    token = secrets.token_hex(16)
    servers = [Service(root, token, tmp_path / "serve.log")]
    try:
        servers[0].ok("POST", "pipelines", {"notebook": "p.ipynb", "name": "p"}, expect=201)
        servers[0].stop()
        stale = 1234.5
        left = _insert(root, "starting", started=stale)  # claimed; its worker never recorded
        servers.append(Service(root, token, tmp_path / "serve.log"))
        run = servers[1].wait_run(left)
        assert run["params"]["alpha"] == 0.75
        assert "ALPHA=0.75" in step_output(root, left)
        # the worker the dead service may have started, booting only now: it runs nothing
        late = subprocess.run(
            [sys.executable, "-m", "mlpipe_jupyter.service.worker", "--home",
             str(root / ".mlpipe"), "--run-id", left, "--claim", repr(stale)],
            capture_output=True, text=True, timeout=120)
        assert late.returncode == 2 and "stale" in late.stderr, late.stderr
        assert servers[1].run(left)["state"] == "succeeded"
        assert servers[1].run(left)["started"] == run["started"]  # not run a second time
    finally:
        for server in servers:
            server.stop()
        kill_run_processes(root)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_a_worker_failing_before_its_run_starts_says_so_in_one_line(tmp_path: Path):
    root = tmp_path / "root"
    make_project(root)
    server = Service(root, secrets.token_hex(16), tmp_path / "serve.log")
    try:
        server.ok("POST", "pipelines", {"notebook": "p.ipynb", "name": "p"}, expect=201)
        snapshot = next((root / ".mlpipe" / "pipelines" / "p").glob("*/p.ipynb"))
        # a config its reader trips on with an error not its own (not an MlpipeError)
        (snapshot.parent / "pyproject.toml").write_text("[tool]\nmlpipe = 3\n")
        run_id = server.ok("POST", "pipelines/p/runs", {}, expect=202)["Id"]
        run = server.wait_run(run_id, ("failed",), timeout=120)
        assert "AttributeError" in run["reason"] and "\n" not in run["reason"], run
        log = (root / ".mlpipe" / "service" / "logs" / f"{run_id}.log").read_text()
        assert "Traceback" not in log, log
    finally:
        server.stop()
        kill_run_processes(root)
