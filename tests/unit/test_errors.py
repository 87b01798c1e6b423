"""The error family: each kind declares its HTTP status and exit code, and context is added to
an error without rebuilding it (`with_context`), so a subclass keeps what its constructor took."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpipe_jupyter.errors import (
    Cancelled,
    ExecutorError,
    MlpipeError,
    NotebookError,
    NotFound,
    SpecError,
    StepFailed,
    StepTimeout,
    UsageError,
)
from mlpipe_jupyter.run.storecheck import StoreDamaged
from mlpipe_jupyter.service.errors import BadParameters


def test_each_kind_declares_its_exit_code_by_one_rule():
    refusals = (UsageError, SpecError, NotebookError, NotFound, BadParameters)
    failures = (MlpipeError, ExecutorError, StepFailed, StepTimeout, Cancelled, StoreDamaged)
    assert {kind.exit_code for kind in refusals} == {2}
    assert {kind.exit_code for kind in failures} == {1}
    assert all(400 <= kind.http_status < 500 for kind in refusals)


def test_with_context_keeps_the_class_and_every_field():
    err = UsageError("step `fit`: --memory 2X is not a size", step="fit", option="--memory")
    placed = err.with_context("nb.ipynb, cell 3", file="/w/nb.ipynb", cell="3")
    assert type(placed) is UsageError and placed is not err
    assert str(placed) == "nb.ipynb, cell 3: step `fit`: --memory 2X is not a size"
    assert placed.to_dict() == {"error": "UsageError", "message": str(placed), "step": "fit",
                                "option": "--memory", "file": "/w/nb.ipynb", "cell": "3"}
    assert placed.args == (placed.message,)
    assert str(err) == "step `fit`: --memory 2X is not a size" and err.file is None  # untouched


def test_with_context_keeps_what_a_subclass_constructor_took():
    failed = StepTimeout("step `s` timed out", ename="TimeoutError", evalue="2 s", step="s")
    placed = failed.with_context("run r1")
    assert type(placed) is StepTimeout
    assert (placed.ename, placed.evalue, placed.step) == ("TimeoutError", "2 s", "s")
    assert placed.to_dict()["ename"] == "TimeoutError"
    bad = BadParameters("unknown parameters `a`, `b`", parameters=["a", "b"])
    assert bad.with_context("pipeline p").to_dict()["parameters"] == ["a", "b"]
    damaged = StoreDamaged(Path("/h/mlpipe.db"), "truncated")  # takes (path, why), not a message
    placed = damaged.with_context("mlpipe runs")
    assert type(placed) is StoreDamaged and placed.why == "truncated"
    assert str(placed).startswith("mlpipe runs: /h/mlpipe.db is damaged (truncated)")


def test_with_context_names_a_field_it_does_not_know():
    with pytest.raises(TypeError, match="unknown field line"):
        UsageError("x").with_context("here", line="3")
