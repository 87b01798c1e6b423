"""Serialisers round trip by type; the artifact store is content-addressed and atomic."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlpipe_jupyter.run.artifacts import ArtifactStore
from mlpipe_jupyter.step import runtime


class Point:
    def __init__(self, x):
        self.x = x

    def __eq__(self, other):
        return isinstance(other, Point) and other.x == self.x


@pytest.mark.parametrize("value, expected", [
    (pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=[10, 20]), "parquet"),
    (np.arange(6, dtype=np.float32).reshape(2, 3), "npy"),
    ({"acc": 0.9, "tags": ["a", None], "n": 3, "ok": True}, "json"),
    ("text", "json"),
    ((1, 2), "cloudpickle"),  # JSON would give back a list
    ({1: "int key"}, "cloudpickle"),
    (float("nan"), "cloudpickle"),
    (Point(3), "cloudpickle"),
    (pd.DataFrame({1: [1.0]}), "cloudpickle"),  # parquet refuses non-string column names
    (np.array([object()]), "cloudpickle"),
])
def test_serialisers_round_trip(tmp_path, value, expected):
    io = {"outputs_dir": str(tmp_path / "out"), "inputs": {}}
    runtime.save_outputs(io, {"v": value}, ["v"], [])
    meta = json.loads((tmp_path / "out/v/meta.json").read_text())
    assert meta["serializer"] == expected
    store = ArtifactStore(tmp_path / "artifacts")
    digest = store.publish_output_variable(tmp_path / "out", "v", label="output `v`")
    back = runtime.load_input({"inputs": {"v": str(store.path(digest))}}, "v")
    if isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(back, value)
    elif isinstance(value, np.ndarray) and expected == "npy":
        np.testing.assert_array_equal(back, value)
        assert back.dtype == value.dtype
    elif expected == "cloudpickle" and isinstance(value, float):
        assert back != back  # NaN
    elif isinstance(value, np.ndarray):
        assert back.shape == value.shape
    else:
        assert back == value and type(back) is type(value)


def test_missing_outputs_are_named(tmp_path):
    with pytest.raises(runtime.MissingOutput,
                       match="did not produce its declared outputs `model`, `r.json`"):
        runtime.save_outputs({"outputs_dir": str(tmp_path)}, {}, ["model"], ["r.json"])


def test_store_dedupes_and_is_immutable(tmp_path):
    store = ArtifactStore(tmp_path / "a")
    (tmp_path / "f.txt").write_text("same")
    d1 = store.publish_file(tmp_path / "f.txt", "f.txt")
    d2 = store.publish_file(tmp_path / "f.txt", "f.txt")
    assert d1 == d2 and store.exists(d1)
    assert store.data_path(d1).read_text() == "same"
    assert not (store.data_path(d1).stat().st_mode & 0o222)
    (tmp_path / "f.txt").write_text("changed")
    assert store.publish_file(tmp_path / "f.txt", "f.txt") != d1
    assert not any(p.is_file() for p in (tmp_path / "a/.staging").rglob("*"))


def test_directory_artifacts(tmp_path):
    store = ArtifactStore(tmp_path / "a")
    (tmp_path / "d/sub").mkdir(parents=True)
    (tmp_path / "d/sub/x.txt").write_text("x")
    digest = store.publish_file(tmp_path / "d", "d/")
    data = store.data_path(digest)
    assert data.name == "d" and (data / "sub/x.txt").read_text() == "x"
    assert store.meta(digest)["kind"] == "directory"


def test_bad_digest_is_refused(tmp_path):
    from mlpipe_jupyter.errors import NotFound

    with pytest.raises(NotFound):
        ArtifactStore(tmp_path).path("../../etc")
