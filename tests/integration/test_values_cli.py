"""Values and inputs (issue 17), through the real `mlpipe run --executor local`: parameters that
are no JSON value, malformed notebook cells, quoted file names and `--env` values, and
symlinks in a directory output that lead nowhere. Each refusal is one line, and nothing runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import no_run_started, run_cli, write_notebook

LOCAL = ("--executor", "local")
JSON_TYPES = "parameters are JSON values (None, bool, number, string, list, dict with string keys)"


def runs(directory: Path) -> list[dict]:
    result = run_cli("runs", "--json", cwd=directory)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- parameters -------------------------------------------------------------------------------
@pytest.mark.parametrize("value, message", [
    # papermill would hand the step the string "(1, 2)" under the key of the list [1, 2]
    ("x=(1, 2)", "-p x=(1, 2): a tuple is not a JSON value; @; write a list: [1, 2]"),
    ("x={1,2}", "-p x={1, 2}: a set is not a JSON value; @; write a list: [1, 2]"),
    ('x=b"ab"', "-p x=b'ab': a bytes value is not a JSON value; @; write a string: 'ab'"),
    ("x=1e999", "-p x=inf: infinity is not a JSON value; @; for no limit, use None"),
    ("x={1: 2}", "-p x={1: 2}: the dict key 1 is not a string; @; quote it: '1'"),
    ("x=[(1, 2)]", "-p x=[(1, 2)]: (1, 2) inside it is a tuple, not a JSON value; @; write a "
                   "list: [1, 2]"),
])
def test_a_parameter_that_is_no_json_value_is_one_line_and_nothing_runs(tmp_path, value,
                                                                         message):
    marker = tmp_path / "step-ran"
    write_notebook(tmp_path / "nb.ipynb", [
        "%%pipeline_params\nx = None",
        f"%%step s --outputs y\nopen({str(marker)!r}, 'w').close()\ny = x"])
    result = run_cli("run", "nb.ipynb", "-p", value, *LOCAL, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, f"error: {message.replace('@', JSON_TYPES)}\n")
    assert not marker.exists() and no_run_started(tmp_path)


def test_a_tuple_for_a_list_reaches_the_step_as_the_list_its_key_was_made_from(tmp_path):
    write_notebook(tmp_path / "nb.ipynb", [
        '%%pipeline_params\nsizes = [1]\ncfg = {"a": [1]}',
        "%%step s --outputs y\nassert type(sizes) is list and sizes == [2, 3], repr(sizes)\n"
        "assert cfg == {'a': [1, None], 'b': {'c': True}}, repr(cfg)\ny = sizes"])
    cfg = 'cfg={"a": [1, None], "b": {"c": True}}'
    first = run_cli("run", "nb.ipynb", "-p", "sizes=(2, 3)", "-p", cfg, *LOCAL, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    # the same value written as a list: the same key, so the step is reused
    second = run_cli("run", "nb.ipynb", "-p", "sizes=[2, 3]", "-p", cfg, *LOCAL, cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    newest, oldest = runs(tmp_path)
    assert [s["state"] for s in oldest["steps"]] == ["succeeded"]
    assert [s["state"] for s in newest["steps"]] == ["cached"]
    assert newest["params"]["sizes"] == [2, 3]


def test_a_default_that_is_no_json_value_names_the_cell(tmp_path):
    write_notebook(tmp_path / "nb.ipynb", [
        "%%pipeline_params\nlabels = {0: 'red', 1: 'white'}", "%%step s --outputs y\ny = labels"])
    result = run_cli("run", "nb.ipynb", *LOCAL, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, (
        "error: nb.ipynb, cell 1: %%pipeline_params: `labels = {0: 'red', 1: 'white'}`: the dict "
        f"key 0 is not a string; {JSON_TYPES}; quote it: '0'\n"))
    assert no_run_started(tmp_path)


@pytest.mark.parametrize("option, message", [
    ("--timeout inf", "--timeout: must be a positive number of seconds, at most 9223372036 "
                      "(leave it out for no timeout), got inf"),
    ("--timeout 1e300", "--timeout: must be a positive number of seconds, at most 9223372036 "
                        "(leave it out for no timeout), got 1e+300"),
    ("--cpus inf", "--cpus: must be a positive number, got inf"),
])
def test_an_endless_step_option_is_one_line(tmp_path, option, message):
    write_notebook(tmp_path / "nb.ipynb", [f"%%step s --outputs y {option}\ny = 1"])
    result = run_cli("run", "nb.ipynb", *LOCAL, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, f"error: nb.ipynb, cell 1: step `s` "
                                                     f"{message}\n")
    assert no_run_started(tmp_path)


# -- cells that are not cells ----------------------------------------------------------------
CODE = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
        "source": "%%step s --outputs y\ny = 1"}


@pytest.mark.parametrize("cell, what", [
    (5, "the cell is a number (5), not an object"),
    (None, "the cell is null, not an object"),
    ("%%step s", "the cell is a string, not an object"),
    ({**CODE, "source": 5}, "`source` is a number (5), not a string or a list of strings"),
    ({**CODE, "source": ["y = ", 1]}, "`source` is a list with something other than strings "
                                      "in it"),
    ({k: v for k, v in CODE.items() if k != "source"}, "a code cell without `source`"),
    ({**CODE, "metadata": []}, "`metadata` is a list, not an object"),
    ({"source": "y = 1"}, "no `cell_type`"),
])
def test_a_cell_that_is_not_a_cell_is_one_line_naming_file_and_cell(tmp_path, cell, what):
    cells = [{**CODE, "source": "%%pipeline_params\nx = 1"}, cell, CODE]
    (tmp_path / "nb.ipynb").write_text(json.dumps(
        {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    for command in (["run", "nb.ipynb", *LOCAL], ["export", "nb.ipynb", "--to", "out"]):
        result = run_cli(*command, cwd=tmp_path)
        assert (result.returncode, result.stderr) == (
            2, f"error: nb.ipynb, cell 2: not a notebook cell: {what}\n")
    assert not (tmp_path / ".mlpipe").exists() and not (tmp_path / "out").exists()


# -- quoted names -----------------------------------------------------------------------------
def test_quoted_file_names_and_env_values_follow_shell_rules_end_to_end(tmp_path):
    write_notebook(tmp_path / "nb.ipynb", [
        '%%step write --outputs "my file.csv" --env GREETING="hello world" NAME=\'a "b"\'\n'
        "import os\nopen('my file.csv', 'w').write(os.environ['GREETING'] + '|' + "
        "os.environ['NAME'])",
        "%%step read --inputs my\\ file.csv --outputs text\ntext = open('my file.csv').read()\n"
        "assert text == 'hello world|a \"b\"', repr(text)",
    ])
    result = run_cli("run", "nb.ipynb", *LOCAL, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = runs(tmp_path)
    assert [(s["name"], s["state"]) for s in run["steps"]] == [("write", "succeeded"),
                                                              ("read", "succeeded")]
    latest = tmp_path / ".mlpipe" / "latest" / "nb" / "my file.csv"
    assert latest.read_text() == 'hello world|a "b"'


def test_an_unbalanced_quote_is_one_line(tmp_path):
    write_notebook(tmp_path / "nb.ipynb", ['%%step s --outputs "my file.csv\ny = 1'])
    result = run_cli("run", "nb.ipynb", *LOCAL, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2, 'error: nb.ipynb, cell 1: %%step s --outputs "my file.csv: No closing quotation\n')


# -- symlinks that lead nowhere ---------------------------------------------------------------
@pytest.mark.parametrize("links, message", [
    ("os.symlink('loop', 'out/loop')", "a symlink loop: `out/loop` -> 'loop'"),
    ("os.symlink('b', 'out/a'); os.symlink('a', 'out/b')", "a symlink loop: `out/a` -> 'b'"),
    ("os.symlink('gone', 'out/d')", "a symlink to nothing: `out/d` -> 'gone'"),
], ids=["self", "a-b-a", "dangling"])
def test_a_directory_output_with_a_link_to_nowhere_fails_its_step_in_one_line(tmp_path, links,
                                                                              message):
    write_notebook(tmp_path / "nb.ipynb", [
        f"%%step make --outputs out/\nimport os\nos.makedirs('out')\n"
        f"open('out/f', 'w').write('x')\nos.symlink('f', 'out/ok')\n{links}",
        "%%step use --inputs out/ --outputs n\nimport os\nn = os.listdir('out')"])
    result = run_cli("run", "nb.ipynb", *LOCAL, cwd=tmp_path)
    reason = (f"step `make`: output `out/` holds {message}; a link in an output must lead to a "
              "file or directory inside it")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    (run,) = runs(tmp_path)
    assert run["state"] == "failed"
    make, use = run["steps"]
    assert (make["state"], make["reason"]) == ("failed", reason)
    assert (use["state"], use["reason"]) == ("skipped", "upstream `make` failed")
    assert not (tmp_path / ".mlpipe" / "latest" / "nb").exists()
