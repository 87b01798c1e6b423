"""Where the docker executor cannot run (no daemon, no base image), a run that named no executor
says why once and runs its steps locally; one that asked for docker gets the cause once, as one
error. Real engine, real CLI, real kernels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mlpipe_jupyter.executors import images
from mlpipe_jupyter.executors.docker import DockerExecutor, connect
from mlpipe_jupyter.model.notebook import read_pipeline
from mlpipe_jupyter.run.runner import PipelineRunner
from tests.conftest import NOTEBOOKS, run_cli, write_notebook

MISSING = "mlpipe-test-no-such-base:0"
CELLS = ["%%step load --outputs x\nx = 20", "%%step add --outputs y\ny = x + 1",
         "%%step double --outputs z\nz = y * 2"]


def no_daemon(directory: Path) -> dict[str, str]:
    """A DOCKER_HOST nothing listens on: the same as a machine whose daemon is stopped."""
    return {"DOCKER_HOST": f"unix://{directory}/no-docker.sock"}


def last_run(directory: Path) -> dict:
    return json.loads(run_cli("runs", "--json", cwd=directory).stdout)[0]


@pytest.fixture(scope="module")
def engine():
    why = DockerExecutor.available()
    if why is not None:
        pytest.fail(f"these tests need a real engine: {why} (bash scripts/setup-docker.sh)",
                    pytrace=False)
    client = connect()
    yield client
    client.close()


def test_without_a_daemon_the_steps_run_locally_said_once(notebook_dir):
    write_notebook(notebook_dir / "p.ipynb", CELLS)
    result = run_cli("run", "p.ipynb", cwd=notebook_dir, env=no_daemon(notebook_dir))
    assert result.returncode == 0, result.stderr + result.stdout
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "no Docker daemon answers" in notes[0]
    assert notes[0].endswith("steps run locally, without containers")
    run = last_run(notebook_dir)
    assert (run["executor"], run["state"]) == ("local", "succeeded")

    # asked for by name, docker without a daemon is one line and nothing runs (1: an executor
    # that cannot run, as for `mlpipe image build`)
    asked = run_cli("run", "p.ipynb", "--executor", "docker", cwd=notebook_dir,
                    env=no_daemon(notebook_dir))
    assert asked.returncode == 1
    assert asked.stderr.strip().count("\n") == 0
    assert asked.stderr.startswith("error: no Docker daemon answers")
    assert len(json.loads(run_cli("runs", "--json", cwd=notebook_dir).stdout)) == 1


def test_with_a_daemon_but_no_base_image_the_steps_run_locally(notebook_dir, engine):
    write_notebook(notebook_dir / "p.ipynb", CELLS)
    result = run_cli("run", "p.ipynb", cwd=notebook_dir, env={"MLPIPE_BASE_IMAGE": MISSING})
    assert result.returncode == 0, result.stderr + result.stdout
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1
    assert f"base image `{MISSING}` not found" in notes[0]
    assert notes[0].endswith("steps run locally, without containers")
    assert last_run(notebook_dir)["executor"] == "local"


def test_no_configured_base_and_none_of_the_defaults_falls_back(notebook_dir, engine,
                                                                monkeypatch):
    """The case of a fresh machine with an engine and no image at all: no default base is
    there and none can be pulled (no registry here)."""
    monkeypatch.setattr(images, "DEFAULT_BASES", (MISSING, "mlpipe-test-no-such-base:1"))
    monkeypatch.delenv("MLPIPE_BASE_IMAGE", raising=False)
    monkeypatch.delenv("MLPIPE_EXECUTOR", raising=False)
    notebook = write_notebook(notebook_dir / "p.ipynb", CELLS)
    runner = PipelineRunner(read_pipeline(notebook), notebook=str(notebook),
                            base_dir=notebook_dir)
    assert runner.executor_name == "local"
    assert len(runner.notes) == 1
    assert f"neither {MISSING} nor mlpipe-test-no-such-base:1" in runner.notes[0]
    assert runner.run() == "succeeded"


def test_docker_asked_for_without_its_image_is_one_error_and_a_failed_run(notebook_dir,
                                                                         engine):
    write_notebook(notebook_dir / "p.ipynb", CELLS)
    result = run_cli("run", "p.ipynb", "--executor", "docker", cwd=notebook_dir,
                     env={"MLPIPE_BASE_IMAGE": MISSING})
    assert result.returncode == 1
    said = result.stdout + result.stderr
    assert said.count(f"base image `{MISSING}` not found") == 1, said
    run = last_run(notebook_dir)
    assert run["state"] == "failed" and run["executor"] == "docker"
    assert run["reason"].startswith(f"base image `{MISSING}` not found")
    # the steps never started: skipped, with the run's reason; no container was made
    assert [s["state"] for s in run["steps"]] == ["skipped"] * 3
    assert {s["reason"] for s in run["steps"]} == {run["reason"]}
    assert not engine.containers.list(all=True, filters={"label": f"mlpipe.run={run['id']}"})


def test_the_demo_ends_with_results_without_docker(tmp_path):
    """`make demo` on a machine whose daemon is stopped: the example still ends with results."""
    for path in NOTEBOOKS.iterdir():
        if path.is_file():
            shutil.copy(path, tmp_path / path.name)
    result = run_cli("run", "wine_quality.ipynb", cwd=tmp_path, env=no_daemon(tmp_path))
    assert result.returncode == 0, result.stderr + result.stdout
    assert "steps run locally" in result.stderr
    assert "succeeded in" in result.stdout
    files = [line.split(": ", 1)[1] for line in result.stdout.splitlines()
             if line.startswith("  ") and ": /" in line]
    assert files and all(Path(f).exists() for f in files)
