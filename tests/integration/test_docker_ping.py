"""A docker run asks the engine whether it answers once: the client that answered the
availability check is the one the run uses (real engine, real containers)."""

from __future__ import annotations

import pytest
from docker.api.client import APIClient

from mlpipe_jupyter.executors.docker import DockerExecutor
from mlpipe_jupyter.model.notebook import read_pipeline
from mlpipe_jupyter.run.runner import PipelineRunner, RunOptions
from tests.conftest import write_notebook


@pytest.mark.docker
@pytest.mark.parametrize("asked", [None, "docker"])
def test_a_docker_run_pings_the_engine_once(notebook_dir, monkeypatch, asked):
    if (why := DockerExecutor.available()) is not None:
        pytest.fail(f"this test needs a real engine: {why}", pytrace=False)
    pings = []
    ping = APIClient.ping

    def counted(self, *args, **kwargs):
        pings.append(1)
        return ping(self, *args, **kwargs)

    monkeypatch.setattr(APIClient, "ping", counted)
    notebook = write_notebook(notebook_dir / "p.ipynb", ["%%step one --outputs x\nx = 1"])
    runner = PipelineRunner(read_pipeline(notebook), notebook=str(notebook),
                            base_dir=notebook_dir, options=RunOptions(executor=asked))
    assert runner.executor_name == "docker"
    assert runner.run() == "succeeded"
    assert len(pings) == 1, pings
