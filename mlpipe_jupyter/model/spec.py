"""StepSpec and PipelineSpec: frozen dataclasses with a JSON round trip. Pure, no I/O.

A field a magic's line sets declares its option here (rules.option): the `%%step` and
`%%pipeline_setup` parsers, their help and the copy into the spec are derived from it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from . import rules
from .rules import NETWORKS, is_variable, option

SPEC_VERSION = 1
FANOUT = ("foreach", "batch_size", "workers", "max_failures", "item_timeout")


@dataclass(frozen=True)
class StepSpec:
    name: str = option("name", "step name: [A-Za-z_][A-Za-z0-9_-]*, unique in the notebook",
                       rule=rules.step_name)
    code: str
    inputs: tuple[str, ...] = option(
        "--inputs", "artifacts this step reads (identifiers are variables, anything else a "
        "relative file path); inferred from the code when omitted", default=(), nargs="+",
        metavar="X", rule=rules.artifacts)
    outputs: tuple[str, ...] = option("--outputs", "artifacts this step writes", default=(),
                                      nargs="+", metavar="X", rule=rules.artifacts)
    after: tuple[str, ...] = option("--after", "run after these steps", default=(), nargs="+",
                                    metavar="STEP", rule=rules.step_names)
    inputs_inferred: bool = False  # --inputs was left out: the builder inferred them
    env: tuple[tuple[str, str], ...] = option(
        "--env", "environment variables for the step", default=(), nargs="+",
        metavar="KEY=VALUE", rule=rules.env_pairs)
    retries: int = option("--retries", "retry a failed step N times", default=0, type=int,
                          metavar="N", rule=rules.zero_or_more)
    timeout: float | None = option("--timeout", "fail the step after this many seconds",
                                   default=None, type=float, metavar="SECONDS",
                                   rule=rules.timeout_seconds)
    no_cache: bool = option("--no-cache", "never reuse an earlier result", default=False,
                            switch=True)
    image: str | None = option(
        "--image", "run this step in IMAGE instead of the pipeline's runtime image",
        default=None, metavar="IMAGE", rule=rules.image_name)
    cpus: float | None = option("--cpus", "CPU limit (docker)", default=None, type=float,
                                metavar="N", rule=rules.positive_number)
    memory: str | None = option("--memory", "memory limit such as 512m or 2g", default=None,
                                metavar="SIZE", rule=rules.memory_size)
    gpus: int | None = option("--gpus", "GPUs to request (docker)", default=None, type=int,
                              metavar="N", rule=rules.one_or_more)
    network: str | None = option("--network", "container network: none or bridge",
                                 default=None, choices=NETWORKS)
    # fan-out (run/foreach.py): the step's code runs once per mini-batch of one input's items
    foreach: str | None = option(
        "--foreach", "run the code once per mini-batch of this input's items (a list, tuple, "
        "array, DataFrame, Series or directory), bound to the batch", default=None,
        metavar="ITEMS", rule=rules.artifact)
    batch_size: int = option("--batch-size", "items per mini-batch (--foreach)", default=1,
                             type=int, metavar="N", rule=rules.one_or_more)
    workers: int | None = option("--workers", "kernels running mini-batches at once "
                                 "(--foreach; default: the run's parallelism)", default=None,
                                 type=int, metavar="N", rule=rules.one_or_more)
    max_failures: int = option("--max-failures", "failed mini-batches tolerated (--foreach)",
                               default=0, type=int, metavar="N", rule=rules.zero_or_more)
    item_timeout: float | None = option(
        "--item-timeout", "fail a mini-batch after this many seconds, replacing its worker "
        "(--foreach)", default=None, type=float, metavar="SECONDS", rule=rules.timeout_seconds)

    def __post_init__(self) -> None:
        rules.foreach_options(self)

    @property
    def variable_outputs(self) -> tuple[str, ...]:
        return tuple(o for o in self.outputs if is_variable(o))

    @property
    def file_outputs(self) -> tuple[str, ...]:
        return tuple(o for o in self.outputs if not is_variable(o))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["env"] = dict(self.env)
        if self.foreach is None:  # a step that fans out nothing writes the JSON it always did
            for name in FANOUT:
                del data[name]
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
    requirements: str | None = option("--requirements", "a requirements file the step image "
                                      "must install", default=None, metavar="FILE")
    pip: tuple[str, ...] = option("--pip", "packages the step image must install", default=(),
                                  nargs="+", metavar="PKG")
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

