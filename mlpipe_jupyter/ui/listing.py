"""What `mlpipe runs`, `mlpipe show` and `mlpipe logs` print about recorded runs.

`runs` prints one line per run that fits the terminal (COLUMNS): the run id, state and start
always whole; the notebook's name and the parameters a run changed from the pipeline's
defaults shortened with an ellipsis when there is no room.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import NotFound
from ..model.states import StepState
from .progress import ICONS, STYLES, _fmt

GAP = "  "
S = StepState
STATE_ORDER = (S.SUCCEEDED, S.CACHED, S.FAILED, S.SKIPPED, S.CANCELLED, S.RUNNING, S.QUEUED)


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def ellipsize(text: str, width: int) -> str:
    """`text` in at most `width` terminal cells, its end replaced by `…` if it was cut."""
    if cell_len(text) <= width:
        return text
    if width <= 0:
        return ""
    out = ""
    for char in text:
        if cell_len(out + char) > width - 1:
            break
        out += char
    return out + "…"


def format_params(changed: dict[str, Any] | None) -> str:
    """`learning_rate=0.05 depth=3`, as they would be given with -p; `?` when unknown (a run
    recorded before the defaults were)."""
    if changed is None:
        return "?"
    return " ".join(f"{name}={value!r}" for name, value in changed.items())


def step_counts(steps: list[dict]) -> str:
    """`3✔ 1↺`: how many steps ended in each state, with the icons of the live display."""
    counts: dict[str, int] = {}
    for step in steps:
        counts[step["state"]] = counts.get(step["state"], 0) + 1
    order = [s for s in STATE_ORDER if s in counts] + [s for s in counts if s not in STATE_ORDER]
    return " ".join(f"{counts[s]}{ICONS.get(s, '?')}" for s in order)


def runs_rows(runs: list[dict]) -> list[list[str]]:
    """Header and one row per run: run, notebook, state, started (month-day hours:minutes; the
    run id has the year), steps, params."""
    rows = [["run", "notebook", "state", "started", "steps", "params"]]
    for run in runs:
        rows.append([run["id"], Path(run["notebook"] or "").stem, run["state"],
                     (run["started"] or "")[5:16].replace("T", " "), step_counts(run["steps"]),
                     format_params(run.get("params_changed"))])
    return rows


def fit_columns(rows: list[list[str]], width: int,
                flexible: dict[int, tuple[int, int]]) -> list[int]:
    """Column widths for `rows` in `width` cells with GAP between columns: every column as
    wide as its widest cell if that fits; otherwise the `flexible` ones ({column: (width it
    keeps if it can, least width)}) give up room in column order, down to the first bound,
    then to the second. The others are never cut."""
    widths = [max(cell_len(row[i]) for row in rows) for i in range(len(rows[0]))]
    excess = sum(widths) + len(GAP) * (len(widths) - 1) - width
    for bound in (0, 1):
        for col in sorted(flexible):
            give = min(excess, max(0, widths[col] - flexible[col][bound]))
            if give > 0:
                widths[col] -= give
                excess -= give
    return widths


def runs_lines(runs: list[dict], width: int) -> list[list[str]]:
    """The `mlpipe runs` table as cells padded or cut to fit `width`: one line per run."""
    rows = runs_rows(runs)
    widths = fit_columns(rows, width, {1: (8, 4), 5: (12, 3)})
    lines = []
    for row in rows:
        cells = [ellipsize(cell, w) for cell, w in zip(row, widths, strict=True)]
        cells = [cell + " " * (w - cell_len(cell)) for cell, w in zip(cells, widths, strict=True)]
        cells[-1] = cells[-1].rstrip()
        lines.append(cells)
    return lines


def runs_table(runs: list[dict]) -> None:
    console = Console(highlight=False)
    if not runs:
        console.print("no runs yet")
        return
    for i, cells in enumerate(runs_lines(runs, console.width)):
        line = Text(style="bold" if i == 0 else "")
        for j, cell in enumerate(cells):
            if j:
                line.append(GAP)
            line.append(cell, style=STYLES.get(cell.strip(), "") if i and j == 2 else "")
        line.truncate(console.width, overflow="ellipsis")  # a terminal narrower than ids
        console.print(line, no_wrap=True, overflow="ellipsis", crop=True)


# -- mlpipe show ------------------------------------------------------------------------------
def artifact_entry(artifacts: Path, digest: str) -> tuple[Path, int | None]:
    """Where an artifact's content is (the file or directory a step wrote, or the file a
    variable was saved as) and its size in bytes (None when it is not in the store)."""
    root = artifacts / digest
    try:
        meta = json.loads((root / "meta.json").read_text())
    except (OSError, ValueError):
        return root, None
    data = root / "data"
    if meta.get("kind") in ("file", "directory"):
        from ..errors import NotFound
        from ..run.artifacts import ArtifactStore

        try:  # the store checks the recorded path stays inside the artifact
            path = ArtifactStore(artifacts).data_path(digest)
        except NotFound:
            return root, None
    else:
        found = sorted(data.iterdir()) if data.is_dir() else []
        path = found[0] if len(found) == 1 else data
    if path.is_file():
        return path, path.stat().st_size
    if path.is_dir():
        return path, sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path, None


def _params_line(run: dict) -> str:
    defaults = run.get("param_defaults")
    parts = []
    for name, value in run["params"].items():
        note = ""
        if defaults is not None and name in (run.get("params_changed") or {}):
            note = f" (default {defaults[name]!r})" if name in defaults else " (not declared)"
        parts.append(f"{name}={value!r}{note}")
    return "params: " + (", ".join(parts) if parts else "none")


SHOWN_FAILURES = 3  # the rest are in `mlpipe show --json`


def fanout_lines(step: dict) -> list[str]:
    """A fan-out step's mini-batch counts, then its first failures: item range, exception,
    line. Nothing for other steps."""
    batches = step.get("batches")
    if batches is None:
        return []
    lines = [f"{step['name']}: {batches['succeeded']}/{batches['total']} mini-batches "
             f"succeeded, {batches['failed']} failed, {batches['cached']} reused"]
    failures = step["failures"]
    for failure in failures[:SHOWN_FAILURES]:
        first, last = failure["items"]
        items = f"item {first}" if first == last else f"items {first}-{last}"
        at = f" (line {failure['line']})" if failure.get("line") else ""
        message = (failure["evalue"] or "").splitlines()[:1]
        lines.append(f"  {items}: {failure['ename']}: {''.join(message)}{at}")
    if len(failures) > SHOWN_FAILURES:
        lines.append(f"  and {len(failures) - SHOWN_FAILURES} more failures: mlpipe show "
                     "--json has every traceback")
    return lines


def run_details(run: dict, artifacts: Path, run_dir: Path) -> None:
    console = Console(highlight=False)
    console.print(f"run [bold]{run['id']}[/] of {escape(run['notebook'] or '')}: "
                  f"[{STYLES.get(run['state'], '')}]{run['state']}[/]"
                  + (f" ({escape(run['reason'])})" if run.get("reason") else ""), soft_wrap=True)
    console.print(f"started {run['started']}, finished {run['finished']}", soft_wrap=True)
    console.print(_params_line(run), soft_wrap=True, markup=False)
    table = Table(box=None, header_style="bold")
    for col in ("", "step", "state", "time", "attempt", "why"):
        table.add_column(col, overflow="fold")
    for step in run["steps"]:
        why = Text("\n".join(step.get("reasons") or []))
        message = (step.get("error") or {}).get("message")
        if message:
            why.append(("\n" if why else "") + message, style="red")
        table.add_row(ICONS.get(step["state"], "?"), step["name"],
                      f"[{STYLES.get(step['state'], '')}]{step['state']}[/]",
                      _fmt(step.get("duration")), str(step.get("attempt") or ""), why)
    console.print(table)
    for step in run["steps"]:
        for line in fanout_lines(step):
            console.print(line, soft_wrap=True, markup=False)
    outputs = Table(box=None, header_style="bold")
    for col in ("step", "output", "size", "path in the artifact store"):
        outputs.add_column(col, overflow="fold", justify="right" if col == "size" else "left")
    for step in run["steps"]:
        for name, digest in step["outputs"].items():
            path, size = artifact_entry(artifacts, digest)
            outputs.add_row(step["name"], name, human_size(size) if size is not None
                            else "missing", Text(str(path)))
    if outputs.row_count:
        console.print("outputs:")
        console.print(outputs)
    console.print(f"step notebooks and logs: {run_dir}", soft_wrap=True, markup=False)


# -- mlpipe logs ------------------------------------------------------------------------------
def reuse_origin(lookup: Callable[[str], dict], step: str, reused_from: str) -> str:
    """The run that executed `step` when a run reused it from `reused_from`: followed through
    runs that reused it in turn. `lookup(run_id)` returns a run or raises (not recorded)."""
    origin, seen = reused_from, set()
    while origin not in seen:
        seen.add(origin)
        try:
            run = lookup(origin)
        except NotFound:  # that run is no longer recorded: where its files would be
            return origin
        info = next((s for s in run["steps"] if s["name"] == step), None)
        if not info or info["state"] != S.CACHED or not info.get("reused_from"):
            return origin
        origin = info["reused_from"]
    return origin
