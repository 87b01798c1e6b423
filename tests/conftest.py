"""Shared test helpers: notebooks written from cell lists, the real `mlpipe` CLI, a free port
and a real `jupyter server` with the package's extensions."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MLPIPE = str(Path(sys.executable).with_name("mlpipe"))
# The base image the Docker tests build FROM: the one scripts/setup-docker.sh makes (no registry
# is reachable here; `make test` runs it), or MLPIPE_BASE_IMAGE. Never `python:3.11-slim`, which
# a machine may hold as the real image or not at all.
BASE_IMAGE = os.environ.get("MLPIPE_BASE_IMAGE", "mlpipe-base:bookworm-py3.11")


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A minimal nbformat-4 notebook whose code cells are `cells` (markdown if it starts `#md`)."""
    nb_cells = []
    for i, src in enumerate(cells):
        if src.startswith("#md\n"):
            nb_cells.append({"cell_type": "markdown", "id": f"c{i}", "metadata": {},
                             "source": src[4:]})
        else:
            nb_cells.append({"cell_type": "code", "id": f"c{i}", "metadata": {},
                             "execution_count": None, "outputs": [], "source": src})
    nb = {"cells": nb_cells, "metadata": {"kernelspec": {"name": "python3",
                                                       "display_name": "Python 3",
                                                       "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb, indent=1))
    return path


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("MLPIPE_HOME", None)
    return subprocess.run([MLPIPE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


@pytest.fixture
def notebook_dir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.delenv("MLPIPE_HOME", raising=False)
    return tmp_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class JupyterServer:
    url: str
    token: str
    root: Path
    log: Path


@contextlib.contextmanager
def jupyter_server(base: Path, root: Path, *options: str,
                   env: dict[str, str | None] | None = None) -> Iterator[JupyterServer]:
    """A real `jupyter server` on 127.0.0.1 serving `root`, with the package's extensions and a
    fresh config and data dir under `base` (its log: base/server.log); yielded once it answers,
    stopped by its pid at the end. `env` adds variables (None removes one)."""
    port, token = free_port(), secrets.token_hex(16)
    full_env = {**os.environ, "JUPYTER_CONFIG_DIR": str(base / "config"),
                "JUPYTER_DATA_DIR": str(base / "data"), **(env or {})}
    full_env.pop("JUPYTER_PATH", None)
    full_env = {k: v for k, v in full_env.items() if v is not None}
    log = base / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1",
             f"--port={port}", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", "--allow-root", *options],
            env=full_env, cwd=base, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)  # polling a condition with a deadline
        yield JupyterServer(url, token, root, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

