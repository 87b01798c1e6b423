"""Values and inputs (issue 17), pure parts: parameters are JSON values, so the step receives
exactly what its cache key was computed from; step lines split by the shell's rules; options
that would wait forever; cells that are not cells."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from papermill.translators import PythonTranslator

from mlpipe_jupyter.errors import SpecError, UsageError
from mlpipe_jupyter.model.builder import PipelineBuilder
from mlpipe_jupyter.model.cache import _h
from mlpipe_jupyter.model.checks import check_param
from mlpipe_jupyter.model.notebook import read_pipeline
from mlpipe_jupyter.model.options import parse_step_line
from mlpipe_jupyter.model.rules import parse_memory

# what `-p NAME=VALUE` can give (ast.literal_eval): JSON values and the literals that are not
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5),
                     st.binary(max_size=3), st.complex_numbers(max_magnitude=5))
_LITERALS = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.tuples(inner, inner),
        st.frozensets(st.integers(), max_size=3).map(set),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers(), st.booleans()), inner,
                        max_size=3)),
    max_leaves=6)


def same(a, b) -> bool:
    """Equal, and of the same type all the way down (1 == 1.0 == True, (1,) != [1] as values)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=500, deadline=None)
@given(_LITERALS, st.sampled_from([None, [0], {"k": 0}, 0.5, 1, "s", True]))
def test_an_accepted_parameter_reaches_the_step_as_itself_and_keys_as_itself(value, default):
    try:
        got = check_param("x", value, default)
    except UsageError as err:
        assert str(err).startswith("-p x=") and "\n" not in str(err)
        return
    # papermill writes this into the step's parameters cell: the step runs it
    assert same(eval(PythonTranslator.translate(got)), got)
    # the cache key is made of the JSON of the value: the JSON means this value and no other
    assert same(json.loads(json.dumps(got, allow_nan=False)), got)
    assert _h(got) == _h(json.loads(json.dumps(got)))


@pytest.mark.parametrize("value, default", [
    ((1, 2), None), ({1, 2}, None), (b"ab", None), ({1: 2}, None), ([(1, 2)], None),
    (math.nan, 0.1), (math.inf, 0.1), (-math.inf, None), ([math.nan], [0.0]), ({"a": {1}}, {}),
    ((1, (2, 3)), [0]),  # a tuple for a list becomes a list, but not what is inside it
])
def test_what_json_cannot_carry_is_refused(value, default):
    with pytest.raises(UsageError, match=r"^-p x=.*; parameters are JSON values \("):
        check_param("x", value, default)


def test_a_huge_int_for_a_float_is_one_line():
    with pytest.raises(UsageError, match=r"^-p x=1000.*\.\.\.: too large for a float"):
        check_param("x", 10 ** 400, 0.1)


@pytest.mark.parametrize("code", ["x = {1: 2}", "x = [(1, 2)]", "x = 1e999", "x = {'a': (1,)}"])
def test_a_default_json_cannot_carry_is_refused(code):
    builder = PipelineBuilder()
    with pytest.raises(UsageError, match=r"^%%pipeline_params: `x = .*`: .*JSON values"):
        builder.add_params(code)
    assert builder.params == {}


# -- step lines: the shell's quoting --------------------------------------------------------
@pytest.mark.parametrize("line, outputs, env", [
    ('s --outputs "my file.csv" y', ("my file.csv", "y"), ()),
    ("s --outputs 'my file.csv'", ("my file.csv",), ()),
    ("s --outputs my\\ file.csv", ("my file.csv",), ()),
    ('s --env K="a b" J=\'c "d"\' E=', (), (("E", ""), ("J", 'c "d"'), ("K", "a b"))),
    ("s --outputs a#b", ("a#b",), ()),  # `#` is part of a word, as before
])
def test_step_lines_split_by_shell_rules(line, outputs, env):
    options = parse_step_line(line)
    assert (options.outputs, options.env) == (outputs, env)


@pytest.mark.parametrize("line, message", [
    ("s --timeout inf", "step `s` --timeout: must be a positive number of seconds, at most "
                        "9223372036 (leave it out for no timeout), got inf"),
    ("s --timeout nan", "step `s` --timeout: must be a positive number of seconds, at most "
                        "9223372036 (leave it out for no timeout), got nan"),
    ("s --timeout 1e10", "got 1e+10"),
    ("s --cpus inf", "step `s` --cpus: must be a positive number, got inf"),
    ("s --cpus nan", "step `s` --cpus: must be a positive number, got nan"),
    ("s --memory " + "9" * 400 + "g", "is not a size such as 512m or 2g"),
    ('s --outputs "a', '%%step s --outputs "a: No closing quotation'),
])
def test_options_that_would_wait_forever_are_one_line(line, message):
    with pytest.raises(UsageError) as info:
        parse_step_line(line)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_longest_timeout_a_timer_takes_is_accepted():
    assert parse_step_line("s --timeout 9223372036").timeout == 9223372036.0
    assert parse_memory("1.5g") == 3 * 2 ** 29


# -- cells ------------------------------------------------------------------------------------
def test_a_step_name_is_read_as_the_builder_reads_it(tmp_path):
    """Duplicate names are found from the parsed line, quotes and all."""
    cells = [{"cell_type": "code", "metadata": {}, "source": src} for src in
             ["%%step 'fit' --outputs a\na = 1", "%%step fit --outputs b\nb = 1"]]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4}))
    with pytest.raises(SpecError, match=r"^nb.ipynb, cell 2: duplicate step name `fit` "
                                            r"\(cells 1 and 2\)$"):
        read_pipeline(path)


def test_a_markdown_cell_without_source_is_no_error_and_a_list_source_is_joined(tmp_path):
    cells = [{"cell_type": "markdown", "metadata": {}},
             {"cell_type": "code", "source": ["%%step s --outputs y\n", "y = 1"]}]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4}))
    assert read_pipeline(path).steps[0].code == "y = 1"
