"""Run records (a step's `step.ipynb` and executed `output.ipynb`) as read-only contents models.

Records live under `.mlpipe/`, which jupyter_server hides by default, so the contents API
cannot open them. This module serves exactly those files and nothing else: the path must name
`<home>/runs/<run>/<step>/{step,output}.ipynb` inside the server's root, where `<home>` holds a
run store (`mlpipe.db`). Symlinks that lead outside the root are refused.
"""

from __future__ import annotations

import json
import mimetypes
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import NotFound, UsageError

RECORD_FILES = ("output.ipynb", "step.ipynb")
STORE_FILE = "mlpipe.db"


def record_path(root: Path, path: str) -> Path:
    """The file a contents-style `path` (relative to the server root) names, if it is a record."""
    rel = PurePosixPath(path)
    if not path or rel.is_absolute() or "\\" in path or any(p in ("", ".", "..") for p in
                                                            path.split("/")):
        raise UsageError(f"record path {path!r}: give a path relative to the server root, "
                         "without '..'", file=path)
    parts = rel.parts
    if len(parts) < 5 or parts[-1] not in RECORD_FILES or parts[-4] != "runs":
        raise NotFound(f"{path}: not a run record (<home>/runs/<run>/<step>/output.ipynb)",
                       file=path)
    root = root.resolve()
    target = root.joinpath(*parts)
    home = target.parents[3]
    try:
        real = target.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        raise NotFound(f"{path}: no such run record", file=path) from None
    if not real.is_relative_to(root) or not (home / STORE_FILE).is_file():
        raise NotFound(f"{path}: no such run record", file=path)
    return real


def record_model(root: Path, path: str, *, content: bool = True) -> dict[str, Any]:
    """A jupyter contents-API model of the record, marked read-only."""
    file = record_path(root, path)
    stat = file.stat()
    model: dict[str, Any] = {
        "name": file.name, "path": path, "type": "notebook", "format": None,
        "mimetype": None, "content": None, "writable": False, "size": stat.st_size,
        "created": _iso(stat.st_ctime), "last_modified": _iso(stat.st_mtime),
        "hash": None, "hash_algorithm": None,
    }
    if content:
        try:
            model["content"] = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise NotFound(f"{path}: not a readable notebook ({exc})", file=path) from None
        model["format"] = "json"
        model["mimetype"] = mimetypes.types_map.get(".ipynb")
    return model


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, tz=timezone.utc).isoformat()
