"""A real `mlpipe serve` subprocess on 127.0.0.1 for the service tests: started on a free port,
ready when it answers (polled with a deadline), stopped by its pid; HTTP through urllib."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlpipe_jupyter.run.processes import process_alive
from tests.conftest import MLPIPE, free_port, wait_for, write_notebook

# a step that reads a file from beside the notebook, sleeps as told and prints its parameter
PIPELINE = ["%%pipeline_params\nalpha = 0.1\nlabel = 'x'\nsleep = 0.0",
            "%%step hello --inputs data.txt --outputs out\nimport time\ntime.sleep(sleep)\n"
            "out = open('data.txt').read()\nprint(f'ALPHA={alpha} LABEL={label}')"]


def make_project(root: Path, name: str = "p.ipynb") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.txt").write_text("data")
    return write_notebook(root / name, PIPELINE)


class Service:
    def __init__(self, root: Path, token: str, log: Path, *, port: int | None = None,
                 args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        self.root, self.token, self.log = root, token, log
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "MLPIPE_TOKEN": token, "MLPIPE_EXECUTOR": "local",
                    "JUPYTER_CONFIG_DIR": str(log.parent / "jupyter-config"),
                    "JUPYTER_DATA_DIR": str(log.parent / "jupyter-data"), **(env or {})}
        full_env.pop("MLPIPE_HOME", None)
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [MLPIPE, "serve", "--root", str(root), "--port", str(self.port), "--allow-root",
                 *args], env=full_env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        wait_for(self._ready, timeout=90, what=f"mlpipe serve at {self.url}", every=0.2)

    def _ready(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            return self.call("GET", "openapi.json")[0] == 200
        except OSError:
            return False

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = "",
             headers: dict[str, str] | None = None, raw: bytes | None = None
             ) -> tuple[int, Any]:
        """(status, JSON body or None). token="" uses the right one, None sends none."""
        sent = dict(headers or {})
        token = self.token if token == "" else token
        if token is not None:
            sent["Authorization"] = f"token {token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(f"{self.url}/mlpipe/api/{path}", data=data,
                                         headers=sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                status, payload = reply.status, reply.read()
        except urllib.error.HTTPError as err:
            status, payload = err.code, err.read()
        return status, (json.loads(payload) if payload else None)

    def ok(self, method: str, path: str, body: Any = None, expect: int = 200, **kw) -> Any:
        status, data = self.call(method, path, body, **kw)
        assert status == expect, (method, path, status, data)
        return data

    def run(self, run_id: str) -> dict:
        return self.ok("GET", f"runs/{run_id}")

    def wait_run(self, run_id: str, states: tuple[str, ...] = ("succeeded",),
                 timeout: float = 120) -> dict:
        final = ("succeeded", "failed", "cancelled")
        run = wait_for(lambda: (r := self.run(run_id))["state"] in (*final, *states) and r,
                       timeout=timeout, what=f"run {run_id} to reach {states}")
        assert run["state"] in states, run
        return run

    def wait_step_running(self, run_id: str, timeout: float = 60) -> dict:
        return wait_for(lambda: (r := self.run(run_id))["steps"] and
                        r["steps"][0]["state"] == "running" and r,
                        timeout=timeout, what=f"a step of {run_id} running")

    def stop(self) -> None:
        """SIGTERM by pid (as Ctrl-C would stop it), SIGKILL if it does not end."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def run_processes(root: Path) -> dict[str, int]:
    """The live run processes of the service store under `root` (run id -> pid)."""
    path = root / ".mlpipe" / "service.db"
    if not path.exists():
        return {}
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT id, pid, pid_start FROM queue WHERE pid IS NOT NULL").fetchall()
    return {rid: pid for rid, pid, start in rows if process_alive(pid, start)}


def kill_run_processes(root: Path) -> None:
    """Teardown: no run process of a test outlives it (each is its own session)."""
    for pid in run_processes(root).values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def step_output(root: Path, run_id: str, step: str = "hello") -> str:
    """Everything the step printed, from its executed notebook."""
    nb = json.loads((root / ".mlpipe" / "runs" / run_id / step / "output.ipynb").read_text())
    return "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))


@contextlib.contextmanager
def serving(base: Path, *, project: bool = True, clean_log: bool = True) -> Iterator[Service]:
    """`mlpipe serve` on a fresh root under `base` (with make_project's pipeline unless
    `project` is False), stopped and its run processes killed at the end; with `clean_log`, its
    log must then hold no traceback."""
    root = base / "root"
    if project:
        make_project(root)
    else:
        root.mkdir()
    server = Service(root, secrets.token_hex(16), base / "serve.log")
    try:
        yield server
    finally:
        server.stop()
        kill_run_processes(root)
    if clean_log:
        assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]

