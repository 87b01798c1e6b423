"""Mistakes `mlpipe run` catches before anything runs: the real command on real notebooks."""

from __future__ import annotations

import pytest

from tests.conftest import no_run_started, run_cli, write_notebook

PARAMS = "%%pipeline_params\nn_trees = 100\nlr = 0.1"


@pytest.mark.parametrize("executor", [["--executor", "local"], []], ids=["local", "default"])
def test_a_parameter_of_the_wrong_type_is_refused_before_any_step(tmp_path, executor):
    marker = tmp_path / "step-ran"
    write_notebook(tmp_path / "nb.ipynb", [
        PARAMS, f"%%step fit --outputs model\nopen({str(marker)!r}, 'w').close()\nmodel = n_trees"])
    result = run_cli("run", "nb.ipynb", "-p", "n_trees=abc", *executor, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "error: -p n_trees=abc: expected an int (default 100), got the string 'abc'\n")
    assert not marker.exists() and no_run_started(tmp_path)


def test_an_int_for_a_float_parameter_runs_as_a_float(tmp_path):
    write_notebook(tmp_path / "nb.ipynb", [
        PARAMS, "%%step fit --outputs model\nassert type(lr) is float, type(lr)\nmodel = lr * 2"])
    result = run_cli("run", "nb.ipynb", "-p", "lr=1", "--executor", "local", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning:" not in result.stderr  # a clean notebook: nothing to warn about


def test_warnings_name_step_cell_name_and_line_and_come_true(tmp_path):
    write_notebook(tmp_path / "nb.ipynb", [
        "#md\n# a pipeline with two mistakes",
        "%%step load --outputs train\ntrain = [1, 2, 3]",
        "%%step evaluate --outputs scores\nscore = len(train)\nprint(score, trian)",
    ])
    result = run_cli("run", "nb.ipynb", "--executor", "local", cwd=tmp_path)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: step `evaluate` (cell 3) reads `trian` (line 2: `print(score, trian)`), which "
        "no step outputs and no parameter or setup code defines: the step will fail with "
        "NameError (did you mean `train`?)",
        "warning: step `evaluate` (cell 3) declares output `scores` but never assigns it "
        "(did you mean `score`?)",
    ]
    # warnings only: the run goes ahead, and fails as predicted
    assert result.returncode == 1
    assert "NameError: name 'trian' is not defined" in result.stdout


@pytest.mark.parametrize("line, message", [
    ("fit --ouputs model", "%%step fit: unknown option --ouputs (did you mean --outputs?)"),
    # abbreviations are refused: `--out` would turn ambiguous once an option like it is added
    ("fit --out model", "%%step fit: unknown option --out (did you mean --outputs?)"),
])
def test_an_unknown_step_option_suggests_the_closest(tmp_path, line, message):
    write_notebook(tmp_path / "nb.ipynb", [PARAMS, f"%%step {line}\nmodel = 1"])
    result = run_cli("run", "nb.ipynb", "--executor", "local", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"error: nb.ipynb, cell 2: {message}\n"
    assert no_run_started(tmp_path)


@pytest.mark.parametrize("executor", [["--executor", "local"], []], ids=["local", "default"])
def test_a_notebook_without_steps_is_refused_before_any_executor(tmp_path, executor):
    write_notebook(tmp_path / "plain.ipynb", [PARAMS, "x = n_trees", "#md\n# no steps here"])
    result = run_cli("run", "plain.ipynb", *executor, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ("error: plain.ipynb: no %%step cells, so there is no pipeline (a "
                             "step is a code cell that starts with `%%step NAME`)\n")
    # refused while reading the notebook: no runner, so no executor, image or run directory
    assert not (tmp_path / ".mlpipe").exists()
