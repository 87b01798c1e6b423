"""What the CLI prints: live per-step progress, the summary table, run listings."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..model.spec import is_variable
from ..model.states import StepState
from ..run.view import PROGRESS, STATE, RunView, StepRecord, ViewRenderer

S = StepState
ICONS = {S.QUEUED: "·", S.RUNNING: "▶", S.SUCCEEDED: "✔", S.FAILED: "✘", S.CACHED: "↺",
         S.SKIPPED: "⤼", S.CANCELLED: "■"}
STYLES = {S.QUEUED: "dim", S.RUNNING: "cyan", S.SUCCEEDED: "green", S.FAILED: "bold red",
          S.CACHED: "blue", S.SKIPPED: "yellow", S.CANCELLED: "magenta"}


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


class TerminalProgress(ViewRenderer):
    """A live table on a terminal; one line per state change when output is not a terminal.
    A renderer of the run's RunView, which keeps the steps' state (as for PipelineRun)."""

    def __init__(self, runner, console: Console | None = None) -> None:
        self.view = RunView(runner.order, run_id=runner.run_id)
        self.view.watch(self.changed)
        self.runner = runner
        self.console = console or Console(stderr=False, highlight=False)
        self.live_mode = self.console.is_terminal
        self.started = time.time()
        self._live: Live | None = None
        self._said: set[str] = set()  # messages already printed: each is said once

    def start(self) -> None:
        name = Path(self.runner.notebook).name
        self.console.print(f"run [bold]{self.runner.run_id}[/] of {name}"
                           f" ({len(self.runner.order)} steps, executor "
                           f"{self.runner.executor_name}, "
                           f"up to {self.runner.max_parallel} at once)",
                           soft_wrap=True)
        if self.live_mode:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4,
                              transient=True)
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    @staticmethod
    def _detail(rec: StepRecord) -> str:
        # messages quote user text (`[[gpu]]`, tracebacks): never read them as markup
        return escape(rec.message or rec.reason or "")

    def changed(self, what: str, step: str) -> None:
        if what not in (STATE, PROGRESS):
            return
        if self._live is not None:
            self._live.update(self._table())
            return
        rec = self.view.snapshot([step]).steps[step]
        state = rec.state
        if what == PROGRESS or state == S.QUEUED:
            return
        took = _fmt(rec.took(time.time())) if state.is_final else ""
        detail = self._detail(rec)
        if detail in self._said and state in (S.SKIPPED, S.CANCELLED):
            detail = "(as above)"
        self._said.add(detail)
        self.console.print(f"[{_fmt(rec.since - self.started):>7}] {ICONS[state]} {step:<20} "
                           f"[{STYLES[state]}]{state.value:<9}[/] {took:>7}"
                           f"{'  ' + detail if detail else ''}",
                           markup=True, soft_wrap=True)

    def _table(self, below: frozenset[str] = frozenset()) -> Table:
        """The steps' table; a detail in `below` is printed under it, so not in it."""
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for col in ("", "step", "state", "time", "detail"):
            table.add_column(col, overflow="fold" if col == "detail" else "ellipsis")
        now = time.time()
        for name, rec in self.view.snapshot().steps.items():
            state = rec.state
            detail = self._detail(rec)
            if state == S.RUNNING and rec.total:
                detail = rec.progress
            elif detail in below:  # said once, above as it happened or below
                detail = "(above)" if detail in self._said else "(below)"
            table.add_row(ICONS[state], name, f"[{STYLES[state]}]{state.value}[/]",
                          _fmt(rec.took(now)), detail)
        return table

    def summary(self, state: str) -> None:
        """The table, then each error once (with where to read more), then the outcome."""
        home, run_id = self.runner.home, self.runner.run_id
        steps = self.view.snapshot().steps
        errors = {n: rec.error for n, rec in steps.items()
                  if rec.error and rec.error.get("error") != "Cancelled"}
        outputs = {k: v for rec in steps.values() for k, v in rec.outputs.items()}
        reason = getattr(self.runner, "reason", None)
        below = {escape(e.get("message", "")) for e in errors.values()}
        if reason and not errors:
            below.add(escape(reason))
        self.console.print(self._table(frozenset(below)))
        for step, error in errors.items():
            message = error.get("message", step)
            if escape(message) in self._said:  # printed as it happened: the paths only
                message = f"step `{step}` failed (above)"
            self.console.print(Text(f"✘ {message}", style="bold red"), soft_wrap=True)
            files = home.step_files(run_id, step)
            self.console.print(f"  log: {files.log}\n  executed notebook: {files.output}",
                               soft_wrap=True, highlight=False)
        if reason and not errors and escape(reason) not in self._said:
            self.console.print(Text(reason, style="bold red"), soft_wrap=True)
        files = {name: digest for name, digest in outputs.items()
                 if not is_variable(name)}
        if files:
            self.console.print("output files:")
            for name, digest in files.items():
                path = self.runner.artifacts.path(digest) / "data" / name.rstrip("/")
                self.console.print(f"  {name}: {path}", soft_wrap=True, highlight=False,
                                   markup=False)
            latest = getattr(self.runner, "latest", None)  # set when the run succeeded
            if latest is not None:
                self.console.print(f"copies in {latest}{os.sep} (always the last successful "
                                   "run's files)", soft_wrap=True, highlight=False, markup=False)
        took = _fmt(time.time() - self.started)
        style = "green" if state == S.SUCCEEDED else "bold red"
        self.console.print(f"[{style}]{state}[/] in {took}: run {run_id}, "
                           f"results in {home.run_dir(run_id)}", soft_wrap=True, highlight=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the `mlpipe` command")
