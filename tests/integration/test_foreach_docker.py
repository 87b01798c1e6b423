"""Fan-out steps (`--foreach`) on the docker executor, against the real engine: each worker is a
container running the step's kernel; batches gather in item order as on local kernels;
failures against --max-failures; a hanging batch's container killed and replaced; no worker
container left once the run is over."""

from __future__ import annotations

import os

import pytest

from tests.foreachkit import run as run_on
from tests.foreachkit import value

pytestmark = pytest.mark.docker

SCORE = ("%%step score --foreach nums --batch-size 3 --workers 2 --inputs nums --outputs "
         "scores where\nimport os, time\ntime.sleep(0.05 * (10 - nums[0]) / 3)\n"
         "scores = [n * factor for n in nums]\nwhere = [os.getcwd()]")
CELLS = ["%%step make --outputs nums\nnums = list(range(10))",
         "%%pipeline_params\nfactor = 3", SCORE]


def run(directory, cells, executor="docker", **options):
    return run_on(directory, cells, executor, **options)


def left(client, runner) -> list:
    return client.containers.list(all=True, filters={"label": f"mlpipe.run={runner.run_id}"})


def test_a_list_on_two_worker_containers_gathers_as_local_does(tmp_path, client):
    (tmp_path / "docker").mkdir()
    (tmp_path / "local").mkdir()
    runner, records = run(tmp_path / "docker", CELLS)
    assert runner.state == "succeeded", records.steps
    assert value(runner, "score", "scores") == [n * 3 for n in range(10)]
    # each batch ran in a container (its working directory is the container's)
    assert value(runner, "score", "where") == ["/mlpipe/work"] * 4
    assert records.steps["score"]["fanout"]["batches"] == {
        "total": 4, "succeeded": 4, "failed": 0, "cached": 0}
    assert left(client, runner) == []
    local, _ = run(tmp_path / "local", CELLS, executor="local")
    assert value(local, "score", "scores") == value(runner, "score", "scores")


def test_a_directory_input_and_file_outputs_in_worker_containers(tmp_path, client):
    (tmp_path / "docs").mkdir()
    for name in ("b.txt", "a.txt", "c.txt"):
        (tmp_path / "docs" / name).write_text(name.upper())
    runner, records = run(tmp_path, [
        "%%step upper --foreach docs/ --batch-size 2 --inputs docs/ --outputs lengths out/\n"
        "import os\nos.makedirs('out', exist_ok=True)\nlengths = []\n"
        "for path in ITEMS:\n"
        "    text = open(path).read()\n"
        "    lengths.append([path, len(text)])\n"
        "    open(os.path.join('out', os.path.basename(path)), 'w').write(text.lower())",
    ])
    assert runner.state == "succeeded", records.steps
    assert value(runner, "upper", "lengths") == [["docs/a.txt", 5], ["docs/b.txt", 5],
                                                 ["docs/c.txt", 5]]
    out = runner.home.step_files(runner.run_id, "upper").work / "out"
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt", "c.txt"]
    assert (out / "a.txt").read_text() == "a.txt"
    # the containers ran as nobody (the runner is root here) or as the runner: what they wrote
    # is the runner's, batch results included
    assert {p.stat().st_uid for p in tmp_path.rglob("*")} == {os.getuid()}
    assert left(client, runner) == []


def test_a_failing_batch_under_the_threshold(tmp_path, client):
    runner, records = run(tmp_path, [
        "%%step make --outputs nums\nnums = list(range(6))",
        "%%step score --foreach nums --batch-size 2 --max-failures 1 --inputs nums "
        "--outputs doubled\nif nums[0] == 2:\n    raise ValueError(f'bad {nums}')\n"
        "doubled = [n * 2 for n in nums]",
    ])
    assert runner.state == "succeeded", records.steps
    assert value(runner, "score", "doubled") == [0, 2, 8, 10]
    [failure] = records.steps["score"]["fanout"]["failures"]
    assert (failure["items"], failure["ename"], failure["evalue"], failure["line"]) == (
        [2, 3], "ValueError", "bad [2, 3]", 2)
    assert left(client, runner) == []


def test_a_hanging_batch_kills_and_replaces_its_worker_container(tmp_path, client):
    runner, records = run(tmp_path, [
        "%%step make --outputs nums\nnums = list(range(4))",
        "%%step score --foreach nums --workers 1 --item-timeout 5 --max-failures 1 "
        "--inputs nums --outputs out\nimport socket, time\nif nums == [1]:\n"
        "    time.sleep(600)\nout = [(nums[0], socket.gethostname())]",
    ])
    assert runner.state == "succeeded", records.steps
    out = value(runner, "score", "out")
    assert [n for n, _ in out] == [0, 2, 3]
    assert out[0][1] != out[1][1] == out[2][1]  # another container after the hang
    [failure] = records.steps["score"]["fanout"]["failures"]
    assert (failure["items"], failure["ename"]) == ([1, 1], "TimeoutError")
    assert left(client, runner) == []


def test_the_step_timeout_removes_its_worker_containers(tmp_path, client):
    runner, records = run(tmp_path, [
        "%%step make --outputs nums\nnums = list(range(4))",
        "%%step score --foreach nums --workers 2 --timeout 8 --inputs nums --outputs out\n"
        "import time\ntime.sleep(600)\nout = nums",
    ])
    assert runner.state == "failed"
    assert records.steps["score"]["reason"] == "step `score` timed out after 8 s"
    assert left(client, runner) == []


def test_where_papermill_runs_in_the_container_foreach_is_refused_in_one_line(tmp_path,
                                                                             client):
    runner, records = run(tmp_path, CELLS, executor_options={"papermill": "container"})
    assert runner.state == "failed"
    assert records.steps["score"]["reason"] == (
        "step `score`: the docker executor cannot run --foreach steps where the runner cannot "
        "reach a container's kernel sockets (papermill=container)")
    assert left(client, runner) == []
