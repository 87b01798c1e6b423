"""Where a step runs: the Executor ABC and its fixed sequence, the `local` executor (warm or
forked kernels on this machine) and the `docker` one (a sandboxed container per step, runtime
images), found by name: the built-ins, then the entry-point group `mlpipe_jupyter.executors`,
registered the way papermill registers its engines."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ..errors import ExecutorError, MlpipeError, UsageError
from ..model.spec import PipelineSpec
from .base import Executor, StepJob

BUILTIN = {
    "local": "mlpipe_jupyter.executors.local:LocalExecutor",
    "docker": "mlpipe_jupyter.executors.docker:DockerExecutor",
}


class ExecutorRegistry:
    def __init__(self) -> None:
        self._targets: dict[str, str] = dict(BUILTIN)
        self._classes: dict[str, type[Executor]] = {}
        for ep in entry_points(group="mlpipe_jupyter.executors"):
            self._targets.setdefault(ep.name, ep.value)

    def register(self, name: str, cls: type[Executor]) -> None:
        self._classes[name] = cls

    def unregister(self, name: str) -> None:
        """Forget an executor registered by `register` (a built-in or entry point stays)."""
        self._classes.pop(name, None)

    def names(self) -> list[str]:
        return sorted({*self._targets, *self._classes})

    def get(self, name: str) -> type[Executor]:
        if name not in self._classes:
            target = self._targets.get(name)
            if target is None:
                raise UsageError(f"--executor: unknown executor `{name}` (known: "
                                 f"{', '.join(self.names())})", option="--executor")
            module, _, attr = target.partition(":")
            self._classes[name] = getattr(import_module(module), attr)
        return self._classes[name]

    def choose(self, asked: str | None, options: dict[str, Any], *, spec: PipelineSpec,
               base_dir: Path) -> tuple[str, Executor, list[str]]:
        """(name, executor, notes) for a run. The executor asked for (an error if it cannot
        start); else docker when a daemon answers and can run this pipeline here (its
        preflight), else local with a one-line note saying why."""
        if asked is not None:
            executor = self.get(asked)(**options)
            if (why := executor.ready()) is not None:
                raise ExecutorError(why, option="--executor")
            return asked, executor, []
        notes = []
        if "docker" in self.names():
            executor = self.get("docker")(**options)
            if (why := executor.ready()) is not None:
                notes.append(f"{why.split(': start it')[0]}; steps run locally, without "
                             "containers")
            else:
                try:
                    executor.preflight(spec=spec, base_dir=base_dir)
                    return "docker", executor, notes
                except MlpipeError as err:
                    notes.append(f"docker executor cannot run here: {err}; steps run locally, "
                                 "without containers")
        return "local", self.get("local")(**options), notes


executors = ExecutorRegistry()

__all__ = ["Executor", "ExecutorRegistry", "StepJob", "executors"]
