"""Pre-run checks (checks.py) and the scope scan under them (namescan.scan_names): pure
functions on plain data."""

from __future__ import annotations

import builtins

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpipe_jupyter.errors import MlpipeError, NotebookError, SpecError, UsageError
from mlpipe_jupyter.model.builder import PipelineBuilder
from mlpipe_jupyter.model.checks import (
    check_param,
    check_params,
    pre_run_warnings,
    require_steps,
    suggest,
)
from mlpipe_jupyter.model.namescan import scan_names
from mlpipe_jupyter.model.notebook import read_pipeline
from mlpipe_jupyter.model.spec import PipelineSpec
from tests.conftest import NOTEBOOKS, write_notebook


def unbound(code: str) -> dict[str, int]:
    return dict(scan_names(code).unbound)


def spec_of(*cells: tuple[str, str], params: str = "", setup: str = "") -> PipelineSpec:
    b = PipelineBuilder()
    if params:
        b.add_params(params)
    if setup:
        b.set_setup("", setup)
    for line, code in cells:
        b.add_step(line, code)
    return b.spec()


# -- the scope scan -----------------------------------------------------------------------------
@pytest.mark.parametrize("code", [
    "with open('f') as fh:\n    data = fh.read()",
    "for i in range(3):\n    print(i)",
    "for i in range(3):\n    if i:\n        print(acc)\n    acc = i",  # an earlier iteration
    "if c := 1:\n    k = 1\nelse:\n    k = 2\nprint(k)",
    "try:\n    import a\nexcept ImportError as e:\n    print(e)",
    "def g():\n    return later\nlater = 1\ng()",  # a function body runs when called
    "f = lambda: later\nlater = 2",
    "class A:\n    z = 1\n    w = z + 1",
    "[q := v for v in range(3)]\nprint(q)",  # := in a comprehension binds outside it
    "import os.path\nos.getcwd()",
    "def f():\n    global gg\n    gg = 1\nf()\nprint(gg)",
    "try:\n    cfg\nexcept NameError:\n    cfg = 1",  # the "defined yet?" idiom
    "def outer():\n    v = 1\n    def inner():\n        nonlocal v\n        return v\n"
    "    return inner",
    "x = 1\ndel x\nx = 2\nprint(x)",
    "match [1, 2]:\n    case [a, *rest]:\n        print(a, rest)\n    case {'k': v, **other}:\n"
    "        print(v, other)",
    "print(len, range, __name__, get_ipython)",
    "!ls\n%matplotlib inline\nout = 1",
    "xs = [1]\nys = {k: v for k, v in enumerate(xs) if v}\nzs = [a * b for a in xs for b in xs]",
    "def f(a, *args, b=1, **kw):\n    return a, args, b, kw",
])
def test_code_that_defines_what_it_reads_has_nothing_unbound(code):
    assert unbound(code) == {}


@pytest.mark.parametrize("code, expected", [
    ("model.fit(trian)", {"model": 1, "trian": 1}),
    ("x = 1\ny = z + x", {"z": 2}),
    ("x += 1", {"x": 1}),  # augmented assignment reads first
    ("del ghost", {"ghost": 1}),
    ("x = 1\ndel x\nprint(x)", {"x": 3}),
    ("x: int\nprint(x)", {"x": 2}),  # a bare annotation binds nothing
    ("[v for v in range(3)]\nprint(v)", {"v": 2}),  # comprehension variables stay inside
    ("try:\n    pass\nexcept ValueError as e:\n    pass\nprint(e)", {"e": 5}),
    ("class A:\n    z = 1\n    def m(self):\n        return z", {"z": 4}),  # no class scope
    ("def f(a=default):\n    return a", {"default": 1}),  # defaults are evaluated at def
    ("@deco\ndef f():\n    pass", {"deco": 1}),
    ("def f():\n    return nowhere\nf()", {"nowhere": 2}),
    ("x = x + 1", {"x": 1}),
    ("for i in items:\n    total = total + i", {"items": 1, "total": 2}),
    ("try:\n    cfg\nexcept KeyError:\n    pass", {"cfg": 2}),  # NameError is not caught
])
def test_unbound_reads_and_their_lines(code, expected):
    assert unbound(code) == expected


@pytest.mark.parametrize("code, names", [
    ("a = 1\nb, (c, *d) = 1, (2, 3)\ne.attr = 1\nf[0] = 1", {"a", "b", "c", "d"}),
    ("if x:\n    score = 1\nelse:\n    pass", {"score"}),
    ("for row in rows:\n    last = row", {"row", "last"}),
    ("with open('f') as fh:\n    text = fh.read()", {"fh", "text"}),
    ("def helper():\n    global model\n    model = 1", {"helper", "model"}),
    ("import numpy as np\nfrom os import path as p, sep", {"np", "p", "sep"}),
    ("[m := 1 for _ in range(1)]", {"m"}),
    ("x: int", set()),
    ("try:\n    pass\nexcept E as err:\n    pass", set()),  # Python unbinds it after
    ("class C:\n    inside = 1", {"C"}),
])
def test_assigned_names_are_module_bindings_anywhere(code, names):
    assert scan_names(code).assigned == names


@pytest.mark.parametrize("code, dynamic", [
    ("from pylab import *", True),
    ("exec('x = 1')", True),
    ("globals()['x'] = 1", True),
    ("vars().update(x=1)", True),
    ("%run other.py", True),
    ("%store -r model", True),
    ("vars(obj)", False),
    ("%matplotlib inline", False),
    ("!pip install x", False),
    ("import os", False),
])
def test_code_that_binds_invisibly_is_dynamic(code, dynamic):
    assert scan_names(code).dynamic is dynamic


_NAMES = "abcde"
_EXPR = st.one_of(st.sampled_from(["1", "[1, 2]"]), st.sampled_from(_NAMES),
                  st.tuples(st.sampled_from(_NAMES), st.sampled_from(_NAMES)).map(
                      lambda t: f"{t[0]} + {t[1]}"))
_STMT = st.one_of(
    st.tuples(st.sampled_from(_NAMES), _EXPR).map(lambda t: f"{t[0]} = {t[1]}"),
    st.tuples(st.sampled_from(_NAMES), _EXPR).map(lambda t: f"{t[0]} += {t[1]}"),
    st.sampled_from(_NAMES).map(lambda n: f"del {n}"),
    st.tuples(st.sampled_from(_NAMES), _EXPR).map(lambda t: f"{t[0]} = [v for v in [{t[1]}]]"),
    st.tuples(st.sampled_from(_NAMES), st.sampled_from(_NAMES)).map(
        lambda t: f"with memoryview(b'') as {t[0]}:\n    {t[1]} = {t[0]}"),
    st.tuples(st.sampled_from(_NAMES), st.sampled_from(_NAMES), _EXPR).map(
        lambda t: f"for {t[0]} in [1]:\n    {t[1]} = {t[2]}"),
    st.tuples(st.sampled_from(_NAMES), _EXPR).map(lambda t: f"if 1:\n    {t[0]} = {t[1]}"),
    st.tuples(st.sampled_from(_NAMES), _EXPR).map(
        lambda t: f"try:\n    {t[0]} = {t[1]}\nexcept ZeroDivisionError as e:\n    pass"),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_STMT, max_size=8))
def test_straight_line_code_unbound_iff_python_raises_name_error(stmts):
    """For straight-line code the scan is exact: Python raises NameError on the first unbound
    read, at the first line the scan reports; code that runs has nothing unbound."""
    code = "\n".join(stmts)
    reported = unbound(code)
    try:
        exec(compile(code, "<step>", "exec"), {"__builtins__": builtins})
    except NameError as err:
        assert err.name in reported, (code, reported)
        assert min(reported.values()) == err.__traceback__.tb_next.tb_lineno
    except (TypeError, ValueError):  # `[1] + 1`, a released memoryview: not about names
        pass
    else:
        assert reported == {}, code


@settings(max_examples=200, deadline=None)
@given(st.lists(_STMT, max_size=6), st.lists(st.sampled_from(_NAMES), max_size=3))
def test_a_function_called_after_everything_is_never_a_false_alarm(stmts, reads):
    """Reads in a function body resolve against what the whole cell binds."""
    body = "return " + (", ".join(reads) or "None")
    code = "\n".join([f"def f():\n    {body}", *stmts, "f()"])
    try:
        exec(compile(code, "<step>", "exec"), {"__builtins__": builtins})
    except (NameError, TypeError, ValueError):
        return
    assert unbound(code) == {}, code


# -- parameters ---------------------------------------------------------------------------------
@pytest.mark.parametrize("default, value, result", [
    (100, 3, 3),
    (0.1, 1, 1.0),  # an int is fine for a float, and becomes one
    (0.1, 0.5, 0.5),
    (False, True, True),
    ("rf", "gbm", "gbm"),
    ([1], [2, 3], [2, 3]),
    ([1], (2, 3), [2, 3]),  # `-p sizes=2,3`
    ({"a": 1}, {}, {}),
    (None, "anything", "anything"),
    (None, [1], [1]),
])
def test_values_that_fit_the_default(default, value, result):
    got = check_param("p", value, default)
    assert got == result and type(got) is type(result)


@pytest.mark.parametrize("default, value, message", [
    (100, "abc", "-p n=abc: expected an int (default 100), got the string 'abc'"),
    (100, True, "-p n=True: expected an int (default 100), got a bool (True)"),  # not an int
    (100, 2.5, "-p n=2.5: expected an int (default 100), got a float (2.5)"),
    (0.1, True, "-p n=True: expected a float (default 0.1), got a bool (True)"),
    (0.1, "fast", "-p n=fast: expected a float (default 0.1), got the string 'fast'"),
    (False, "true", "-p n=true: expected a bool (default False), got the string 'true' "
                    "(write True)"),
    (False, 1, "-p n=1: expected a bool (default False), got an int (1) (write True)"),
    ("rf", 2024, "-p n=2024: expected a string (default 'rf'), got an int (2024) (to pass it "
                 "as text, quote it: -p n=\"'2024'\")"),
    ([1], 3, "-p n=3: expected a list (default [1]), got an int (3)"),
    ({"a": 1}, [1], "-p n=[1]: expected a dict (default {'a': 1}), got a list ([1])"),
    (100, "x" * 80, "got the string 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."),
])
def test_values_of_the_wrong_type_are_refused_on_one_line(default, value, message):
    with pytest.raises(UsageError) as info:
        check_param("n", value, default)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert info.value.option == "n"


def test_unknown_parameter_suggests_the_closest():
    defaults = {"n_trees": 100, "lr": 0.1}
    with pytest.raises(UsageError, match=r"^-p n_tres: unknown parameter, did you mean "
                       r"`n_trees`\? \(pipeline parameters: n_trees, lr\)$"):
        check_params(defaults, {"n_tres": 3})
    with pytest.raises(UsageError, match=r"^-p beta: unknown parameter \(pipeline parameters: "):
        check_params(defaults, {"beta": 3})
    assert check_params(defaults, {"lr": 1}) == {"n_trees": 100, "lr": 1.0}
    assert check_params({}, {}) == {}


# JSON values: no NaN or infinity (refused: test_values.py)
_JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(),
                               st.floats(allow_nan=False, allow_infinity=False), st.text()),
                     lambda inner: st.one_of(st.lists(inner, max_size=3),
                                             st.dictionaries(st.text(), inner, max_size=3)),
                     max_leaves=5)


@settings(max_examples=400, deadline=None)
@given(_JSON, _JSON)
def test_any_value_is_accepted_as_the_defaults_type_or_refused_in_one_line(default, value):
    try:
        got = check_param("name", value, default)
    except UsageError as err:
        assert str(err).startswith("-p name=") and "\n" not in str(err)
        assert type(value) is not type(default)
    else:
        assert default is None or type(got) is type(default)
        if type(value) is type(default):
            assert got is value


# -- warnings -----------------------------------------------------------------------------------
def test_a_typo_names_step_cell_line_and_the_closest_name():
    spec = spec_of(("load --outputs train", "train = [1]"),
                   ("fit --outputs model", "x = 1\n\nmodel = sum(trian)"))
    assert pre_run_warnings(spec, cells={"load": 2, "fit": 3}) == [
        "step `fit` (cell 3) reads `trian` (line 3: `model = sum(trian)`), which no step "
        "outputs and no parameter or setup code defines: the step will fail with NameError "
        "(did you mean `train`?)"]


def test_what_params_setup_inputs_and_the_kernel_define():
    spec = spec_of(("load --outputs raw", "raw = 1"),
                   ("use --inputs raw", "print(raw, alpha, helper_from_setup, display(raw))"),
                   params="alpha = 1", setup="def helper_from_setup():\n    pass")
    assert pre_run_warnings(spec) == []


def test_kernel_names_say_where_a_name_lives():
    spec = spec_of(("fit", "print(helper)\nprint(ghost)"))
    lines = pre_run_warnings(spec, kernel_names={"helper", "In"})
    assert lines == [
        "step `fit` reads `helper` (line 1: `print(helper)`), which is defined only in your "
        "kernel (no step outputs it, no parameter or setup code defines it): the step will fail "
        "with NameError; define it in %%pipeline_setup or output it from a step",
        "step `fit` reads `ghost` (line 2: `print(ghost)`), which no step outputs and no "
        "parameter, setup code or your kernel defines: the step will fail with NameError"]


def test_an_output_of_another_step_missing_from_explicit_inputs():
    spec = spec_of(("a --outputs x y", "x = y = 1"), ("b --inputs y", "print(x + y)"))
    assert pre_run_warnings(spec) == [
        "step `b` reads `x` (line 1: `print(x + y)`), an output of step `a` that is not among "
        "its --inputs: the step will fail with NameError (add `x` to --inputs)"]


def test_a_step_reading_its_own_output_before_assigning_it():
    spec = spec_of(("count --outputs n", "n += 1"))
    assert pre_run_warnings(spec) == [
        "step `count` reads `n` (line 1: `n += 1`) before assigning it, and no other step "
        "outputs it: the step will fail with NameError"]


@pytest.mark.parametrize("code, setup", [
    ("from helpers import *\nprint(anything)", ""),
    ("print(anything)", "from helpers import *"),
    ("exec(open('x.py').read())\nprint(anything)", ""),
])
def test_star_import_or_exec_silences_name_warnings(code, setup):
    assert pre_run_warnings(spec_of(("s", code), setup=setup)) == []


def test_star_import_in_one_step_silences_only_that_step():
    spec = spec_of(("a", "from m import *\nprint(x)"), ("b", "print(y)"))
    assert [w.split(" reads ")[0] for w in pre_run_warnings(spec)] == ["step `b`"]


def test_dunders_and_ipython_names_are_not_typos():
    spec = spec_of(("a", "print(__file__, __name__, _, _i3, _12, In, Out, get_ipython, "
                         "display, exit)"))
    assert pre_run_warnings(spec) == []


def test_declared_output_never_assigned():
    spec = spec_of(("evaluate --outputs scores report.csv", "score = 1"),
                   ("other --outputs zzz", "a = 1"))
    assert pre_run_warnings(spec, cells={"evaluate": 5}) == [
        "step `evaluate` (cell 5) declares output `scores` but never assigns it "
        "(did you mean `score`?)",
        "step `other` declares output `zzz` but never assigns it: the step will fail when its "
        "outputs are saved"]


@pytest.mark.parametrize("code", [
    "if cond:\n    model = 1\nelse:\n    model = 2",
    "for model in range(3):\n    pass",
    "with open('f') as model:\n    pass",
    "def fit():\n    global model\n    model = 1\nfit()",
    "import pickle as model",
    "[model := i for i in range(2)]",
    "from m import *",  # may bind it: no warning
])
def test_outputs_assigned_anywhere_in_module_scope_are_fine(code):
    spec = spec_of(("fit --outputs model", code), params="cond = True")
    assert [w for w in pre_run_warnings(spec) if "declares" in w] == []


def test_output_defined_by_setup_is_not_reported():
    spec = spec_of(("s --outputs cfg", "print(cfg)"), setup="cfg = {}")
    assert pre_run_warnings(spec) == []


def test_a_syntax_error_in_a_step_with_inputs_is_a_warning_not_a_crash():
    spec = spec_of(("a --outputs x", "x = 1"), ("b --inputs x", "print(x"))
    (line,) = pre_run_warnings(spec)
    assert line.startswith("step `b` has a syntax error (line 1:") and "will fail" in line


def test_example_notebooks_give_no_warnings():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        assert pre_run_warnings(read_pipeline(path)) == [], path.name


def test_every_warning_is_one_line():
    spec = spec_of(("a --outputs out", "x = (\n  undefined_one +\n  undefined_two)"))
    lines = pre_run_warnings(spec, kernel_names={"undefined_one"})
    assert len(lines) == 3 and all("\n" not in line for line in lines)


# -- no steps, suggestions ----------------------------------------------------------------------
def test_no_steps_is_refused_naming_the_notebook_or_the_kernel(tmp_path):
    path = write_notebook(tmp_path / "empty.ipynb", ["x = 1", "%%pipeline_params\na = 1"])
    with pytest.raises(NotebookError, match=r"^empty\.ipynb: no %%step cells") as info:
        read_pipeline(path)
    assert info.value.file == str(path)
    with pytest.raises(SpecError, match="no %%step cells have run in this kernel"):
        require_steps(PipelineSpec())
    require_steps(spec_of(("a", "x = 1")))


def test_suggestions():
    options = ["--inputs", "--outputs", "--no-cache", "--no-run"]
    assert suggest("--ouputs", options) == ["--outputs"]
    assert suggest("--out", options) == ["--outputs"]  # an abbreviation
    assert suggest("--no", options) == ["--no-cache", "--no-run"]
    assert suggest("--colour", options) == []
    assert suggest("trian", ["train", "test"]) == ["train"]


@pytest.mark.parametrize("line, message", [
    ("fit --ouputs model", "%%step fit: unknown option --ouputs (did you mean --outputs?)"),
    ("fit --out model", "%%step fit: unknown option --out (did you mean --outputs?)"),
    ("fit --outputs=m --inptus=x", "%%step fit: unknown option --inptus (did you mean "
                                   "--inputs?)"),
    ("fit --no", "%%step fit: unknown option --no (did you mean --no-cache or --no-run?)"),
    ("fit --colour red", "%%step fit: unknown option --colour (options: --inputs, --outputs, "),
    ("fit extra", "%%step fit extra: unrecognized arguments: extra"),
])
def test_unknown_step_options_suggest_the_closest(line, message):
    from mlpipe_jupyter.model.options import parse_step_line

    with pytest.raises(UsageError) as info:
        parse_step_line(line)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_unknown_setup_option_suggests_too():
    from mlpipe_jupyter.model.options import parse_setup_line

    with pytest.raises(MlpipeError, match=r"^%%pipeline_setup: unknown option --pi \(did you "
                       r"mean --pip\?\)$"):
        parse_setup_line("--pi numpy")
