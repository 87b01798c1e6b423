"""Which paths the records endpoint serves: run records under a run store, nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlpipe_jupyter.errors import NotFound, UsageError
from mlpipe_jupyter.server.records import record_model, record_path

NB = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _record(home: Path, run: str = "r1", step: str = "s", name: str = "output.ipynb") -> Path:
    (home / "mlpipe.db").parent.mkdir(parents=True, exist_ok=True)
    (home / "mlpipe.db").touch()
    path = home / "runs" / run / step / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(NB))
    return path


def test_a_record_is_a_read_only_notebook_model(tmp_path):
    _record(tmp_path / "proj" / ".mlpipe")
    path = "proj/.mlpipe/runs/r1/s/output.ipynb"
    model = record_model(tmp_path, path)
    assert model["type"] == "notebook" and model["writable"] is False
    assert model["content"] == NB and model["format"] == "json"
    assert model["name"] == "output.ipynb" and model["path"] == path
    light = record_model(tmp_path, path, content=False)
    assert light["content"] is None and light["size"] == model["size"]
    _record(tmp_path / ".mlpipe", name="step.ipynb")  # a store at the server's root
    assert record_model(tmp_path, ".mlpipe/runs/r1/s/step.ipynb")["content"] == NB


@pytest.mark.parametrize("path", ["/etc/passwd", "proj/../proj/.mlpipe/runs/r1/s/output.ipynb",
                                  "proj//.mlpipe/runs/r1/s/output.ipynb", "",
                                  "proj\\.mlpipe\\runs\\r1\\s\\output.ipynb"])
def test_paths_that_could_escape_are_usage_errors(tmp_path, path):
    _record(tmp_path / "proj" / ".mlpipe")
    with pytest.raises(UsageError):
        record_path(tmp_path, path)


@pytest.mark.parametrize("path", [
    "proj/.mlpipe/mlpipe.db",                     # the store itself
    "proj/.mlpipe/runs/r1/s/log.txt",             # not a notebook record
    "proj/.mlpipe/runs/r1/s/work/output.ipynb",   # inside a step's work dir
    "proj/.mlpipe/runs/r1/t/output.ipynb",        # no such step
    "other/.mlpipe/runs/r1/s/output.ipynb",       # a look-alike without a run store
])
def test_anything_but_an_existing_record_is_not_found(tmp_path, path):
    _record(tmp_path / "proj" / ".mlpipe")
    lookalike = tmp_path / "other" / ".mlpipe" / "runs" / "r1" / "s" / "output.ipynb"
    lookalike.parent.mkdir(parents=True)
    lookalike.write_text(json.dumps(NB))
    (tmp_path / "proj" / ".mlpipe" / "runs" / "r1" / "s" / "work").mkdir()
    (tmp_path / "proj" / ".mlpipe" / "runs" / "r1" / "s" / "work" / "output.ipynb").write_text("{}")
    with pytest.raises(NotFound):
        record_path(tmp_path, path)


def test_a_symlink_out_of_the_root_is_not_served(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "secret.ipynb"
    outside.write_text(json.dumps(NB))
    record = _record(root / ".mlpipe")
    record.unlink()
    record.symlink_to(outside)
    with pytest.raises(NotFound):
        record_path(root, ".mlpipe/runs/r1/s/output.ipynb")


def test_a_record_that_is_not_json_is_not_found_with_the_reason(tmp_path):
    _record(tmp_path / ".mlpipe").write_text("{half")
    with pytest.raises(NotFound, match="not a readable notebook"):
        record_model(tmp_path, ".mlpipe/runs/r1/s/output.ipynb")
