"""`mlpipe doctor`: check mlpipe.db and, when it is damaged, save it aside and rebuild it.

What can be rebuilt, and from where:
- rows the damaged file still gives up (read table by table until SQLite stops): those runs
  keep everything, cache keys included;
- every other run from runs/<run>/<step>/: the run id, its steps (those that executed: a step
  reused from an earlier run, skipped or never started has no directory and is not listed), each
  step's state, start and end from the executed notebook's papermill metadata (succeeded, or
  failed with the last failure line of its log.txt; a step that never finished is failed
  "interrupted"), and the pipeline's name. Cache keys, parameters and the outputs' digests are
  not in runs/: those runs are never reused from, so reuse starts over for their steps.
Artifacts are content-addressed and untouched: a rebuilt store finds and re-verifies them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..home import Home, StepFiles
from ..model.states import StepState
from .storecheck import StoreDamaged, header_problem

REBUILT = "rebuilt by mlpipe doctor from runs/"


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    rebuilt: bool = False
    aside: Path | None = None


def problem(path: Path) -> str | None:
    """What is wrong with the store at `path`, checked in full (None: sound)."""
    from .store import RunStore

    if (why := header_problem(path)) is not None:
        return why
    try:
        store = RunStore(path, readonly=True)  # a check writes nothing
    except StoreDamaged as err:
        return err.why
    try:
        rows = store._db.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as err:
        return str(err)
    finally:
        store.close()
    found = [r[0] for r in rows]
    return None if found == ["ok"] else "; ".join(found[:3])


def doctor(home: Home) -> Report:
    report = Report()
    path = home.db
    if not path.exists():
        report.lines.append(f"no run store at {path}: nothing to check")
        return report
    why = problem(path)
    if why is None:
        report.lines.append(f"{path} is sound")
        return report
    report.aside = set_aside(path)
    report.lines.append(f"{path} is damaged ({why}); saved aside as {report.aside} "
                        "(with its -wal and -shm)")
    salvaged = salvage(report.aside)
    from .store import RunStore

    store = RunStore(path)
    try:
        kept = restore(store, salvaged)
        rebuilt = [found for found in rebuild_runs(home.runs) if found[0] not in kept]
        for _, row, steps in rebuilt:
            insert(store, row, steps)
    finally:
        store.close()
    report.rebuilt = True
    report.lines.append(f"rebuilt {path}: {len(kept)} run(s) read back from the damaged file, "
                        f"{len(rebuilt)} rebuilt from {home.runs}")
    if rebuilt:
        report.lines.append("runs rebuilt from runs/ have their steps and states but no cache "
                            "keys, parameters or output digests: reuse starts over (the next "
                            "run of each pipeline runs its steps again); steps a run reused or "
                            "skipped are not listed. Artifacts are untouched.")
    return report


def set_aside(path: Path) -> Path:
    """Rename the damaged file and its -wal/-shm to `<name>.damaged-<time>` (never over one)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    os.rename(path, aside)
    for suffix in ("-wal", "-shm"):  # moved with it, or the new store would read the old WAL
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{path}{suffix}", f"{aside}{suffix}")
    return aside


def salvage(aside: Path) -> dict[str, list[dict]]:
    """Rows of `runs` and `steps` the damaged file still gives, read until SQLite stops."""
    found: dict[str, list[dict]] = {"runs": [], "steps": []}
    try:
        db = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
    except sqlite3.Error:
        return found
    db.row_factory = sqlite3.Row
    try:
        for table in found:
            try:
                for row in db.execute(f"SELECT * FROM {table}"):
                    found[table].append(dict(row))
            except sqlite3.Error:
                continue
    finally:
        db.close()
    return found


def restore(store, salvaged: dict[str, list[dict]]) -> set[str]:
    """Insert the salvaged rows of whole runs (a run and at least one step); their ids."""
    with_steps = {s["run_id"] for s in salvaged["steps"]}
    kept = {r["id"] for r in salvaged["runs"] if r.get("id") in with_steps}
    for table, key in (("runs", "id"), ("steps", "run_id")):
        rows = [r for r in salvaged[table] if r.get(key) in kept]
        for row in rows:
            _insert_row(store, table, row)
    return kept


def _insert_row(store, table: str, row: dict) -> None:
    have = {r["name"] for r in store._db.execute(f"PRAGMA table_info({table})")}
    cols = [c for c in row if c in have]
    store._write(f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) VALUES "
                 f"({', '.join('?' for _ in cols)})", tuple(row[c] for c in cols))


def rebuild_runs(runs: Path):
    """(run id, runs row, [steps rows]) for every run directory, oldest first."""
    if not runs.is_dir():
        return
    for run_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        steps = [step_row(run_dir.name, d) for d in sorted(run_dir.iterdir())
                 if d.is_dir() and StepFiles(d).notebook.is_file()]
        if not steps:
            continue
        steps.sort(key=lambda s: (s["started"] or float("inf"), s["name"]))
        for i, s in enumerate(steps):
            s["position"] = i
        pipeline = next((s.pop("_pipeline") for s in steps if s.get("_pipeline")), "unknown")
        for s in steps:
            s.pop("_pipeline", None)
        failed = [s["name"] for s in steps if s["state"] != StepState.SUCCEEDED]
        starts = [s["started"] for s in steps if s["started"]]
        ends = [s["finished"] for s in steps if s["finished"]]
        row = {"id": run_dir.name, "notebook": f"{pipeline}.ipynb", "pipeline": pipeline,
               "state": StepState.FAILED if failed else StepState.SUCCEEDED,
               "reason": (f"step{'s' if len(failed) > 1 else ''} "
                          f"{', '.join(f'`{n}`' for n in failed)} failed; " if failed else "")
               + REBUILT,
               "started": min(starts) if starts else _id_time(run_dir.name),
               "finished": max(ends) if ends else None, "params": "{}",
               "executor": "unknown"}
        yield run_dir.name, row, steps


def step_row(run_id: str, step_dir: Path) -> dict:
    files = StepFiles(step_dir)
    row = {"run_id": run_id, "name": step_dir.name, "state": StepState.FAILED,
           "reason": "interrupted", "started": None, "finished": None, "error": None,
           "attempt": 1, "_pipeline": None}
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads(files.notebook.read_text()).get("metadata", {})
        row["name"] = meta.get("mlpipe", {}).get("step") or row["name"]
        row["_pipeline"] = meta.get("mlpipe", {}).get("pipeline")
    with contextlib.suppress(OSError, ValueError, AttributeError):
        pm = json.loads(files.output.read_text())["metadata"]["papermill"]
        row["started"] = _ts(pm.get("start_time"))
        if pm.get("end_time"):
            row["finished"] = _ts(pm["end_time"])
            failed = bool(pm.get("exception"))
            row["state"] = StepState.FAILED if failed else StepState.SUCCEEDED
            row["reason"] = str(StepState.FAILED) if failed else REBUILT
    if row["state"] == StepState.FAILED:
        with contextlib.suppress(OSError):
            lines = files.log.read_text(errors="replace").splitlines()
            failures = [x for x in lines if x.startswith("attempt ") and " failed: " in x]
            if failures:
                message = failures[-1].split(" failed: ", 1)[1]
                row["reason"] = message
                row["error"] = json.dumps({"error": "StepFailed", "message": message})
                row["attempt"] = int(failures[-1].split()[1]) if \
                    failures[-1].split()[1].isdigit() else 1
    return row


def insert(store, row: dict, steps: list[dict]) -> None:
    _insert_row(store, "runs", row)
    for s in steps:
        _insert_row(store, "steps", {**s, "reasons": json.dumps([s["reason"]])})


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _id_time(run_id: str) -> float | None:
    with contextlib.suppress(ValueError):
        return time.mktime(time.strptime(run_id[:15], "%Y%m%d-%H%M%S"))
    return None

