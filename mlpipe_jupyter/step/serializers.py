"""Variable artifacts serialised by type, through a registry.

Built-ins (tried in order): pandas DataFrame -> Parquet, numpy ndarray -> .npy, JSON-able
builtins -> JSON, anything else -> cloudpickle. More come from the entry-point group
`mlpipe_jupyter.step.serializers` and are tried first. Import-light: this runs inside every step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class Serializer:
    """One way to write a value to a file and read it back."""

    name = ""
    filename = ""

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def dump(self, value: Any, path: Path) -> None:
        raise NotImplementedError

    def load(self, path: Path) -> Any:
        raise NotImplementedError


def _type_is(value: Any, module: str, name: str) -> bool:
    # checks the type by name, so that pandas or numpy are never imported to ask
    return any(c.__module__.split(".")[0] == module and c.__name__ == name
               for c in type(value).__mro__)


class ParquetFrame(Serializer):
    name, filename = "parquet", "value.parquet"

    def accepts(self, value: Any) -> bool:
        # Parquet keeps only string column names; anything else would come back changed
        return _type_is(value, "pandas", "DataFrame") and all(
            isinstance(c, str) for c in value.columns)

    def dump(self, value: Any, path: Path) -> None:
        value.to_parquet(path)

    def load(self, path: Path) -> Any:
        import pandas as pd

        return pd.read_parquet(path)


class NumpyArray(Serializer):
    name, filename = "npy", "value.npy"

    def accepts(self, value: Any) -> bool:
        return _type_is(value, "numpy", "ndarray") and value.dtype.hasobject is False

    def dump(self, value: Any, path: Path) -> None:
        import numpy as np

        np.save(path, value, allow_pickle=False)

    def load(self, path: Path) -> Any:
        import numpy as np

        return np.load(path, allow_pickle=False)


def _json_exact(value: Any) -> bool:
    """True when JSON gives back exactly this value (no tuples, int keys, NaN, ...)."""
    if value is None or type(value) in (bool, int, str):
        return True
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is list:
        return all(_json_exact(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _json_exact(v) for k, v in value.items())
    return False


class JsonValue(Serializer):
    name, filename = "json", "value.json"

    def accepts(self, value: Any) -> bool:
        return _json_exact(value)

    def dump(self, value: Any, path: Path) -> None:
        path.write_text(json.dumps(value, sort_keys=False), encoding="utf-8")

    def load(self, path: Path) -> Any:
        return json.loads(path.read_text(encoding="utf-8"))


class CloudPickle(Serializer):
    name, filename = "cloudpickle", "value.pkl"

    def accepts(self, value: Any) -> bool:
        return True

    def dump(self, value: Any, path: Path) -> None:
        import cloudpickle

        with open(path, "wb") as fh:
            cloudpickle.dump(value, fh)

    def load(self, path: Path) -> Any:
        import pickle

        with open(path, "rb") as fh:
            return pickle.load(fh)


BUILTINS: tuple[Serializer, ...] = (ParquetFrame(), NumpyArray(), JsonValue(), CloudPickle())
_registry: list[Serializer] | None = None


def registry() -> list[Serializer]:
    """Entry-point serializers first (they are more specific), then the built-ins."""
    global _registry
    if _registry is None:
        from importlib.metadata import entry_points

        extra = [ep.load()() for ep in entry_points(group="mlpipe_jupyter.step.serializers")]
        _registry = [*extra, *BUILTINS]
    return _registry


def by_name(name: str) -> Serializer:
    for ser in registry():
        if ser.name == name:
            return ser
    raise LookupError(f"no serializer named `{name}` is installed")


def dump(value: Any, directory: Path) -> Serializer:
    """Write value into directory with the first serializer that accepts it and succeeds."""
    errors = []
    for ser in registry():
        if not ser.accepts(value):
            continue
        target = directory / ser.filename
        try:
            ser.dump(value, target)
            return ser
        except Exception as exc:  # e.g. Parquet refuses non-string column names: fall through
            errors.append(f"{ser.name}: {exc}")
            target.unlink(missing_ok=True)
    raise TypeError("cannot serialise value of type "
                    f"{type(value).__qualname__}: {'; '.join(errors)}")
