"""Helpers of the fan-out tests (test_foreach*.py): a run in this process on real kernels,
its steps' records, and a directory the batches mark their side effects in."""

from __future__ import annotations

from pathlib import Path

from mlpipe_jupyter.model.notebook import read_pipeline
from mlpipe_jupyter.run.events import RunListener
from mlpipe_jupyter.run.plan import RunOptions
from mlpipe_jupyter.run.runner import PipelineRunner
from tests.conftest import write_notebook


class Records(RunListener):
    """Each step's last state, error and fan-out record."""

    def __init__(self) -> None:
        self.steps: dict[str, dict] = {}
        self.progress: list[tuple[str, int, int]] = []

    def on_step_state(self, *, step, state, reason=None, error=None, fanout=None, **_):
        rec = self.steps.setdefault(step, {})
        rec.update(state=str(state), reason=reason)
        if error is not None:
            rec["error"] = error
        if fanout is not None:
            rec["fanout"] = fanout

    def on_step_progress(self, *, step, done, total, **_):
        self.progress.append((step, done, total))


def run(directory: Path, cells: list[str], executor: str = "local",
        **options) -> tuple[PipelineRunner, Records]:
    notebook = write_notebook(directory / "p.ipynb", ["%load_ext mlpipe_jupyter", *cells])
    records = Records()
    runner = PipelineRunner(read_pipeline(notebook), notebook=str(notebook),
                            base_dir=directory, listeners=[records],
                            options=RunOptions(executor=executor, **options))
    runner.run()
    return runner, records


def value(runner: PipelineRunner, step: str, name: str):
    return runner.artifacts.load(runner.outputs[step][name])


def marks(tmp_path: Path, monkeypatch) -> Path:
    """A directory for the batches' side effects, as $MARK in the step kernels."""
    mark = tmp_path / "marks"
    mark.mkdir(exist_ok=True)
    monkeypatch.setenv("MARK", str(mark))
    return mark
