"""Which paths the records endpoint serves: run records under a run store, nothing else (the
server itself, over HTTP: tests/integration/test_records_server.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpipe_jupyter.errors import NotFound, UsageError
from mlpipe_jupyter.run.store import RunStore
from mlpipe_jupyter.server import records
from mlpipe_jupyter.server.records import (
    MAX_RECORD_SIZE,
    RecordTooLarge,
    open_record,
    read_record,
)


def record_path(root: Path, path: str) -> None:
    open_record(root, path).close()


def record_model(root: Path, path: str, *, content: bool = True,
                 limit: int = MAX_RECORD_SIZE) -> dict:
    """What the records handler serves (handlers.py): open_record's model, and with content
    the bytes read_record checked (the handler streams them as they are)."""
    with open_record(root, path) as record:
        model = record.model()
        if content:
            model.update(content=json.loads(read_record(record, limit)), format="json")
    return model


NB = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _record(home: Path, run: str = "r1", step: str = "s", name: str = "output.ipynb") -> Path:
    if not (home / "mlpipe.db").exists():
        RunStore(home / "mlpipe.db").close()
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


def test_a_record_over_the_limit_is_refused_before_it_is_read(tmp_path):
    _record(tmp_path / "p" / ".mlpipe").write_text(json.dumps(NB) + " " * 100)
    size = len(json.dumps(NB)) + 100
    path = "p/.mlpipe/runs/r1/s/output.ipynb"
    assert record_model(tmp_path, path, limit=size)["content"] == NB
    with pytest.raises(RecordTooLarge, match="max_record_size") as err:
        record_model(tmp_path, path, limit=size - 1)
    assert err.value.http_status == 413
    assert record_model(tmp_path, path, content=False, limit=0)["size"] == size


@pytest.mark.parametrize("text", ['{"a": NaN}', "[]", "\ufeff{}", '{"a": 1'])
def test_only_a_json_object_a_browser_can_parse_is_served(tmp_path, text):
    _record(tmp_path / "p" / ".mlpipe").write_text(text, encoding="utf-8")
    with pytest.raises(NotFound, match="not a readable notebook"):
        record_model(tmp_path, "p/.mlpipe/runs/r1/s/output.ipynb")


def test_an_empty_mlpipe_db_is_no_store(tmp_path):
    home = tmp_path / "p" / ".mlpipe"
    home.mkdir(parents=True)
    (home / "mlpipe.db").touch()
    _record(home)
    with pytest.raises(NotFound, match="not a run store"):
        record_path(tmp_path, "p/.mlpipe/runs/r1/s/output.ipynb")
    assert sorted(p.name for p in home.iterdir()) == ["mlpipe.db", "runs"]


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


JSON_TEXT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(st.characters(codec="utf-8")),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(st.text(max_size=4), JSON_TEXT, max_size=4),
       ascii_only=st.booleans(), cut=st.integers(0, 400), noise=st.binary(max_size=3))
def test_the_servers_lean_json_check_agrees_with_parsing(value, ascii_only, cut, noise):
    """The server checks a record without building it (records._check_json); it must accept
    exactly what parsing it accepts (a JSON object in UTF-8, no NaN or Infinity): whole, cut
    short, with bytes spliced in."""
    text = json.dumps(value, ensure_ascii=ascii_only).encode()
    for raw in (text, text[:cut], text[:cut] + noise + text[cut:], b" \n" + text):
        try:
            parsed = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
            if not isinstance(parsed, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            with pytest.raises(NotFound, match="not a readable notebook"):
                records._check_json("p", raw)
        else:
            records._check_json("p", raw)


def _swap_after_the_check(tmp_path, swap) -> dict:
    """The store's tables as _check_store reads them when `swap` replaces `mlpipe.db` after it
    was opened without following a link and before SQLite opens it."""
    import sqlite3

    home = tmp_path / "p" / ".mlpipe"
    _record(home)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    home_fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd, _ = records._open_file(home_fd, "mlpipe.db", "p")
        try:
            swap(home, other)
            return records._store_tables(home_fd, fd, "p")
        finally:
            os.close(fd)
    finally:
        os.close(home_fd)


def test_sqlite_reads_the_store_file_that_was_checked_not_a_link_swapped_in(tmp_path):
    def rename_and_link(home, other):
        (home / "mlpipe.db").rename(home / "moved.db")
        (home / "mlpipe.db").symlink_to(other)

    assert set(_swap_after_the_check(tmp_path, rename_and_link)) == {"runs", "steps"}


def test_a_store_deleted_after_the_check_is_no_store(tmp_path):
    def delete_and_plant(home, other):  # SQLite would open the name the kernel gives it
        (home / "mlpipe.db").unlink()
        (home / "mlpipe.db (deleted)").symlink_to(other)
        (home / "mlpipe.db").symlink_to(other)

    with pytest.raises(NotFound, match="changed while it was opened"):
        _swap_after_the_check(tmp_path, delete_and_plant)
