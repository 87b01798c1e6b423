"""The magics on a real IPython shell, through run_cell_magic and run_cell."""

from __future__ import annotations

import json

import pytest
from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.interactiveshell import InteractiveShell

from mlpipe_jupyter.model.notebook import read_pipeline, split_cell_magic
from tests.conftest import NOTEBOOKS


@pytest.fixture
def shell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "mlpipe_jupyter")
    sh.user_ns["_mlpipe"].builder.clear()
    yield sh
    sh.run_line_magic("unload_ext", "mlpipe_jupyter")
    sh.user_ns.clear()


def test_step_runs_in_the_kernel_and_registers(shell):
    shell.run_cell_magic("pipeline_params", "", "factor = 3")
    out = shell.run_cell_magic("step", "make --outputs x", "x = [factor] * 2\nlen(x)")
    assert out == 2  # the last expression is the cell's result, as in a normal cell
    assert shell.user_ns["x"] == [3, 3]
    shell.run_cell_magic("step", "use", "y = sum(x)")
    spec = shell.user_ns["_mlpipe"].spec()
    assert spec.step_names == ("make", "use")
    assert spec.step("use").inputs == ("x",)
    assert spec.param_defaults == {"factor": 3}
    assert shell.user_ns["y"] == 6


def test_no_run_only_registers(shell):
    shell.run_cell_magic("step", "lazy --no-run --outputs z", "z = 1 / 0")
    assert "z" not in shell.user_ns
    assert shell.user_ns["_mlpipe"].spec().step_names == ("lazy",)


def test_bad_arguments_register_nothing(shell):
    with pytest.raises(IPythonUsageError, match="step `bad` --outputs: `/abs` is an absolute"):
        shell.run_cell_magic("step", "bad --outputs /abs", "x = 1")
    with pytest.raises(IPythonUsageError, match="%%step bad: unknown option --nope"):
        shell.run_cell_magic("step", "bad --nope", "x = 1")
    assert shell.user_ns["_mlpipe"].spec().steps == ()


def test_step_errors_propagate_like_a_normal_cell(shell):
    result = shell.run_cell("%%step boom\nraise ValueError('in step')")
    assert isinstance(result.error_in_exec, ValueError)
    assert shell.user_ns["_mlpipe"].spec().step_names == ("boom",)


def test_pipeline_show_and_bad_subcommand(shell):
    shell.run_cell_magic("step", "a --outputs x --no-run", "x = 1")
    shell.run_cell_magic("step", "b --no-run", "print(x)")
    assert "a" in str(shell.run_line_magic("pipeline", "show"))
    with pytest.raises(IPythonUsageError, match="unknown subcommand `fly`"):
        shell.run_line_magic("pipeline", "fly")


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_kernel_registry_equals_notebook_reader(shell, notebook):
    """Every example notebook gives the same PipelineSpec from its cells run in a shell and
    from its saved file."""
    data = json.loads(notebook.read_text())
    for cell in data["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] != "code" or split_cell_magic(source) is None:
            continue
        magic, line, body = split_cell_magic(source)
        shell.run_cell_magic(magic, line + (" --no-run" if magic == "step" else ""), body)
    from_kernel = shell.user_ns["_mlpipe"].spec()
    from_file = read_pipeline(notebook)
    assert from_kernel.to_json(sort_keys=True) == from_file.to_json(sort_keys=True)
    assert len(from_file.steps) >= 4


def test_pipeline_export_and_runs(shell, tmp_path):
    shell.run_cell_magic("pipeline_params", "", "k = 2")
    shell.run_cell_magic("step", "a --outputs x --no-run", "x = k")
    shell.run_cell_magic("step", "b --no-run", "print(x)")
    assert str(shell.run_line_magic("pipeline", "runs")) == "(no runs yet)"
    message = str(shell.run_line_magic("pipeline", f"export --to {tmp_path / 'out'}"))
    assert message.startswith("exported 2 step notebooks and pipeline.json")
    manifest = json.loads((tmp_path / "out/pipeline.json").read_text())
    assert manifest["order"] == ["a", "b"]
    assert manifest["edges"] == [{"from": "a", "to": "b", "artifacts": ["x"]}]
    run = shell.run_line_magic("pipeline", "run --executor local --wait")
    assert run.status == "succeeded" and run.load("x") == 2
    assert run.id in str(shell.run_line_magic("pipeline", "runs"))


def test_step_help_shows_every_option(shell):
    from dataclasses import fields

    from mlpipe_jupyter.model.spec import StepSpec

    doc = shell.find_cell_magic("step").__doc__
    flags = [f.metadata["option"].flag for f in fields(StepSpec) if "option" in f.metadata]
    assert [flag for flag in [*flags, "--no-run"] if flag not in doc] == []
    assert "--pip" in shell.find_cell_magic("pipeline_setup").__doc__


def _one_line(shell, line: str) -> str:
    with pytest.raises(IPythonUsageError) as info:
        shell.run_line_magic("pipeline", line)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_export_to_a_path_that_is_not_a_directory_is_one_line(shell, tmp_path):
    shell.run_cell_magic("step", "a --outputs x --no-run", "x = 1")
    (tmp_path / "afile").write_text("")
    assert _one_line(shell, "export --to afile") == "%pipeline export: File exists (afile)"
    assert _one_line(shell, "export --to afile/sub") == \
        "%pipeline export: Not a directory (afile/sub)"
    assert (tmp_path / "afile").read_text() == ""


def test_runs_of_a_store_that_cannot_be_read_is_one_line_naming_it(shell, tmp_path,
                                                                    monkeypatch):
    import shutil
    import sqlite3

    from mlpipe_jupyter.run.store import RunStore

    monkeypatch.delenv("MLPIPE_HOME", raising=False)
    assert str(shell.run_line_magic("pipeline", "runs")) == "(no runs yet)"
    db = tmp_path / ".mlpipe/mlpipe.db"
    assert not db.exists()  # reading the history wrote nothing
    db.parent.mkdir()
    RunStore(db).close()  # a runner's store
    with sqlite3.connect(db) as conn:  # a record whose parameters are cut short
        conn.execute("INSERT INTO runs (id, state, started, params, notebook) "
                     "VALUES ('r1', 'succeeded', 1.0, '{\"lr\": ', 'nb.ipynb')")
    conn.close()
    message = _one_line(shell, "runs")
    assert message.startswith(str(db)) and "damaged" in message
    home = tmp_path / ".mlpipe"
    shutil.rmtree(home)
    home.write_text("")  # the home is a file
    assert str(home) in _one_line(shell, "runs")
