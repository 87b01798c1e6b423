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
from ..run.events import FINAL, StepView

ICONS = {"queued": "·", "running": "▶", "succeeded": "✔", "failed": "✘", "cached": "↺",
         "skipped": "⤼", "cancelled": "■"}
STYLES = {"queued": "dim", "running": "cyan", "succeeded": "green", "failed": "bold red",
          "cached": "blue", "skipped": "yellow", "cancelled": "magenta"}


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


class TerminalProgress(StepView):
    """A live table on a terminal; one line per state change when output is not a terminal.
    The steps' state is kept by StepView, as for the kernel's PipelineRun."""

    def __init__(self, runner, console: Console | None = None) -> None:
        super().__init__(runner.order)
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
    def _detail(info: dict) -> str:
        # messages quote user text (`[[gpu]]`, tracebacks): never read them as markup
        return escape((info.get("error") or {}).get("message") or info.get("reason") or "")

    def on_step_state(self, *, step, state, at, **kw) -> None:
        super().on_step_state(step=step, state=state, at=at, **kw)
        if self._live is not None:
            self._live.update(self._table())
        elif state != "queued":
            with self.lock:
                info = dict(self.steps[step])
            took = _fmt(at - info["started"]) if state in FINAL else ""
            detail = self._detail(info)
            if detail in self._said and state in ("skipped", "cancelled"):
                detail = "(as above)"
            self._said.add(detail)
            self.console.print(f"[{_fmt(at - self.started):>7}] {ICONS[state]} {step:<20} "
                               f"[{STYLES[state]}]{state:<9}[/] {took:>7}"
                               f"{'  ' + detail if detail else ''}",
                               markup=True, soft_wrap=True)

    def on_step_progress(self, **kw) -> None:
        super().on_step_progress(**kw)
        if self._live is not None:
            self._live.update(self._table())

    def _table(self, below: frozenset[str] = frozenset()) -> Table:
        """The steps' table; a detail in `below` is printed under it, so not in it."""
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for col in ("", "step", "state", "time", "detail"):
            table.add_column(col, overflow="fold" if col == "detail" else "ellipsis")
        now = time.time()
        with self.lock:
            for name, info in self.steps.items():
                state = info["state"]
                end = info.get("finished") or now
                took = _fmt(end - info["started"]) if info.get("started") else ""
                detail = self._detail(info)
                if state == "running" and info["total"]:
                    detail = f"cell {info['done']}/{info['total']}"
                elif detail in below:  # said once, above as it happened or below
                    detail = "(above)" if detail in self._said else "(below)"
                table.add_row(ICONS[state], name, f"[{STYLES[state]}]{state}[/]", took, detail)
        return table

    def summary(self, state: str) -> None:
        """The table, then each error once (with where to read more), then the outcome."""
        run_dir = self.runner.home.runs / self.runner.run_id
        with self.lock:
            errors = {n: i["error"] for n, i in self.steps.items()
                      if i.get("error") and i["error"].get("error") != "Cancelled"}
            outputs = {k: v for i in self.steps.values() for k, v in i["outputs"].items()}
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
            self.console.print(f"  log: {run_dir / step / 'log.txt'}\n"
                               f"  executed notebook: {run_dir / step / 'output.ipynb'}",
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
        style = "green" if state == "succeeded" else "bold red"
        self.console.print(f"[{style}]{state}[/] in {took}: run {self.runner.run_id}, "
                           f"results in {run_dir}", soft_wrap=True, highlight=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the `mlpipe` command")
