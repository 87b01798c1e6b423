"""The step option parser, the spec's JSON round trip, input inference, parameters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpipe_jupyter.errors import UsageError
from mlpipe_jupyter.model.builder import PipelineBuilder
from mlpipe_jupyter.model.codeinfo import free_names, parse_assignments, parse_params
from mlpipe_jupyter.model.options import parse_step_line, read_step_line
from mlpipe_jupyter.model.rules import parse_memory
from mlpipe_jupyter.model.spec import PipelineSpec, StepSpec


def test_parse_full_line():
    line = read_step_line("fit --inputs train --outputs model reports/m.json --after load "
                          "--env A=1 B=x=y --retries 2 --timeout 30 --no-cache --no-run")
    opts = line.spec
    assert opts.name == "fit"
    assert not opts.inputs_inferred
    assert opts.inputs == ("train",)
    assert opts.outputs == ("model", "reports/m.json")
    assert opts.after == ("load",)
    assert opts.env == (("A", "1"), ("B", "x=y"))
    assert (opts.retries, opts.timeout, opts.no_cache, line.no_run) == (2, 30.0, True, True)
    assert read_step_line("fit").no_run is False


def test_inputs_omitted_means_inferred():
    spec = parse_step_line("load --outputs raw")
    assert spec.inputs_inferred and spec.inputs == ()


@pytest.mark.parametrize("line, needle", [
    ("", "required: name"),
    ("1fit", "invalid step name `1fit`"),
    ("fit --inputs /etc/passwd", "`/etc/passwd` is an absolute path"),
    ("fit --outputs ../up.csv", "`../up.csv` escapes"),
    ("fit --outputs a/../../b", "escapes"),
    ("fit --outputs .mlpipe/x", "inside .mlpipe/"),
    ("fit --outputs x x", "`x` is listed twice"),
    ("fit --retries -1", "--retries: must be 0 or more"),
    ("fit --timeout 0", "--timeout: must be a positive"),
    ("fit --env NOEQUALS", "`NOEQUALS` is not KEY=VALUE"),
    ("fit --memory lots", "`lots` is not a size"),
    ("fit --network host", "invalid choice: 'host'"),
    ("fit --bogus", "%%step fit: unknown option --bogus"),
    ("fit 'unclosed", "No closing quotation"),
    ("fit --after 9x", "`9x` is not a step name"),
])
def test_bad_lines_give_one_line_usage_errors(line, needle):
    with pytest.raises(UsageError) as info:
        parse_step_line(line)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_any_line_gives_options_or_usage_error(line):
    try:
        result = parse_step_line(line)
    except UsageError as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert isinstance(result, StepSpec)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["fit", "--inputs", "--outputs", "--after", "x", "a/b.csv",
                                 "--retries", "3", "--timeout", "--no-cache", "--env", "K=V",
                                 "-", "--", "..", "/abs", "--memory", "1g", "--cpus", "0.5"]),
                max_size=10))
def test_option_soup_never_tracebacks(tokens):
    try:
        result = parse_step_line(" ".join(tokens))
    except UsageError as err:
        assert "\n" not in str(err)
    else:
        assert result.name in tokens


def test_memory_sizes():
    assert parse_memory("512m") == 512 * 1024**2
    assert parse_memory("1g") == 1024**3
    assert parse_memory("1.5G") == int(1.5 * 1024**3)
    assert parse_memory("2048") == 2048


def test_spec_json_round_trip():
    spec = PipelineSpec(
        steps=(StepSpec(name="a", code="x = 1", outputs=("x", "out/f.csv"), env=(("K", "v"),),
                        retries=1, timeout=5.0, memory="1g", cpus=0.5),
               StepSpec(name="b", code="print(x)", inputs=("x",), inputs_inferred=True,
                        after=("a",), no_cache=True)),
        params=(("lr", 0.1), ("layers", [1, 2]), ("name", "n")),
        setup="import os", requirements="req.txt", pip=("numpy",))
    assert PipelineSpec.from_json(spec.to_json()) == spec


def test_free_names_follow_flow_order():
    code = ("import json\ntrain = train.dropna()\ny = [r * k for r in rows]\n"
            "def f(a, b=lr):\n    return a + c\nprint(json, y, f)")
    assert free_names(code) == ("train", "rows", "k", "lr", "c")


def test_free_names_accept_ipython_syntax():
    assert free_names("!ls\n%matplotlib inline\nx = model.predict(data)") == ("model", "data")


def test_inference_uses_only_other_steps_variable_outputs():
    b = PipelineBuilder()
    b.add_step("load --outputs raw data/file.csv", "raw = 1")
    b.add_step("use", "print(raw + other)\nraw2 = raw")
    spec = b.spec()
    use = spec.step("use")
    assert use.inputs == ("raw",) and use.inputs_inferred


def test_builder_replaces_a_rerun_step_and_a_renamed_cell():
    b = PipelineBuilder()
    b.add_step("a --outputs x", "x = 1", cell_id="c1")
    b.add_step("a --outputs x", "x = 2", cell_id="c1")
    assert [s.code for s in b.spec().steps] == ["x = 2"]
    b.add_step("renamed --outputs x", "x = 3", cell_id="c1")
    assert b.spec().step_names == ("renamed",)


def test_params_are_literals_only():
    assert parse_params("a = 1\nb: float = 0.5  # c\nc = [1, 'x']\nd = None") == {
        "a": 1, "b": 0.5, "c": [1, "x"], "d": None}
    with pytest.raises(UsageError, match="`x` must be a JSON-compatible literal"):
        parse_params("x = foo()")
    with pytest.raises(UsageError, match="only `NAME = literal`"):
        parse_params("import os")
    with pytest.raises(UsageError, match="use a list"):
        parse_params("t = (1, 2)")


def test_cli_assignments_are_literals_or_strings():
    assert parse_assignments(["a=1", "b=0.5", "c=[1,2]", "d=gbm", "e='q'"]) == {
        "a": 1, "b": 0.5, "c": [1, 2], "d": "gbm", "e": "q"}
    with pytest.raises(UsageError, match="expected NAME=VALUE"):
        parse_assignments(["novalue"])
