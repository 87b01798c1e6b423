"""Shared test helpers: notebooks written from cell lists, and the real `mlpipe` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
