"""What a runner killed with SIGKILL leaves (its run, containers, scratch) is cleaned by the next
`mlpipe runs` or `mlpipe run`, without `mlpipe gc`; a runner elsewhere is judged by its
heartbeat. Real CLI, real containers, real kernels, a real SQLite file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from mlpipe_jupyter.executors.docker import DockerExecutor, connect
from mlpipe_jupyter.run.store import RunStore
from tests.conftest import MLPIPE, run_cli, scratch_of, wait_for, write_notebook

SLOW = "%%step slow\nimport time\nopen('../../slow-running', 'w').write('1')\n" \
       "for i in range(240):\n    time.sleep(0.5)"


def runs_json(cwd: Path, env: dict | None = None) -> list[dict]:
    result = run_cli("runs", "--json", cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.docker
def test_sigkill_leaves_no_container_after_the_next_mlpipe_runs(notebook_dir):
    assert DockerExecutor.available() is None, "the Docker tests need a real engine"
    client = connect()
    write_notebook(notebook_dir / "p.ipynb", [SLOW])
    proc = subprocess.Popen([MLPIPE, "run", "p.ipynb", "--executor", "docker"],
                            cwd=notebook_dir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    run_id = None
    try:
        found = wait_for(lambda: client.containers.list(
            filters={"label": "mlpipe.step=slow", "status": "running"}), "a container", 300)
        container = next(c for c in found if c.labels["mlpipe.owner"].split(":")[1]
                         == str(proc.pid))
        run_id = container.labels["mlpipe.run"]
        assert container.labels["mlpipe.owner"].split(":")[3] == \
            Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        proc.kill()
        proc.wait(30)
        container.reload()
        assert container.status == "running"  # left behind by the killed runner
        runs = runs_json(notebook_dir)  # no `mlpipe gc`
        assert runs[0]["id"] == run_id and runs[0]["state"] == "failed" \
            and runs[0]["reason"] == "interrupted"
        assert client.containers.list(all=True, filters={"label": f"mlpipe.run={run_id}"}) == []
        assert scratch_of(proc.pid) == []  # its scratch too
    finally:
        proc.kill()
        if run_id:
            for c in client.containers.list(all=True, filters={"label": f"mlpipe.run={run_id}"}):
                c.remove(force=True)
        client.close()


def test_sigkill_scratch_is_swept_by_the_next_run_and_a_run_leaves_none(notebook_dir):
    write_notebook(notebook_dir / "p.ipynb", [SLOW])
    proc = subprocess.Popen([MLPIPE, "run", "p.ipynb", "--executor", "local"],
                            cwd=notebook_dir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: list((notebook_dir / ".mlpipe/runs").glob("*/slow-running")), "slow")
        left = scratch_of(proc.pid, "kernels")
        assert left  # its kernel's connection file and log
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    assert all(p.exists() for p in left)
    write_notebook(notebook_dir / "p.ipynb", ["%%step quick\nx = 1"])
    result = subprocess.run([MLPIPE, "run", "p.ipynb", "--executor", "local"],
                            cwd=notebook_dir, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not any(p.exists() for p in left)
    # the run's own scratch is gone when it ends (its pid is in the names)
    ran = subprocess.Popen([MLPIPE, "run", "p.ipynb", "--executor", "local", "--no-cache"],
                           cwd=notebook_dir, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    assert ran.wait(300) == 0
    assert scratch_of(ran.pid) == []


def test_a_run_elsewhere_is_judged_by_its_heartbeat(tmp_path):
    db = tmp_path / ".mlpipe" / "mlpipe.db"
    store = RunStore(db)
    for run_id in ("stale", "fresh"):
        store.on_run_started(run_id=run_id, notebook="p.ipynb", params={}, steps=["s"],
                             executor="local", started=time.time())
        store.on_step_state(run_id=run_id, step="s", state="running", at=time.time())
    store.close()
    raw = sqlite3.connect(db, isolation_level=None)  # recorded by a runner on another host
    raw.execute("UPDATE runs SET host='elsewhere', pid=1, heartbeat=? WHERE id='stale'",
                (time.time() - 300,))
    raw.execute("UPDATE runs SET host='elsewhere', pid=1 WHERE id='fresh'")
    raw.close()
    shown = RunStore(db)  # opening only reads
    assert {r["id"]: r["state"] for r in shown.runs()} == {"stale": "running",
                                                           "fresh": "running"}
    shown.close()
    runs = {r["id"]: r for r in runs_json(tmp_path)}
    assert runs["stale"]["state"] == "failed"
    assert runs["stale"]["reason"].startswith("interrupted (no heartbeat from its runner on "
                                              "elsewhere for 3")
    assert runs["stale"]["steps"][0]["state"] == "failed"
    assert runs["fresh"]["state"] == "running"


def test_a_running_runner_beats(notebook_dir):
    write_notebook(notebook_dir / "p.ipynb", [SLOW])
    env = {k: v for k, v in os.environ.items() if k != "MLPIPE_HOME"}
    proc = subprocess.Popen([MLPIPE, "run", "p.ipynb", "--executor", "local"],
                            cwd=notebook_dir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env={**env, "MLPIPE_HEARTBEAT_TIMEOUT": "2"})  # a beat each 0.5 s
    db = notebook_dir / ".mlpipe" / "mlpipe.db"
    try:
        wait_for(lambda: list((notebook_dir / ".mlpipe/runs").glob("*/slow-running")), "slow")

        def heartbeat() -> float:
            conn = sqlite3.connect(db)
            try:
                return conn.execute("SELECT heartbeat FROM runs").fetchone()[0]
            finally:
                conn.close()

        first = heartbeat()
        wait_for(lambda: heartbeat() > first, "a second heartbeat", 10)
        # judged alive by another reader with the same short timeout
        runs = runs_json(notebook_dir, env={"MLPIPE_HEARTBEAT_TIMEOUT": "2"})
        assert runs[0]["state"] == "running"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
