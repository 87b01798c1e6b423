"""Published pipelines: immutable, content-addressed snapshots of a notebook and the files it
reads from beside it, numbered per name (v1, v2, ...), one of them the default.

A version's content is its code cells' sources (what the pipeline is made of: saving the
notebook with new outputs does not make a new version) and every file input's bytes. The
snapshot lives in `<home>/pipelines/<name>/<digest>/`, the notebook as `<name>.ipynb`, so the
run store files its runs under the published name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import NotFound, UsageError
from ..home import Home
from ..model.checks import check_params
from ..run.storecheck import os_error_line
from ..safefs import Refused, copy_out, links_out_of, open_beneath
from .db import ServiceDB
from .errors import BadParameters, Conflict
from .times import iso as _iso

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def snapshots(home: Home) -> Path:
    return home.root / "pipelines"


def check_name(name: str) -> str:
    if not NAME.match(name or "") or ".." in name:
        raise UsageError(f"pipeline name {name!r}: use letters, digits, `_`, `-` and `.` "
                         "(at most 64, starting with a letter or digit)", option="name")
    return name


def notebook_under(root: Path, notebook: str) -> Path:
    """The notebook `notebook` (relative to the server's root) names; never outside it."""
    rel = PurePosixPath(notebook or "")
    if not notebook or rel.is_absolute() or ".." in rel.parts or not notebook.endswith(".ipynb"):
        raise UsageError(f"notebook {notebook!r}: give a .ipynb path relative to the server "
                         "root, without '..'", option="notebook", file=notebook)
    root = root.resolve()
    path = root.joinpath(*rel.parts)
    try:
        real = path.resolve(strict=True)
    except (OSError, ValueError):  # missing, a loop, a NUL byte, too long: not a notebook here
        raise NotFound(f"{notebook}: no such notebook under {root}", file=notebook) from None
    if not real.is_relative_to(root) or not real.is_file():
        raise NotFound(f"{notebook}: no such notebook under {root}", file=notebook)
    return real


MAX_INPUT_BYTES = 1 << 30  # all file inputs of one publish together: 1 GiB
WHY = "a file input is published as itself, never through a link"


def _input_size(base: Path, item: str, label: str) -> int:
    """The bytes of the file or directory `item` under `base`, reached and listed without
    following a link (a link inside a directory counts nothing: it is checked when copied)."""
    fd, st = open_beneath(base, item, label=label, why=WHY)
    try:
        if stat.S_ISREG(st.st_mode):
            return st.st_size
        total = 0
        for _, _, files, dir_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
            for name in files:
                seen = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if stat.S_ISREG(seen.st_mode):
                    total += seen.st_size
        return total
    finally:
        os.close(fd)


def _stage_inputs(base: Path, files: list[str], staging: Path) -> None:
    """Copy each file input from beside the notebook (`base`) into `staging`: regular files
    and directories only, never through a symlink (one inside a directory is kept as itself
    when it stays inside it), at most MAX_INPUT_BYTES in all. One 400 line naming the file
    otherwise; a FIFO or a device is refused unread, so it cannot hang the request."""
    total = 0
    for item in files:
        label = f"file input `{item}`"
        try:
            total += _input_size(base, item, label)
            if total > MAX_INPUT_BYTES:
                raise Refused(f"{label} makes the file inputs larger than "
                              f"{MAX_INPUT_BYTES >> 30} GiB in all")
            dst = staging / item
            dst.parent.mkdir(parents=True, exist_ok=True)
            copy_out(base, item, dst, label=label, shown=f"{item.rstrip('/')}/", links=True)
            if dst.is_dir() and not dst.is_symlink():
                links_out_of(dst, label=label, shown=f"{item.rstrip('/')}/")
        except Refused as err:
            raise UsageError(f"cannot publish: {err}", option="notebook", file=item) from None
        except FileNotFoundError:
            raise UsageError(f"cannot publish: {label} is gone", option="notebook",
                             file=item) from None
        except OSError as err:
            raise UsageError(f"cannot publish: {label}: {os_error_line(err)}",
                             option="notebook", file=item) from None


def _digest_tree(h: Any, path: Path, label: str) -> None:
    """Hash the staged copy `path` (written only here): a link as itself, never followed."""
    if path.is_symlink():
        h.update(f"\0link {label}\0".encode() + os.readlink(path).encode())
        return
    if path.is_dir():
        for child in sorted(path.iterdir()):
            _digest_tree(h, child, f"{label}/{child.name}")
        return
    h.update(f"\0file {label}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)


def publish(db: ServiceDB, home: Home, root: Path, notebook: str, name: str,
            description: str | None = None) -> tuple[dict, bool]:
    """Snapshot `notebook` as pipeline `name`: (its version, True when a new one was made)."""
    from ..model.dag import build_dag
    from ..model.notebook import load_cells, read_pipeline

    check_name(name)
    path = notebook_under(root, notebook)
    spec = read_pipeline(path)
    graph = build_dag(spec, file_exists=lambda p: os.path.lexists(path.parent / p))
    files = sorted({item for n in graph.nodes for item in graph.nodes[n]["sources"]})
    parent = snapshots(home) / name
    parent.mkdir(parents=True, exist_ok=True)
    # copied aside first, then hashed and renamed into place: what is hashed is what is
    # published, and there is never a half snapshot
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
    try:
        shutil.copyfile(path, staging / f"{name}.ipynb")
        _stage_inputs(path.parent, files, staging)
        h = hashlib.sha256()
        for source in load_cells(path):
            h.update(b"\0cell\0" + (source or "").encode())
        for item in files:
            _digest_tree(h, staging / item, item)
        digest = h.hexdigest()
        found = db.one("SELECT version FROM versions WHERE name=? AND digest=?", (name, digest))
        if found is not None:
            return pipeline_version(db, name, found["version"]), False
        target = parent / digest[:32]
        if not target.exists():
            # published at the same moment by another request: the same content, kept once
            with contextlib.suppress(OSError):
                staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    steps = [{"name": s.name, "inputs": list(s.inputs), "outputs": list(s.outputs),
              "after": list(s.after)} for s in spec.steps]
    now = time.time()
    with db.transaction() as c:
        again = c.execute("SELECT version FROM versions WHERE name=? AND digest=?",
                          (name, digest)).fetchone()
        if again is not None:
            version, made = again["version"], False
        else:
            c.execute("INSERT OR IGNORE INTO pipelines (name, description, enabled, created) "
                      "VALUES (?,?,1,?)", (name, description, now))
            top = c.execute("SELECT MAX(version) AS v FROM versions WHERE name=?",
                            (name,)).fetchone()["v"]
            version, made = (top or 0) + 1, True
            c.execute("INSERT INTO versions (name, version, digest, created, notebook, source, "
                      "parameters, steps, files, description) VALUES (?,?,?,?,?,?,?,?,?,?)",
                      (name, version, digest, now, str(target / f"{name}.ipynb"), notebook,
                       json.dumps(spec.param_defaults), json.dumps(steps), json.dumps(files),
                       description))
            c.execute("UPDATE pipelines SET default_version=?, description=COALESCE(?, "
                      "description) WHERE name=?", (version, description, name))
    return pipeline_version(db, name, version), made


def pipeline_version(db: ServiceDB, name: str, version: int | None = None) -> dict:
    """One version (the default when `version` is None) as the API shows it."""
    row = _pipeline_row(db, name)
    version = row["default_version"] if version is None else version
    found = db.one("SELECT * FROM versions WHERE name=? AND version=?", (name, version))
    if found is None:
        raise NotFound(f"pipeline `{name}` has no version {version}", cause="version")
    return {"name": name, "version": found["version"], "id": found["digest"],
            "created": _iso(found["created"]), "notebook": found["source"],
            "description": found["description"],
            "parameters": json.loads(found["parameters"]), "steps": json.loads(found["steps"]),
            "files": json.loads(found["files"]), "default": found["version"] ==
            row["default_version"], "endpoint": f"/mlpipe/api/pipelines/{name}/runs"}


def _pipeline_row(db: ServiceDB, name: str):
    row = db.one("SELECT * FROM pipelines WHERE name=?", (name,))
    if row is None:
        raise NotFound(f"no pipeline `{name}` is published", cause="pipeline")
    return row


def pipeline(db: ServiceDB, name: str) -> dict:
    row = _pipeline_row(db, name)
    versions = [pipeline_version(db, name, r["version"]) for r in
                db.all("SELECT version FROM versions WHERE name=? ORDER BY version", (name,))]
    return {"name": name, "description": row["description"],
            "default_version": row["default_version"], "enabled": bool(row["enabled"]),
            "created": _iso(row["created"]), "versions": versions,
            "endpoint": f"/mlpipe/api/pipelines/{name}/runs"}


def pipelines(db: ServiceDB) -> list[dict]:
    out = []
    for row in db.all("SELECT p.*, (SELECT COUNT(*) FROM versions v WHERE v.name=p.name) AS n "
                      "FROM pipelines p ORDER BY name"):
        out.append({"name": row["name"], "description": row["description"],
                    "default_version": row["default_version"], "versions": row["n"],
                    "enabled": bool(row["enabled"]), "created": _iso(row["created"]),
                    "endpoint": f"/mlpipe/api/pipelines/{row['name']}/runs"})
    return out


def update(db: ServiceDB, name: str, *, default_version: int | None = None,
           enabled: bool | None = None) -> dict:
    _pipeline_row(db, name)
    if default_version is not None:
        pipeline_version(db, name, default_version)  # NotFound for a version it does not have
        db.write("UPDATE pipelines SET default_version=? WHERE name=?", (default_version, name))
    if enabled is not None:
        db.write("UPDATE pipelines SET enabled=? WHERE name=?", (int(enabled), name))
    return pipeline(db, name)


def runnable(db: ServiceDB, name: str, version: int | None,
             assignments: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The version a submission runs and its checked parameter values; 409 when the pipeline
    is disabled, 400 naming every unknown or mistyped parameter (the `-p` rule, checks.py)."""
    row = _pipeline_row(db, name)
    if not row["enabled"]:
        raise Conflict(f"pipeline `{name}` is disabled (PATCH it with {{\"enabled\": true}})",
                       cause="disabled")
    info = pipeline_version(db, name, version)
    defaults = info["parameters"]
    bad, messages = [], []
    for key, value in assignments.items():
        try:
            check_params(defaults, {key: value})
        except UsageError as err:
            bad.append(key)
            messages.append(str(err).removeprefix("-p "))
    if bad:
        raise BadParameters("ParameterAssignments: " + "; ".join(messages), parameters=bad)
    return info["version"], check_params(defaults, assignments)


def snapshot_notebook(db: ServiceDB, name: str, version: int) -> Path:
    row = db.one("SELECT notebook FROM versions WHERE name=? AND version=?", (name, version))
    if row is None:
        raise NotFound(f"pipeline `{name}` has no version {version}", cause="version")
    return Path(row["notebook"])
