"""A step that plants symlinks where the runner reads or writes: the runner must never follow
one out of a directory the step could write (real kernels, real containers)."""

from __future__ import annotations

import os

import pytest

from tests.hostile.conftest import EXECUTORS, run_pipeline, store_holds, stored_steps

pytestmark = pytest.mark.docker

# where a step's record was once writable from inside its container
PLANT = """\
%%step plant --env VICTIM={victim}
import os
tried = {{}}
for path in ('/mlpipe/step/output.ipynb', '/mlpipe/step/kernel.log'):
    try:
        if os.path.lexists(path):
            os.remove(path)
        os.symlink(os.environ['VICTIM'], path)
        tried[path] = 'planted'
    except OSError as err:
        tried[path] = err.strerror
print('planting:', tried)
"""


@pytest.mark.parametrize("papermill", ["host", "container"])
def test_a_planted_symlink_does_not_redirect_the_executed_notebook(notebook_dir, client,
                                                                   host_file, papermill):
    before = host_file.read_bytes()
    runner, state = run_pipeline(notebook_dir, [PLANT.format(victim=host_file)], "docker",
                                 executor_options={"papermill": papermill})
    assert host_file.read_bytes() == before  # never written through the link
    step_dir = runner.home.step_dir(runner.run_id, "plant")
    for name in ("output.ipynb", "kernel.log", "log.txt"):
        assert not (step_dir / name).is_symlink(), name
    log = (step_dir / "log.txt").read_text()
    step = stored_steps(runner)["plant"]
    if papermill == "host":
        # the record is not in the container at all: nothing to plant, the step ran as usual
        assert state == "succeeded", step
        assert "planting: {'/mlpipe/step/output.ipynb': 'No such file or directory'" in log
        assert "planting:" in (step_dir / "output.ipynb").read_text()
    else:
        # papermill in the container writes its record where the runner collects it from: a
        # symlink there is refused, in one line naming the step and the notebook
        assert state == "failed"
        assert "'/mlpipe/step/output.ipynb': 'planted'" in log
        assert step["error"]["message"] == (
            f"step `plant`: its executed notebook output.ipynb is a symlink (to "
            f"{str(host_file)!r}); refused, the runner reads no link a step left")
        assert not (step_dir / "output.ipynb").exists()


# the link resolves inside the container as well (a decoy at the same path), so the step's own
# check of its outputs passes and only the runner can tell
LEAK = """\
%%step leak --outputs secret.txt --env SECRET={secret}
import os
target = os.environ['SECRET']
if not os.path.exists(target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, 'w') as fh:
        fh.write('decoy')
os.symlink(target, 'secret.txt')
"""
USE = "%%step use --inputs secret.txt --outputs seen\nseen = open('secret.txt').read()"


@EXECUTORS
def test_a_file_output_that_links_to_a_host_file_is_refused(notebook_dir, client, host_file,
                                                            executor):
    secret = host_file.read_bytes()
    runner, state = run_pipeline(notebook_dir, [LEAK.format(secret=host_file), USE], executor)
    assert state == "failed"
    steps = stored_steps(runner)
    assert steps["leak"]["error"]["message"] == (
        f"step `leak`: output `secret.txt` is a symlink (to {str(host_file)!r}); an output "
        "is published as itself, never through a link")
    assert steps["use"]["state"] == "skipped"
    assert store_holds(runner, secret) == []
    assert host_file.read_bytes() == secret


INSIDE = """\
%%step tree --outputs data/
import os
os.makedirs('data/sub')
with open('data/a.txt', 'w') as fh:
    fh.write('a')
os.symlink('a.txt', 'data/alias')
os.symlink('../a.txt', 'data/sub/up')
os.symlink('sub', 'data/subdir')
"""
READ = """\
%%step read --inputs data/ --outputs seen
import os
seen = [open('data/alias').read(), open('data/sub/up').read(), sorted(os.listdir('data/subdir'))]
"""


@EXECUTORS
def test_a_symlink_inside_a_directory_output_is_published_as_a_link(notebook_dir, client,
                                                                    executor):
    runner, state = run_pipeline(notebook_dir, [INSIDE, READ], executor)
    assert state == "succeeded", stored_steps(runner)
    data = runner.artifacts.data_path(runner.outputs["tree"]["data/"])
    links = {p.relative_to(data).as_posix(): os.readlink(p) for p in data.rglob("*")
             if p.is_symlink()}
    assert links == {"alias": "a.txt", "sub/up": "../a.txt", "subdir": "sub"}
    assert (data / "a.txt").read_text() == "a" and not (data / "a.txt").is_symlink()
    assert runner.artifacts.load(runner.outputs["read"]["seen"]) == ["a", "a", ["up"]]


OUTSIDE = """\
%%step tree --outputs data/ --env SECRET={secret}
import os
os.makedirs('data')
with open('data/a.txt', 'w') as fh:
    fh.write('a')
os.symlink(os.environ['SECRET'], 'data/leak')
"""


@EXECUTORS
def test_a_symlink_out_of_a_directory_output_is_refused(notebook_dir, client, host_file,
                                                        executor):
    secret = host_file.read_bytes()
    runner, state = run_pipeline(notebook_dir, [OUTSIDE.format(secret=host_file), READ],
                                 executor)
    assert state == "failed"
    steps = stored_steps(runner)
    assert steps["tree"]["error"]["message"] == (
        f"step `tree`: output `data/` holds a symlink out of it: `data/leak` -> "
        f"{str(host_file)!r}")
    assert steps["read"]["state"] == "skipped"
    assert store_holds(runner, secret) == []


# the serializer writes the value through a link the step put where the value goes: inside the
# container that is the decoy; on the host it is the secret
VARIABLE = """\
%%step var --outputs v --env SECRET={secret}
import os
target = os.environ['SECRET']
if not os.path.exists(target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
os.makedirs('/mlpipe/outputs/v/data')
os.symlink(target, '/mlpipe/outputs/v/data/value.json')
v = 'decoy value'
"""


def test_a_symlink_in_a_variable_output_is_refused(notebook_dir, client, host_file):
    secret = host_file.read_bytes()
    runner, state = run_pipeline(notebook_dir, [VARIABLE.format(secret=host_file)], "docker")
    assert state == "failed"
    assert stored_steps(runner)["var"]["error"]["message"] == (
        f"step `var`: output `v` holds a symlink: `v/data/value.json` -> {str(host_file)!r}")
    assert store_holds(runner, secret) == []
    assert host_file.read_bytes() == secret
