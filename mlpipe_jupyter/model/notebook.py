"""Read a saved `.ipynb` into a PipelineSpec, through the same builder the kernel uses."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from ..errors import MlpipeError, NotebookError, SpecError
from .builder import PipelineBuilder
from .checks import require_steps
from .options import parse_step_line
from .spec import PipelineSpec

CELL_MAGICS = ("step", "pipeline_params", "pipeline_setup")


def split_cell_magic(source: str) -> tuple[str, str, str] | None:
    """`%%name line\\nbody` -> (name, line, body); None for any other cell."""
    lines = source.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines or not lines[0].startswith("%%"):
        return None
    name, _, line = lines[0][2:].partition(" ")
    if name not in CELL_MAGICS:
        return None
    return name, line.strip(), "\n".join(lines[1:])


def load_cells(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotebookError(f"{path}: no such notebook", file=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NotebookError(f"{path}: not a readable notebook ({err})", file=str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise NotebookError(f"{path}: not a notebook (no `cells` list)", file=str(path))
    return [_code_source(path, number, cell) for number, cell in enumerate(data["cells"], 1)]


def _code_source(path: Path, number: int, cell: object) -> str | None:
    """A code cell's source as one string; None for another kind of cell. A cell that is not
    what nbformat 4 says a cell is: a one-line NotebookError naming the file and the cell."""
    def bad(what: str) -> NotebookError:
        return NotebookError(f"{path.name}, cell {number}: not a notebook cell: {what}",
                             file=str(path), cell=str(number))

    if not isinstance(cell, dict):
        raise bad(f"the cell is {_json_kind(cell)}, not an object")
    kind = cell.get("cell_type")
    if not isinstance(kind, str):
        raise bad("no `cell_type`" if kind is None else f"`cell_type` is {_json_kind(kind)}")
    if not isinstance(cell.get("metadata", {}), dict):
        raise bad(f"`metadata` is {_json_kind(cell['metadata'])}, not an object")
    if "source" not in cell:
        if kind == "code":
            raise bad("a code cell without `source`")
        return None
    src = cell["source"]
    if isinstance(src, list) and all(isinstance(line, str) for line in src):
        src = "".join(src)
    elif isinstance(src, list):
        raise bad("`source` is a list with something other than strings in it")
    elif not isinstance(src, str):
        raise bad(f"`source` is {_json_kind(src)}, not a string or a list of strings")
    return src if kind == "code" else None


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def read_pipeline(path: str | Path) -> PipelineSpec:
    """The pipeline a notebook declares; errors name the notebook and cell."""
    path = Path(path)
    builder = PipelineBuilder()
    where: dict[str, int] = {}
    setup_cell = None
    for number, source in enumerate(load_cells(path), start=1):
        parsed = split_cell_magic(source) if source else None
        if parsed is None:
            continue
        magic, line, body = parsed
        try:
            if magic == "pipeline_params":
                builder.add_params(body)
            elif magic == "pipeline_setup":
                if setup_cell is not None:
                    raise SpecError(f"a second %%pipeline_setup cell (first in cell {setup_cell});"
                                    " merge them into one")
                setup_cell = number
                builder.set_setup(line, body)
            else:
                name = parse_step_line(line).name  # as the builder will read it
                if name in where:
                    raise SpecError(f"duplicate step name `{name}` (cells {where[name]} and "
                                    f"{number})", step=name)
                where[builder.add_step(line, body).spec.name] = number
        except MlpipeError as err:
            raise err.with_context(f"{path.name}, cell {number}", file=str(path),
                                   cell=str(number)) from None
    spec = builder.spec()
    require_steps(spec, notebook=path)
    return spec


def step_cells(path: str | Path) -> dict[str, int]:
    """Step name -> its cell's number (1-based, as read_pipeline counts) for messages; {} for a
    notebook that cannot be read."""
    try:
        sources = load_cells(Path(path))
    except NotebookError:
        return {}
    cells: dict[str, int] = {}
    for number, source in enumerate(sources, start=1):
        parsed = split_cell_magic(source) if source else None
        if parsed is not None and parsed[0] == "step":
            with contextlib.suppress(MlpipeError):
                cells.setdefault(parse_step_line(parsed[1]).name, number)
    return cells
