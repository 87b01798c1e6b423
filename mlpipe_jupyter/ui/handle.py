"""PipelineRun: the handle `%pipeline run` returns at once while the run goes on in a thread."""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING, Any

from ..errors import NotFound, UsageError
from ..model.states import StepState
from ..run.runner import PipelineRunner
from ..run.view import RunView

if TYPE_CHECKING:
    from .widget import DagWidget


def _cell_token() -> Any:
    """Identifies the cell being executed, so a run shows its widget once per cell."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    shell = get_ipython()
    if shell is None:
        return None
    parent = getattr(shell, "parent_header", None) or {}
    return (parent.get("header") or {}).get("msg_id") or shell.execution_count


class PipelineRun:
    """A run in progress: `.wait()`, `.cancel()`, `.status`, `.steps`, `.load("artifact")`,
    `.retry_failed()`. In a notebook it displays as the live DAG widget."""

    def __init__(self, runner: PipelineRunner) -> None:
        self.runner = runner
        self.id = runner.run_id
        # what this run's displays (its widget, its text) show, kept once
        self.view = RunView(runner.order, run_id=runner.run_id)
        runner.add_listener(self.view)
        self.retried: PipelineRun | None = None  # the run `retry_failed()` started
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"mlpipe-run-{self.id}",
                                        daemon=True)
        # waited on instead of the thread: an interrupted Thread.join() can leave the Thread
        # marked as stopped while it still runs (Python 3.11), an Event cannot
        self._finished = threading.Event()
        self._widget: DagWidget | None = None
        self._shown_in: Any = None
        self._display: Any = None

    def start(self) -> PipelineRun:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as err:  # kept for wait(); the store already has the outcome
            self._error = err
        finally:
            self._finished.set()

    @property
    def status(self) -> str:
        return self.runner.state

    @property
    def steps(self) -> dict[str, StepState]:
        return self.view.states()

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> str:
        """Block until the run ends (or `timeout` seconds pass); return its state.

        Interrupting the kernel while it waits cancels the run: a busy kernel cannot receive
        the widget's Cancel button, so the interrupt is the way to stop a `--wait` run."""
        widget = self._widget
        if widget is not None and not self.done:
            widget.set_waiting(True)
        try:
            self._finished.wait(timeout)
        except KeyboardInterrupt:
            self.cancel()
            raise
        finally:
            if widget is not None:
                widget.set_waiting(False)
        if self.done:
            self._refresh_display()
        if self._error is not None:
            raise self._error
        return self.status

    def cancel(self) -> str:
        """Stop the run (running kernels and containers included) and wait for it to end."""
        self.runner.cancel()
        self._finished.wait(60)
        return self.status

    def retry_failed(self, *, widget: DagWidget | None = None) -> PipelineRun:
        """A new run of the same pipeline and parameters with reuse on: failed, skipped and
        cancelled steps run again, the steps that succeeded come back `cached`."""
        if not self.done:
            raise UsageError(f"run {self.id} is still running: wait for it or cancel it first")
        old = self.runner
        options = dataclasses.replace(old.options, no_cache=False)
        runner = PipelineRunner(old.spec, notebook=old.notebook, base_dir=old.base_dir,
                                options=options, home=old.home)
        new = PipelineRun(runner)
        widget = widget or self._widget
        if widget is not None:
            new._widget = widget
            widget.follow(new)
        self.retried = new
        return new.start()

    # -- display -----------------------------------------------------------------------------
    @property
    def widget(self) -> DagWidget:
        """The live DAG widget of this run (created on first use)."""
        if self._widget is None:
            from pathlib import Path

            from .widget import DagWidget

            widget = DagWidget(self.runner.graph, order=self.runner.order,
                               title=Path(self.runner.notebook).name)
            widget.follow(self)
            self._widget = widget
        return self._widget

    def _bundle(self) -> tuple[dict, dict]:
        data, metadata = self.widget._repr_mimebundle_()
        return {**data, "text/plain": repr(self.widget)}, metadata

    def _ipython_display_(self) -> None:
        # `%pipeline run` displays the widget itself; the handle it returns, or `run` on the
        # next line of the same cell, must not draw it a second time
        token = _cell_token()
        if token is not None and token == self._shown_in:
            return
        from IPython.display import display

        self._shown_in = token
        data, metadata = self._bundle()
        self._display = display(data, metadata=metadata, raw=True, display_id=True)

    def _refresh_display(self) -> None:
        """Final states in the text shown by frontends without widgets (nbconvert, papermill):
        they keep the output as it was displayed, unless it is updated by display id."""
        if self._display is not None:
            data, metadata = self._bundle()
            self._display.update(data, metadata=metadata, raw=True)

    def load(self, artifact: str) -> Any:
        """An output of this run brought back into the kernel (waits for the run)."""
        self.wait()
        for rec in self.view.snapshot().steps.values():
            digest = rec.outputs.get(artifact)
            if digest:
                return self.runner.artifacts.load(digest)
        raise NotFound(f"run {self.id} has no output `{artifact}` (did its step succeed?)")

    def log(self, step: str) -> str:
        return "\n".join(self.view.log(step))

    def __repr__(self) -> str:
        return f"PipelineRun {self.id}: {self.status}\n{self.view.snapshot().table()}"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))
