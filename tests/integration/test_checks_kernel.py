"""Pre-run checks in a real IPython kernel (jupyter_client): `%pipeline show` and `%pipeline run`
print their warnings in the cell's output before the widget, say which names exist only in the
kernel, and refuse a bad `-p`, an unknown option or an empty registry with one UsageError line.
"""

from __future__ import annotations

import pytest

from tests.kernelkit import WIDGET_VIEW, register

STEPS = [
    "%%pipeline_params\nn = 3",
    "helper = lambda rows: len(rows)",  # a plain cell: defined in the kernel only
    "%%step load --outputs train --no-run\ntrain = [1, 2, n]",
    "%%step fit --outputs model --no-run\nmodel = helper(trian)",
]
WARNINGS = [
    "warning: step `fit` reads `helper` (line 1: `model = helper(trian)`), which is defined only "
    "in your kernel (no step outputs it, no parameter or setup code defines it): the step will "
    "fail with NameError; define it in %%pipeline_setup or output it from a step",
    "warning: step `fit` reads `trian` (line 1: `model = helper(trian)`), which no step outputs "
    "and no parameter, setup code or your kernel defines: the step will fail with NameError "
    "(did you mean `train`?)",
]


def printed(msgs: list[dict], name: str = "stdout") -> list[str]:
    return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream"
                   and m["content"]["name"] == name).splitlines()


def first(msgs: list[dict], kinds: tuple[str, ...]) -> int:
    return next(i for i, m in enumerate(msgs) if m["msg_type"] in kinds)


def test_show_warns_before_the_widget_and_says_what_only_the_kernel_has(kernel):
    register(kernel, STEPS)
    reply, msgs, _ = kernel.run("%pipeline show")
    assert reply["status"] == "ok"
    assert printed(msgs) == WARNINGS
    (shown,) = [m for m in msgs if m["msg_type"] == "execute_result"]
    assert WIDGET_VIEW in shown["content"]["data"]
    assert first(msgs, ("stream",)) < msgs.index(shown)


def test_run_warns_before_the_widget_and_the_step_fails_as_warned(kernel):
    register(kernel, STEPS)
    reply, msgs, _ = kernel.run("run = %pipeline run")
    assert reply["status"] == "ok"
    assert printed(msgs) == WARNINGS
    assert first(msgs, ("stream",)) < first(msgs, ("display_data",))
    assert kernel.value("run.wait(300)", timeout=320) == "'failed'"
    assert kernel.value('run.steps["fit"]') == "'failed'"


def test_a_bad_parameter_is_one_usage_error_line_and_nothing_runs(kernel):
    register(kernel, STEPS)
    before = kernel.value("id(_mlpipe.last_run)")
    reply, msgs, _ = kernel.run("%pipeline run -p n=abc")
    assert (reply["status"], reply["ename"]) == ("error", "UsageError")
    assert reply["evalue"] == "-p n=abc: expected an int (default 3), got the string 'abc'"
    assert printed(msgs, "stderr") == [f"UsageError: {reply['evalue']}"]
    assert not [m for m in msgs if m["msg_type"] in ("display_data", "execute_result")]
    assert kernel.value("id(_mlpipe.last_run)") == before  # no run was made


def test_an_unknown_step_option_suggests_the_closest(kernel):
    register(kernel, [])
    reply, _, _ = kernel.run("%%step fit --ouputs model\nmodel = 1")
    assert (reply["status"], reply["ename"]) == ("error", "UsageError")
    assert reply["evalue"] == "%%step fit: unknown option --ouputs (did you mean --outputs?)"
    assert kernel.value("_mlpipe.spec().steps") == "()"  # nothing registered, nothing ran
    reply, _, _ = kernel.run("model")
    assert reply["status"] == "error" and reply["ename"] == "NameError"


def test_no_steps_is_refused_by_run_and_said_by_show(kernel):
    register(kernel, ["%%pipeline_params\nn = 3"])
    message = ("no %%step cells have run in this kernel, so there is no pipeline: run the cells "
               "that declare the steps first (a `%%step NAME --no-run` cell only registers its "
               "step)")
    reply, msgs, _ = kernel.run("%pipeline run")
    assert (reply["status"], reply["ename"], reply["evalue"]) == ("error", "UsageError", message)
    assert not [m for m in msgs if m["msg_type"] == "display_data"]
    reply, msgs, _ = kernel.run("%pipeline show")
    assert reply["status"] == "ok"  # show puts spec errors in the widget, not a traceback
    (shown,) = [m["content"]["data"] for m in msgs if m["msg_type"] == "execute_result"]
    assert shown["text/plain"] == f"pipeline: {message}"


# -- values and inputs (issue 17): the magics say what the CLI says --------------------------
JSON_TYPES = "parameters are JSON values (None, bool, number, string, list, dict with string keys)"


@pytest.mark.parametrize("option, message", [
    # IPython expands {expr} in a line magic (`-p lr={lr}` passes the kernel's lr): {{ is {
    ("-p x={{1,2}}", "-p x={1, 2}: a set is not a JSON value; @; write a list: [1, 2]"),
    # the line is split as a shell would, so quotes inside a value are quoted as in a shell
    ("-p 'x=b\"ab\"'", "-p x=b'ab': a bytes value is not a JSON value; @; write a string: 'ab'"),
    ("-p x=(1,2)", "-p x=(1, 2): a tuple is not a JSON value; @; write a list: [1, 2]"),
    ("-p x=1e999", "-p x=inf: infinity is not a JSON value; @; for no limit, use None"),
])
def test_a_parameter_that_is_no_json_value_is_one_usage_error_line(kernel, option, message):
    register(kernel, ["%%pipeline_params\nx = None", "%%step s --outputs y --no-run\ny = x"])
    before = kernel.value("id(_mlpipe.last_run)")
    reply, msgs, _ = kernel.run(f"%pipeline run {option}")
    assert (reply["status"], reply["ename"]) == ("error", "UsageError")
    assert reply["evalue"] == message.replace("@", JSON_TYPES)
    assert printed(msgs, "stderr") == [f"UsageError: {reply['evalue']}"]
    assert kernel.value("id(_mlpipe.last_run)") == before  # no run was made


def test_a_default_that_is_no_json_value_is_one_usage_error_line(kernel):
    register(kernel, [])
    reply, _, _ = kernel.run("%%pipeline_params\nlabels = {0: 'red'}")
    assert (reply["status"], reply["ename"]) == ("error", "UsageError")
    assert reply["evalue"] == ("%%pipeline_params: `labels = {0: 'red'}`: the dict key 0 is not "
                               f"a string; {JSON_TYPES}; quote it: '0'")
    assert kernel.value("_mlpipe.spec().params") == "()"


def test_an_endless_timeout_is_one_usage_error_line_and_nothing_registers(kernel):
    register(kernel, [])
    reply, msgs, _ = kernel.run("%%step s --outputs y --timeout inf\ny = 1")
    assert (reply["status"], reply["ename"]) == ("error", "UsageError")
    assert reply["evalue"] == ("step `s` --timeout: must be a positive number of seconds, at most "
                               "9223372036 (leave it out for no timeout), got inf")
    assert printed(msgs, "stderr") == [f"UsageError: {reply['evalue']}"]
    assert kernel.value("_mlpipe.spec().steps") == "()"


def test_quoted_names_and_env_values_in_a_step_line_follow_shell_rules(kernel):
    register(kernel, ['%%step s --outputs "my file.csv" out\\ dir/ --env K="a b" J=\'c "d"\' '
                      "--no-run\nopen('my file.csv', 'w').close()"])
    step = "_mlpipe.spec().steps[0]"
    assert kernel.value(f"{step}.outputs") == "('my file.csv', 'out dir/')"
    assert kernel.value(f"{step}.env") == "(('J', 'c \"d\"'), ('K', 'a b'))"


def test_a_pipeline_line_is_split_as_a_shell_would(kernel):
    """`%pipeline run -p "x=[1, 2]"` passes one word, as `mlpipe run -p "x=[1, 2]"` does."""
    register(kernel, ["%%pipeline_params\nx = [0]", "%%step s --outputs y --no-run\ny = sum(x)"])
    reply, _, _ = kernel.run('run = %pipeline run -p "x=[1, 2]" --wait')
    assert reply["status"] == "ok"
    assert kernel.value("run.status") == "'succeeded'"
    assert kernel.value('run.load("y")') == "3"
    reply, _, _ = kernel.run('%pipeline run -p "x=[1')
    assert (reply["status"], reply["ename"]) == ("error", "UsageError")
    assert reply["evalue"] == "%pipeline run: No closing quotation"
