"""A fan-out step's items: how an input splits into mini-batches, how a batch is digested, and
how the batches' outputs are gathered back in item order. Import-light: the same functions run
in a worker kernel (prelude, bind, save) and in the runner (split, digest, gather), so both
sides agree on what a batch is. numpy and pandas are never imported to ask a value's type.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import os
import shutil
from pathlib import Path
from typing import Any

from . import runtime, serializers

ITEMS = "ITEMS"  # what a directory's batch of paths is bound to (it has no variable name)
ITEMS_VAR = "_mlpipe_items"  # the whole split input, in a worker kernel's namespace


def _is_variable(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def directory_items(directory: str | Path, shown: str) -> list[str]:
    """The files under `directory`, as paths starting with `shown` (the input as the step's
    code names it, relative to its working directory), sorted."""
    root = Path(directory)
    name = shown.rstrip("/")
    return sorted(f"{name}/{p.relative_to(root).as_posix()}" for p in root.rglob("*")
                  if p.is_file())


def _kind(items: Any) -> str:
    if isinstance(items, (list, tuple)):
        return "sequence"
    names = {(c.__module__.split(".")[0], c.__name__) for c in type(items).__mro__}
    if ("numpy", "ndarray") in names:
        return "array"
    if ("pandas", "DataFrame") in names or ("pandas", "Series") in names:
        return "frame"
    raise TypeError(f"cannot split a {type(items).__qualname__} into items: --foreach takes a "
                    "list, tuple, numpy array, pandas DataFrame or Series, or a directory")


def count(items: Any) -> int:
    if _kind(items) == "array" and items.ndim == 0:
        raise TypeError("cannot split a 0-dimensional array into items")
    return len(items)


def take(items: Any, start: int, stop: int) -> Any:
    """Items `start` to `stop` (exclusive), of the same type: a slice, rows of a frame."""
    return items.iloc[start:stop] if _kind(items) == "frame" else items[start:stop]


def batches(total: int, size: int) -> list[tuple[int, int]]:
    """(start, stop) of each mini-batch: stable for a position and a batch size."""
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def digest(batch: Any, base: str | Path | None = None) -> str:
    """The content digest of one batch. Paths (a directory's items) are digested by their
    files' bytes under `base`; anything else by what it holds, not how it is stored."""
    h = hashlib.sha256()
    kind = _kind(batch)
    if base is not None:
        for rel in batch:
            h.update(rel.encode() + b"\0")
            with open(Path(base) / rel.split("/", 1)[1], "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):  # noqa: B023
                    h.update(chunk)
    elif kind == "array":
        h.update(f"{batch.dtype.str}{batch.shape}".encode())
        h.update(batch.tobytes() if not batch.dtype.hasobject else _pickled(batch.tolist()))
    elif kind == "frame":
        import pandas as pd

        frame = batch.to_frame() if hasattr(batch, "to_frame") else batch
        h.update(repr((list(frame.columns), list(frame.dtypes))).encode())
        h.update(pd.util.hash_pandas_object(batch, index=True).values.tobytes())
    else:
        try:
            h.update(json.dumps(list(batch), sort_keys=True).encode())
        except (TypeError, ValueError):
            h.update(_pickled(batch))
    return h.hexdigest()


def _pickled(value: Any) -> bytes:
    import pickle

    return pickle.dumps(value, protocol=4)


def gather(parts: list[Any]) -> Any:
    """The batches' values of one output, in item order: sequences concatenated (as the first
    one's type), arrays on axis 0, frames and series with their index; anything else as a
    list with one element per batch."""
    if not parts:
        return []
    try:
        kind = _kind(parts[0])
    except TypeError:
        return list(parts)
    if not all(type(p) is type(parts[0]) for p in parts):
        return list(parts)
    if kind == "sequence":
        return type(parts[0])(item for part in parts for item in part)
    if kind == "array":
        import numpy as np

        return np.concatenate(parts, axis=0)
    import pandas as pd

    return pd.concat(parts)


# -- in a worker kernel ----------------------------------------------------------------------
def prelude(io: dict, params: dict, variables: list[str], split: str) -> dict[str, Any]:
    """A worker's namespace before any batch: the parameters, the step's variable inputs, and
    the whole split input (a directory's as its sorted paths)."""
    names = dict(params)
    for name in variables:
        names[name] = runtime.load_input(io, name)
    names[ITEMS_VAR] = (names[split] if split in variables
                        else directory_items(split, split))
    return names


def bind(ns: dict, split: str, start: int, stop: int, outputs: list[str]) -> None:
    """Bind batch `start`..`stop` of the split input, and forget the previous batch's outputs
    (a batch that does not make one must not hand on the last one's)."""
    for name in outputs:
        if _is_variable(name):
            ns.pop(name, None)
        elif os.path.isdir(name):
            shutil.rmtree(name)
        elif os.path.lexists(name):
            os.unlink(name)
    ns[split if _is_variable(split) else ITEMS] = take(ns[ITEMS_VAR], start, stop)


def save(ns: dict, dest: str, variables: list[str], files: list[str]) -> None:
    """A batch's outputs into `dest`: variables as a step's (runtime.save_outputs), declared
    files moved under `dest/files/`."""
    os.makedirs(dest)
    runtime.save_outputs({"outputs_dir": os.path.join(dest, "out")}, ns, variables, files)
    for name in files:
        target = Path(dest, "files", name.rstrip("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(name.rstrip("/"), target)


def load_output(batch_dir: Path, name: str) -> Any:
    """One batch's value of variable output `name` (as save wrote it)."""
    directory = batch_dir / "out" / name
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    ser = serializers.by_name(meta["serializer"])
    return ser.load(directory / "data" / ser.filename)
