"""Assemble a PipelineSpec from magic lines and cell bodies.

Both the kernel's registry (cells that ran) and the `.ipynb` reader feed cells through this one
builder, so the same notebook gives the same spec either way.
"""

from __future__ import annotations

from typing import Any

from .checks import check_default
from .codeinfo import free_names, parse_params
from .options import SetupOptions, StepOptions, parse_setup_line, parse_step_line
from .spec import PipelineSpec, StepSpec, is_variable


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
        self.setup: str = ""
        self.setup_options = SetupOptions(requirements=None, pip=())
        self._steps: dict[str, tuple[StepOptions, str]] = {}
        self._cell_step: dict[str, str] = {}

    def add_params(self, code: str) -> dict[str, Any]:
        values = parse_params(code)
        for name, value in values.items():  # JSON values only, as `-p` (checks.json_problem)
            check_default(name, value)
        self.params.update(values)
        return values

    def set_setup(self, line: str, code: str) -> SetupOptions:
        options = parse_setup_line(line)
        free_names(normalize_code(code))  # a syntax error is reported now, not in every step
        self.setup, self.setup_options = normalize_code(code), options
        return options

    def add_step(self, line: str, code: str, *, cell_id: str | None = None) -> StepOptions:
        """Register (or replace) a step. A cell re-run under a new name drops its old step."""
        options = parse_step_line(line)
        code = normalize_code(code)
        if options.inputs is None:
            free_names(code)  # syntax errors surface at registration
        if cell_id is not None:
            old = self._cell_step.get(cell_id)
            if old is not None and old != options.name:
                self._steps.pop(old, None)
            self._cell_step[cell_id] = options.name
        self._steps[options.name] = (options, code)
        return options

    def clear(self) -> None:
        self.__init__()

    def __contains__(self, name: str) -> bool:
        return name in self._steps

    def spec(self) -> PipelineSpec:
        produced = {
            out: name for name, (opts, _) in self._steps.items()
            for out in opts.outputs if is_variable(out)
        }
        steps = []
        for name, (opts, code) in self._steps.items():
            if opts.inputs is None:
                inputs = tuple(n for n in free_names(code) if n in produced and produced[n] != name)
            else:
                inputs = opts.inputs
            steps.append(StepSpec(
                name=name, code=code, inputs=inputs, outputs=opts.outputs, after=opts.after,
                inputs_inferred=opts.inputs is None, env=opts.env, retries=opts.retries,
                timeout=opts.timeout, no_cache=opts.no_cache, image=opts.image, cpus=opts.cpus,
                memory=opts.memory, gpus=opts.gpus, network=opts.network,
            ))
        return PipelineSpec(
            steps=tuple(steps), params=tuple(self.params.items()), setup=self.setup,
            requirements=self.setup_options.requirements, pip=self.setup_options.pip,
        )
