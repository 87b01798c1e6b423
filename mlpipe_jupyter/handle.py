"""PipelineRun: the handle `%pipeline run` returns at once while the run goes on in a thread."""

from __future__ import annotations

import threading
import time
from typing import Any

from .errors import NotFound
from .events import FINAL, QUEUED, RunListener
from .runner import PipelineRunner


class StepView(RunListener):
    """The latest known state of every step of one run, kept from the runner's events."""

    def __init__(self, steps: list[str]) -> None:
        self.steps: dict[str, dict[str, Any]] = {
            name: {"state": QUEUED, "reason": None, "error": None, "started": None,
                   "finished": None, "attempt": 1, "outputs": {}, "done": 0, "total": 0}
            for name in steps}
        self.logs: dict[str, list[str]] = {name: [] for name in steps}
        self.lock = threading.Lock()

    def on_step_state(self, *, step, state, at, reason=None, error=None, attempt=1,
                      outputs=None, **_) -> None:
        with self.lock:
            info = self.steps.setdefault(step, {})
            info.update(state=state, reason=reason, attempt=attempt)
            if error is not None:
                info["error"] = error
            if state == "running":
                info["started"] = info.get("started") or at
            if state in FINAL:
                info["finished"] = at
                info["started"] = info.get("started") or at
            if outputs is not None:
                info["outputs"] = outputs

    def on_step_log(self, *, step, line, **_) -> None:
        with self.lock:
            lines = self.logs.setdefault(step, [])
            lines.append(line)
            del lines[:-200]

    def on_step_progress(self, *, step, done, total, **_) -> None:
        with self.lock:
            self.steps.setdefault(step, {}).update(done=done, total=total)

    def table(self) -> str:
        rows = [("step", "state", "time", "detail")]
        with self.lock:
            for name, info in self.steps.items():
                started, finished = info.get("started"), info.get("finished")
                took = (finished or time.time()) - started if started else None
                detail = ""
                if info.get("error"):
                    detail = info["error"].get("message", "")
                elif info.get("reason"):
                    detail = info["reason"]
                rows.append((name, info["state"], f"{took:.1f}s" if took is not None else "",
                             detail))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
            for row in rows).rstrip()


class PipelineRun:
    """A run in progress: `.wait()`, `.cancel()`, `.status`, `.steps`, `.load("artifact")`."""

    def __init__(self, runner: PipelineRunner) -> None:
        self.runner = runner
        self.id = runner.run_id
        self.view = StepView(runner.order)
        runner.add_listener(self.view)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"mlpipe-run-{self.id}",
                                        daemon=True)

    def start(self) -> PipelineRun:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as err:  # kept for wait(); the store already has the outcome
            self._error = err

    @property
    def status(self) -> str:
        return self.runner.state

    @property
    def steps(self) -> dict[str, str]:
        with self.view.lock:
            return {name: info["state"] for name, info in self.view.steps.items()}

    @property
    def done(self) -> bool:
        return not self._thread.is_alive() and self._thread.ident is not None

    def wait(self, timeout: float | None = None) -> str:
        """Block until the run ends (or `timeout` seconds pass); return its state."""
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        return self.status

    def cancel(self) -> str:
        self.runner.cancel()
        self._thread.join(60)
        return self.status

    def load(self, artifact: str) -> Any:
        """An output of this run brought back into the kernel (waits for the run)."""
        self.wait()
        with self.view.lock:
            for info in self.view.steps.values():
                digest = info.get("outputs", {}).get(artifact)
                if digest:
                    return self.runner.artifacts.load(digest)
        raise NotFound(f"run {self.id} has no output `{artifact}` (did its step succeed?)")

    def log(self, step: str) -> str:
        with self.view.lock:
            return "\n".join(self.view.logs.get(step, []))

    def __repr__(self) -> str:
        return f"PipelineRun {self.id}: {self.status}\n{self.view.table()}"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))
