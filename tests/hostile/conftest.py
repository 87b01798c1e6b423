"""Hostile steps: code that attacks the runner from inside its step, against real kernels and
a real Docker engine. Nothing here is mocked or skipped; without an engine the docker tests
fail, saying so.

To add one: write the step's code as a user would (it runs in a container as the step's uid,
or locally), run it with `run_pipeline`, then check the host side: a file outside that must be
untouched (`host_file`), the artifact store that must not hold it (`store_holds`), and the one
line the run fails with.
"""

from __future__ import annotations

import os
import stat
import threading
import uuid
from pathlib import Path

import pytest

from mlpipe_jupyter.model.notebook import read_pipeline
from mlpipe_jupyter.run.runner import PipelineRunner, RunOptions
from mlpipe_jupyter.run.store import RunStore
from tests.conftest import wait_for, write_notebook

EXECUTORS = pytest.mark.parametrize("executor", ["docker", "local"])


@pytest.fixture
def host_file(tmp_path_factory) -> Path:
    """A file on the host that no step is given: unique content, never mounted anywhere."""
    path = tmp_path_factory.mktemp("outside") / "secret.txt"
    path.write_text(f"host secret {uuid.uuid4().hex}\n")
    return path


def pipeline(directory: Path, cells: list[str], executor: str, **options) -> PipelineRunner:
    notebook = write_notebook(directory / "pipeline.ipynb", cells)
    return PipelineRunner(read_pipeline(notebook), notebook=str(notebook), base_dir=directory,
                          options=RunOptions(executor=executor, **options))


def run_pipeline(directory: Path, cells: list[str], executor: str, **options):
    runner = pipeline(directory, cells, executor, **options)
    return runner, runner.run()


def stored_steps(runner) -> dict[str, dict]:
    store = RunStore(runner.home.db)
    try:
        return {s["name"]: s for s in store.run(runner.run_id)["steps"]}
    finally:
        store.close()


def store_holds(runner, content: bytes) -> list[Path]:
    """Files of the artifact store (staging included) whose bytes contain `content`."""
    found = []
    for root, _, files in os.walk(runner.home.artifacts):
        for name in files:
            path = Path(root) / name
            if stat.S_ISREG(path.lstat().st_mode) and content in path.read_bytes():
                found.append(path)
    return found


class Background:
    """A run in a thread, so a test can look at its containers while they run."""

    def __init__(self, runner: PipelineRunner) -> None:
        self.runner = runner
        self.state: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.state = self.runner.run()

    def join(self, timeout: float = 120) -> str | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not end"
        return self.state


def running_container(client, run_id: str):
    def find():
        found = client.containers.list(filters={"label": f"mlpipe.run={run_id}",
                                                "status": "running"})
        return found[0] if found else None

    return wait_for(find, f"a running container of run {run_id}", 120)
