"""What runs inside a step's kernel: load the inputs, save the outputs. Import-light.

A step notebook calls `load_input` in its inputs cell and `save_outputs` in its outputs cell;
`io` is the `_mlpipe_io` parameter papermill injects (paths as the kernel sees them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import serializers


class MissingOutput(Exception):
    """The step finished without producing an output it declared."""


def load_input(io: dict, name: str) -> Any:
    directory = Path(io["inputs"][name])
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    ser = serializers.by_name(meta["serializer"])
    return ser.load(directory / "data" / ser.filename)


def save_outputs(io: dict, namespace: dict, variables: list[str], files: list[str]) -> None:
    """Serialise each declared variable and check each declared file exists."""
    missing = [v for v in variables if v not in namespace]
    missing += [f for f in files if not _exists(f)]
    if missing:
        raise MissingOutput("did not produce its declared output"
                            + ("s " if len(missing) > 1 else " ")
                            + ", ".join(f"`{m}`" for m in missing))
    out_root = Path(io["outputs_dir"])
    for name in variables:
        target = out_root / name / "data"
        target.mkdir(parents=True, exist_ok=True)
        value = namespace[name]
        ser = serializers.dump(value, target)
        meta = {"kind": "variable", "serializer": ser.name,
                "type": f"{type(value).__module__}.{type(value).__qualname__}"}
        (out_root / name / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def _exists(path: str) -> bool:
    return os.path.isdir(path) if path.endswith("/") else os.path.exists(path)
