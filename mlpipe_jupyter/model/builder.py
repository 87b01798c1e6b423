"""Assemble a PipelineSpec from magic lines and cell bodies.

Both the kernel's registry (cells that ran) and the `.ipynb` reader feed cells through this one
builder, so the same notebook gives the same spec either way.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .checks import check_default
from .codeinfo import free_names, parse_params
from .options import StepLine, parse_setup_line, read_step_line
from .spec import PipelineSpec, StepSpec


def normalize_code(code: str) -> str:
    lines = code.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(line.rstrip() for line in lines)


class PipelineBuilder:
    """Steps, parameters and setup code in the order they were declared."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self._setup = PipelineSpec()  # the %%pipeline_setup cell: its options and code
        self._steps: dict[str, StepSpec] = {}  # as declared: inferred inputs not filled in
        self._cell_step: dict[str, str] = {}

    def add_params(self, code: str) -> dict[str, Any]:
        values = parse_params(code)
        for name, value in values.items():  # JSON values only, as `-p` (checks.json_problem)
            check_default(name, value)
        self.params.update(values)
        return values

    def set_setup(self, line: str, code: str) -> None:
        setup = replace(parse_setup_line(line), setup=normalize_code(code))
        free_names(setup.setup)  # a syntax error is reported now, not in every step
        self._setup = setup

    def add_step(self, line: str, code: str, *, cell_id: str | None = None) -> StepLine:
        """Register (or replace) a step. A cell re-run under a new name drops its old step."""
        parsed = read_step_line(line)
        step = replace(parsed.spec, code=normalize_code(code))
        if step.inputs_inferred:
            free_names(step.code)  # syntax errors surface at registration
        if cell_id is not None:
            old = self._cell_step.get(cell_id)
            if old is not None and old != step.name:
                self._steps.pop(old, None)
            self._cell_step[cell_id] = step.name
        self._steps[step.name] = step
        return replace(parsed, spec=step)

    def clear(self) -> None:
        self.__init__()

    def __contains__(self, name: str) -> bool:
        return name in self._steps

    def spec(self) -> PipelineSpec:
        produced = {out: step.name for step in self._steps.values()
                    for out in step.variable_outputs}
        steps = tuple(
            replace(step, inputs=tuple(n for n in free_names(step.code)
                                       if n in produced and produced[n] != step.name))
            if step.inputs_inferred else step
            for step in self._steps.values())
        return replace(self._setup, steps=steps, params=tuple(self.params.items()))
