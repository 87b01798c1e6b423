"""StepSpec and PipelineSpec: frozen dataclasses with a JSON round trip. Pure, no I/O."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SPEC_VERSION = 1


def is_variable(item: str) -> bool:
    """An artifact named by a Python identifier is a variable; anything else is a file path."""
    import keyword

    return item.isidentifier() and not keyword.iskeyword(item)


@dataclass(frozen=True)
class StepSpec:
    name: str
    code: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    inputs_inferred: bool = False
    env: tuple[tuple[str, str], ...] = ()
    retries: int = 0
    timeout: float | None = None
    no_cache: bool = False
    image: str | None = None
    cpus: float | None = None
    memory: str | None = None
    gpus: int | None = None
    network: str | None = None

    @property
    def variable_outputs(self) -> tuple[str, ...]:
        return tuple(o for o in self.outputs if is_variable(o))

    @property
    def file_outputs(self) -> tuple[str, ...]:
        return tuple(o for o in self.outputs if not is_variable(o))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["env"] = dict(self.env)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepSpec:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("inputs", "outputs", "after"):
            kwargs[key] = tuple(kwargs.get(key, ()))
        kwargs["env"] = tuple(sorted(dict(kwargs.get("env") or {}).items()))
        return cls(**kwargs)


@dataclass(frozen=True)
class PipelineSpec:
    steps: tuple[StepSpec, ...] = ()
    params: tuple[tuple[str, Any], ...] = ()
    setup: str = ""
    requirements: str | None = None
    pip: tuple[str, ...] = ()
    version: int = field(default=SPEC_VERSION, compare=False)

    @property
    def param_defaults(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)

    def step(self, name: str) -> StepSpec:
        for s in self.steps:
            if s.name == name:
                return s
        from ..errors import NotFound

        raise NotFound(f"no step `{name}` in this pipeline (steps: {', '.join(self.step_names)})",
                       step=name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "params": dict(self.params),
            "setup": self.setup,
            "requirements": self.requirements,
            "pip": list(self.pip),
            "steps": [s.to_dict() for s in self.steps],
        }

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineSpec:
        return cls(
            steps=tuple(StepSpec.from_dict(s) for s in data.get("steps", ())),
            params=tuple((data.get("params") or {}).items()),
            setup=data.get("setup", ""),
            requirements=data.get("requirements"),
            pip=tuple(data.get("pip", ())),
            version=data.get("version", SPEC_VERSION),
        )

    @classmethod
    def from_json(cls, text: str) -> PipelineSpec:
        return cls.from_dict(json.loads(text))

