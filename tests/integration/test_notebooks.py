"""The example notebooks, top to bottom in a real kernel (nbclient), `%pipeline run` included,
and the kernel's registry compared with the reader of the saved file."""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from mlpipe_jupyter.model.notebook import read_pipeline
from mlpipe_jupyter.model.spec import PipelineSpec
from tests.conftest import NOTEBOOKS


@pytest.mark.parametrize("name", ["wine_quality.ipynb", "model_comparison.ipynb"])
def test_example_notebook_runs_top_to_bottom(tmp_path, monkeypatch, name):
    for path in NOTEBOOKS.iterdir():
        if path.is_file():
            shutil.copy(path, tmp_path / path.name)
    source = tmp_path / name
    before = source.read_bytes()
    monkeypatch.setenv("MLPIPE_EXECUTOR", "local")
    monkeypatch.delenv("MLPIPE_HOME", raising=False)
    nb = nbformat.read(source, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json as _j\nprint('SPEC=' + _mlpipe.spec().to_json(sort_keys=True))\n"
        "print('STATUS=' + run.wait())"))
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "STATUS=succeeded" in printed
    spec_line = next(line for line in printed.splitlines() if line.startswith("SPEC="))
    from_kernel = PipelineSpec.from_json(spec_line[5:])
    assert from_kernel.to_dict() == read_pipeline(source).to_dict()
    assert source.read_bytes() == before  # the source notebook is never modified
    runs = sorted((tmp_path / ".mlpipe/runs").iterdir())
    assert len(runs) == 1
    for step in from_kernel.steps:
        step_dir = runs[0] / step.name
        executed = json.loads((step_dir / "output.ipynb").read_text())
        assert not executed["metadata"]["papermill"]["exception"]
        assert all(o["output_type"] != "error" for c in executed["cells"]
                   for o in c.get("outputs", []))
        assert (step_dir / "log.txt").exists()
    # the kernel's own run and the notebook's last cells agree on the results
    outputs_text = json.dumps([c.get("outputs", []) for c in nb.cells])
    if name == "wine_quality.ipynb":
        assert "accuracy" in outputs_text
    else:
        assert "'gbm'" in outputs_text or "'forest'" in outputs_text
