"""The model is pure (importing it loads no IPython, jupyter_client or docker), a step option is
declared once (on its spec field), and an error said of a notebook cell keeps its fields."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import MISSING, fields

import pytest

from mlpipe_jupyter.errors import SpecError, UsageError
from mlpipe_jupyter.model.notebook import read_pipeline
from mlpipe_jupyter.model.options import (
    parse_setup_line,
    read_step_line,
    setup_help,
    step_help,
)
from mlpipe_jupyter.model.spec import PipelineSpec, StepSpec
from tests.conftest import write_notebook

MODEL = ["mlpipe_jupyter.model"] + [
    f"mlpipe_jupyter.model.{name}" for name in
    ("spec", "options", "rules", "builder", "notebook", "dag", "cache", "codeinfo", "namescan",
     "checks", "states")]


@pytest.mark.parametrize("module", MODEL)
def test_importing_the_model_loads_no_ipython_jupyter_or_docker(module):
    code = (f"import sys, {module}\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'IPython', 'jupyter_client', 'docker', 'ipykernel'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def _flags(cls: type) -> dict[str, str]:
    return {f.name: f.metadata["option"].flag for f in fields(cls) if "option" in f.metadata}


def _parser_flags(help_text: str) -> set[str]:
    return {word.strip("[],") for word in help_text.split() if word.startswith(("--", "[--"))}


def test_every_step_option_is_one_spec_field_and_the_parser_has_exactly_those():
    flags = _flags(StepSpec)
    # every field but the cell's code and the builder's mark is set by the line
    assert set(f.name for f in fields(StepSpec)) - set(flags) == {"code", "inputs_inferred"}
    assert flags["name"] == "name"  # the one positional
    options = {flag for flag in flags.values() if flag.startswith("--")}
    assert _parser_flags(step_help()) == options | {"--no-run"}  # --no-run: the magic's own
    assert _parser_flags(setup_help()) == set(_flags(PipelineSpec).values()) \
        == {"--requirements", "--pip"}


def test_a_line_with_every_option_lands_in_the_spec():
    line = read_step_line(
        "fit --inputs a data/b.csv --outputs m --after load --env K=v --retries 2 --timeout 9 "
        "--no-cache --image img:1 --cpus 0.5 --memory 2g --gpus 1 --network none --no-run "
        "--foreach a --batch-size 5 --workers 2 --max-failures 1 --item-timeout 3")
    expected = StepSpec(
        name="fit", code="", inputs=("a", "data/b.csv"), outputs=("m",), after=("load",),
        env=(("K", "v"),), retries=2, timeout=9.0, no_cache=True, image="img:1", cpus=0.5,
        memory="2g", gpus=1, network="none", foreach="a", batch_size=5, workers=2,
        max_failures=1, item_timeout=3.0)
    assert line.spec == expected and line.no_run
    # the line sets every option, so none of them is dropped on the way into the spec
    defaults = {f.name: f.default for f in fields(StepSpec)}
    assert [name for name in _flags(StepSpec) if getattr(expected, name) == defaults[name]] == []
    assert parse_setup_line("--requirements r.txt --pip numpy 'pandas>=2'") == PipelineSpec(
        requirements="r.txt", pip=("numpy", "pandas>=2"))


def test_the_spec_json_keeps_its_fields_order_and_defaults():
    """StepSpec's JSON is a file format (pipeline.json, the run store): declaring the options
    on the fields changed none of it."""
    assert list(StepSpec(name="s", code="x = 1").to_dict().items()) == [
        ("name", "s"), ("code", "x = 1"), ("inputs", []), ("outputs", []), ("after", []),
        ("inputs_inferred", False), ("env", {}), ("retries", 0), ("timeout", None),
        ("no_cache", False), ("image", None), ("cpus", None), ("memory", None), ("gpus", None),
        ("network", None)]
    assert [f.name for f in fields(StepSpec) if f.default is MISSING] == ["name", "code"]
    assert PipelineSpec().to_dict() == {"version": 1, "params": {}, "setup": "",
                                        "requirements": None, "pip": [], "steps": []}


def test_an_error_in_a_cell_keeps_its_class_and_fields(tmp_path):
    path = write_notebook(tmp_path / "nb.ipynb", ["%%step ok\nx = 1", "%%step fit --gpus 0\n"])
    with pytest.raises(UsageError) as info:
        read_pipeline(path)
    assert info.value.to_dict() == {
        "error": "UsageError", "message": "nb.ipynb, cell 2: step `fit` --gpus: must be 1 or "
        "more, got 0", "step": "fit", "cell": "2", "option": "--gpus", "file": str(path)}

    twice = write_notebook(tmp_path / "twice.ipynb", ["%%step a\nx = 1", "%%step a\ny = 1"])
    with pytest.raises(SpecError) as info:
        read_pipeline(twice)
    assert info.value.to_dict() == {
        "error": "SpecError", "message": "twice.ipynb, cell 2: duplicate step name `a` (cells 1 "
        "and 2)", "step": "a", "cell": "2", "file": str(twice)}
