"""Executors by name: the built-ins, then the entry-point group `mlpipe_jupyter.executors`,
registered the way papermill registers its engines."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from ..errors import UsageError
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


executors = ExecutorRegistry()

__all__ = ["Executor", "ExecutorRegistry", "StepJob", "executors"]
