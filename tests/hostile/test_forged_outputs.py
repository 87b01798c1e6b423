"""A step that shapes its outputs to break the runner that publishes them: a directory nested
deeper than anything walks recursively, a variable's meta.json rewritten to point outside its
artifact or at a serializer nobody has (real kernels, real containers). Each is the step's
failure in one line, with nothing published and nothing left in staging."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from mlpipe_jupyter.errors import NotFound
from mlpipe_jupyter.run.artifacts import ArtifactStore
from mlpipe_jupyter.safefs import MAX_DEPTH, remove_tree
from tests.hostile.conftest import EXECUTORS, run_pipeline, stored_steps

pytestmark = pytest.mark.docker

DEEP = """\
%%step deep --outputs data/
import os
path = 'data'
os.mkdir(path)
for _ in range(1100):  # os.makedirs would recurse a level at a time
    path += '/a'
    os.mkdir(path)
with open('data/top.txt', 'w') as fh:
    fh.write('top')
"""


def staged_files(runner) -> list[str]:
    staging = runner.home.artifacts / ".staging"
    return [os.path.join(root, name) for root, dirs, files in os.walk(staging)
            for name in dirs + files]


def _flatten(directory) -> None:
    """Remove the chain `a/a/...` under `directory` a level at a time (shutil.rmtree, and so
    pytest's clean-up of old tmp dirs, recurses a frame a level and gives up on it)."""
    while os.path.isdir(directory / "a"):
        if os.path.isdir(directory / "a" / "a"):
            os.rename(directory / "a" / "a", directory / "lift")
            os.rmdir(directory / "a")
            os.rename(directory / "lift", directory / "a")
        else:
            shutil.rmtree(directory / "a")


@pytest.fixture
def deep_dirs(notebook_dir):
    yield
    for root, dirs, _ in os.walk(notebook_dir):
        if os.path.basename(root) == "data" and "a" in dirs:
            _flatten(Path(root))
            dirs.remove("a")


@EXECUTORS
def test_a_directory_output_nested_too_deep_fails_its_step_in_one_line(notebook_dir, client,
                                                                       executor, deep_dirs):
    runner, state = run_pipeline(notebook_dir, [DEEP], executor)
    step = stored_steps(runner)["deep"]
    assert state == "failed", step
    assert step["state"] == "failed"
    assert step["error"]["message"] == (
        f"step `deep`: output `data/` is nested deeper than {MAX_DEPTH} levels")
    assert runner.outputs.get("deep", {}) == {}
    assert staged_files(runner) == []
    assert [d for d in runner.artifacts.digests()
            if runner.artifacts.meta(d).get("path") == "data"] == []


FORGE = """\
%%step forge --outputs v --env 'META={meta}'
import json
import os
import shutil
from pathlib import Path
import types
import mlpipe_jupyter.step.runtime as real


def save_outputs(io, namespace, variables, files):
    real.save_outputs(io, namespace, variables, files)
    with open(os.path.join(io['outputs_dir'], 'v', 'meta.json'), 'w') as fh:
        fh.write(os.environ['META'])


_mlpipe_runtime = types.SimpleNamespace(save_outputs=save_outputs)
v = 1
"""


@EXECUTORS
@pytest.mark.parametrize(("meta", "why"), [
    ({"kind": "file", "path": "../../.."}, "its meta.json has fields a variable has not: `path`"),
    ({"kind": "variable", "serializer": "json", "path": "/etc"},
     "its meta.json has fields a variable has not: `path`"),
    ({"kind": "file", "serializer": "json"}, "its meta.json says kind 'file', not 'variable'"),
    ({"kind": "variable", "serializer": "evil"},
     "its meta.json names serializer 'evil', which is not installed here"),
    ({"kind": "variable", "serializer": "npy"},
     "no data file `v/data/value.npy` for its serializer 'npy'"),
])
def test_a_forged_variable_meta_fails_its_step_in_one_line(notebook_dir, client, executor,
                                                           meta, why):
    text = json.dumps(meta)
    runner, state = run_pipeline(notebook_dir, [FORGE.format(meta=text.replace(" ", ""))],
                                 executor)
    step = stored_steps(runner)["forge"]
    assert state == "failed", step
    assert step["error"]["message"] == f"step `forge`: output `v`: {why}"
    assert runner.outputs.get("forge", {}) == {}
    assert staged_files(runner) == []
    for digest in runner.artifacts.digests():  # nothing of the step's was published
        assert (runner.artifacts.path(digest) / "meta.json").read_text() != text.replace(" ", "")


def _artifact(store: ArtifactStore, meta: dict) -> str:
    digest = "ab" * 32
    (store.path(digest) / "data").mkdir(parents=True)
    (store.path(digest) / "meta.json").write_text(json.dumps(meta))
    return digest


@pytest.mark.parametrize("meta", [
    {"kind": "file", "path": "../../.."}, {"kind": "directory", "path": "/etc"},
    {"kind": "file", "path": "a/../../b"}, {"kind": "file"}, {"kind": "variable", "path": "x"},
    {"kind": "elsewhere", "path": "x"}, ["not", "an", "object"],
])
def test_an_artifact_whose_meta_points_outside_it_is_not_found(tmp_path, meta):
    """Whatever put it there (a store written by hand, an older bug): data_path never names a
    path outside the artifact, and a bad meta.json is one NotFound line."""
    store = ArtifactStore(tmp_path / "artifacts")
    digest = _artifact(store, meta)
    with pytest.raises(NotFound, match=f"artifact {digest[:12]}: its meta.json is not"):
        store.data_path(digest)
    with pytest.raises(NotFound):
        store.load(digest)


def test_a_variable_with_an_unknown_serializer_does_not_load(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    digest = _artifact(store, {"kind": "variable", "serializer": "evil"})
    with pytest.raises(NotFound, match="no serializer named `evil` is installed"):
        store.load(digest)
    with pytest.raises(NotFound, match="is a variable, not a file"):
        store.data_path(digest)


RETRIED = """\
%%step litter --outputs done --retries 1
import os
path = 'junk'
os.mkdir(path)
for _ in range(1100):  # a tree deeper than shutil.rmtree can recurse
    path += '/a'
    os.mkdir(path)
if os.environ['MLPIPE_ATTEMPT'] == '1':
    raise RuntimeError('first attempt fails')
done = True
"""


def test_a_tree_too_deep_for_rmtree_does_not_break_the_retry(notebook_dir):
    """Each attempt starts from an empty work dir: the runner removes what the last attempt
    left, however deep (shutil.rmtree raised RecursionError here and the run was cancelled)."""
    try:
        runner, state = run_pipeline(notebook_dir, [RETRIED], "local")
        step = stored_steps(runner)["litter"]
        assert (state, step["state"], step["attempt"]) == ("succeeded", "succeeded", 2), step
        assert runner.artifacts.load(runner.outputs["litter"]["done"]) is True
    finally:  # the last attempt's tree, which pytest's own tmp cleanup could not remove
        remove_tree(notebook_dir / ".mlpipe" / "runs")
