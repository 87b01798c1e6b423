"""CLI configuration: `[tool.mlpipe]` in the nearest pyproject.toml, then MLPIPE_* variables.

Explicit command-line options win over both. No hidden globals: callers pass a Config along.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import UsageError


@dataclass(frozen=True)
class Config:
    executor: str | None = None
    max_parallel: int | None = None
    base_image: str | None = None  # None: images.DEFAULT_BASES, the first the engine has
    network: str | None = None
    source: str = "defaults"


def _pyproject(start: Path) -> Path | None:
    for directory in [start, *start.parents]:
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(start: str | Path, environ: dict[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    sources = []
    path = _pyproject(Path(start).resolve())
    if path is not None:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            table = data.get("tool", {}).get("mlpipe", {})
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise UsageError(f"{path}: cannot read [tool.mlpipe]: {err}", file=str(path)) from None
        known = {f.name.replace("_", "-"): f.name for f in fields(Config) if f.name != "source"}
        for key, value in table.items():
            if key.replace("_", "-") not in known:
                raise UsageError(f"{path}: unknown setting `{key}` in [tool.mlpipe] (known: "
                                 f"{', '.join(sorted(known))})", file=str(path), option=key)
            values[known[key.replace("_", "-")]] = value
        if table:
            sources.append(str(path))
    for name in ("executor", "max_parallel", "base_image", "network"):
        env = environ.get(f"MLPIPE_{name.upper()}")
        if env:
            values[name] = env
            sources.append(f"MLPIPE_{name.upper()}")
    if "max_parallel" in values:
        try:
            values["max_parallel"] = int(values["max_parallel"])
        except (TypeError, ValueError):
            raise UsageError(f"max-parallel must be an integer, got {values['max_parallel']!r}",
                             option="max-parallel") from None
    return Config(**values, source=", ".join(sources) or "defaults")
