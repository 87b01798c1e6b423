"""How a magic's option is declared, and the rules its values obey, one function each.

An option is declared once, on the spec field that keeps its value (`option()` on a StepSpec or
PipelineSpec field): its flag, help, how argparse reads it and its rule. The parser, the
magic's help and the copy of parsed values into the spec are derived from those fields
(options.py). A rule takes `(value, step, flag)` and returns the value the spec keeps, or
raises a one-line UsageError naming the step and the option.
"""

from __future__ import annotations

import keyword
import math
import posixpath
import re
import threading
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from typing import Any

from ..errors import UsageError

NETWORKS = ("none", "bridge")
MEMORY = re.compile(r"(\d+(?:\.\d+)?)([bkmg]?)\Z", re.I)
STEP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

Rule = Callable[[Any, str | None, str], Any]


@dataclass(frozen=True)
class Option:
    """How one spec field is written on a magic's line."""

    flag: str  # `--memory`; a word without a leading `-` is positional (and the field's name)
    help: str
    metavar: str | None = None
    nargs: str | None = None  # "+": one or more words, kept as a tuple
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    switch: bool = False  # a flag without a value: True when given
    rule: Rule | None = None


def option(flag: str, help: str, *, default: Any = MISSING, **how: Any) -> Any:
    """A dataclass field whose value a magic's line sets with `flag` (see Option)."""
    return field(default=default, metadata={"option": Option(flag, help, **how)})


def is_variable(item: str) -> bool:
    """An artifact named by a Python identifier is a variable; anything else is a file path."""
    return item.isidentifier() and not keyword.iskeyword(item)


def _where(step: str | None, flag: str) -> str:
    return f"step `{step}` {flag}" if step else flag


def _bad(step: str | None, flag: str, what: str) -> UsageError:
    return UsageError(f"{_where(step, flag)}: {what}", step=step, option=flag)


def step_name(name: str, step: str | None, flag: str) -> str:
    """The name a `%%step` line declares."""
    if not STEP_NAME.match(name):
        raise UsageError(f"%%step: invalid step name `{name}`: use letters, digits, `_` and `-`, "
                         "not starting with a digit or `-`", step=name, option="NAME")
    return name


def step_names(names: tuple[str, ...], step: str | None, flag: str) -> tuple[str, ...]:
    for name in names:
        if not STEP_NAME.match(name):
            raise _bad(step, flag, f"`{name}` is not a step name")
    return names


def check_artifact(item: str, *, option: str, step: str | None = None) -> str:
    """A variable name, or a relative path that stays inside the step's working directory."""
    if is_variable(item):
        return item
    if not item or item.strip() != item or "\x00" in item or "\\" in item:
        raise _bad(step, option, f"`{item}` is not a valid artifact name")
    if item.startswith("/") or re.match(r"[A-Za-z]:", item):
        raise _bad(step, option, f"`{item}` is an absolute path; artifacts are paths relative "
                                 "to the step's working directory")
    norm = posixpath.normpath(item)
    if norm == "." or norm == ".." or norm.startswith("../") or ".." in item.split("/"):
        raise _bad(step, option, f"`{item}` escapes the step's working directory")
    if norm.split("/")[0] == ".mlpipe":
        raise _bad(step, option, f"`{item}` is inside .mlpipe/, which mlpipe owns")
    return item


def artifact(item: str, step: str | None, flag: str) -> str:
    return check_artifact(item, option=flag, step=step)


def artifacts(items: tuple[str, ...], step: str | None, flag: str) -> tuple[str, ...]:
    """Artifact names (check_artifact), none listed twice."""
    for item in items:
        check_artifact(item, option=flag, step=step)
    dup = {i for i in items if items.count(i) > 1}
    if dup:
        raise _bad(step, flag, f"`{sorted(dup)[0]}` is listed twice")
    return items


def env_pairs(items: tuple[str, ...], step: str | None, flag: str
              ) -> tuple[tuple[str, str], ...]:
    """`KEY=VALUE` words as sorted (key, value) pairs; a later KEY wins."""
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not ENV_KEY.match(key):
            raise _bad(step, flag, f"`{item}` is not KEY=VALUE")
        env[key] = value
    return tuple(sorted(env.items()))


def zero_or_more(value: int, step: str | None, flag: str) -> int:
    if value < 0:
        raise _bad(step, flag, f"must be 0 or more, got {value}")
    return value


def one_or_more(value: int, step: str | None, flag: str) -> int:
    if value < 1:
        raise _bad(step, flag, f"must be 1 or more, got {value}")
    return value


def positive_number(value: float, step: str | None, flag: str) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise _bad(step, flag, f"must be a positive number, got {value:g}")
    return value


def timeout_seconds(value: float, step: str | None, flag: str) -> float:
    # inf, nan and more than ~292 years: a timer cannot wait that long (leave it out)
    if not 0 < value <= threading.TIMEOUT_MAX:
        raise _bad(step, flag, f"must be a positive number of seconds, at most "
                               f"{threading.TIMEOUT_MAX:.0f} (leave it out for no timeout), got "
                               f"{value:g}")
    return value


def parse_memory(text: str, *, step: str | None = None) -> int:
    """`512m`, `1g`, `1.5g`, `1048576` -> bytes."""
    match = MEMORY.match(text.strip())
    if not match or not 0 < float(match.group(1)) < 2 ** 63:
        raise _bad(step, "--memory", f"`{text}` is not a size such as 512m or 2g")
    unit = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]
    return int(float(match.group(1)) * unit)


def memory_size(text: str, step: str | None, flag: str) -> str:
    """A size parse_memory reads, kept as written."""
    parse_memory(text, step=step)
    return text


def image_name(name: str, step: str | None, flag: str) -> str:
    if not name.strip() or " " in name:
        raise _bad(step, flag, f"`{name}` is not an image name")
    return name


FOREACH_ONLY = {"batch_size": ("--batch-size", 1), "workers": ("--workers", None),
                "max_failures": ("--max-failures", 0), "item_timeout": ("--item-timeout", None)}


def foreach_options(spec: Any) -> None:
    """A StepSpec's fan-out options agree with each other and with its inputs."""
    if spec.foreach is None:
        given = next((flag for name, (flag, default) in FOREACH_ONLY.items()
                      if getattr(spec, name) != default), None)
        if given is not None:
            raise _bad(spec.name, given, "only means something with --foreach")
        return
    if spec.foreach not in spec.inputs:  # inferred inputs too: a split input is declared
        raise _bad(spec.name, "--foreach", f"`{spec.foreach}` is not one of the step's "
                   f"--inputs ({', '.join(spec.inputs) or 'none'})")
    if not is_variable(spec.foreach) and not spec.foreach.endswith("/"):
        raise _bad(spec.name, "--foreach", f"`{spec.foreach}` is a file input: only a directory "
                   f"(`{spec.foreach}/`) splits into items")
