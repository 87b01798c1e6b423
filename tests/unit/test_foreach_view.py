"""A fan-out step's progress in the one view model, as the CLI and the widget render it."""

from __future__ import annotations

from mlpipe_jupyter.run.view import RunView
from mlpipe_jupyter.ui.widget import _shown


def test_batches_and_failures_in_the_view_and_the_widget_payload():
    view = RunView(["score", "fit"])
    view.on_step_state(step="score", state="running", at=1.0)
    view.on_step_progress(run_id="r", step="score", done=37, total=100, failed=1)
    view.on_step_progress(run_id="r", step="fit", done=2, total=5)  # as before fan-out steps
    steps = view.snapshot().steps
    assert steps["score"].progress == "37/100 batches · 1 failed"
    assert steps["fit"].progress == "cell 2/5"
    view.on_step_progress(run_id="r", step="score", done=38, total=100, failed=0)
    assert view.snapshot().steps["score"].progress == "38/100 batches"
    assert _shown(view.snapshot().steps["score"])["failed"] == 0
    assert _shown(view.snapshot().steps["fit"])["failed"] is None
