"""The benchmark workloads, written out as each tool expects them: one mlpipe notebook, a
papermill notebook per step (run in topological order), a Ploomber project (pipeline.yaml and
one notebook task per step). Every tool does the same work: the same steps, the same data
passed between them (a small JSON-able value), the same sleeps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sizes:
    chain: int = 8  # W1/W3: steps in the trivial chain
    fan: int = 8  # W2: independent steps
    sleep: float = 2.0  # W2: seconds each step sleeps
    parse: int = 1000  # W4: steps in the notebook that is only parsed
    long_run: int = 200  # W5: steps in the run whose runner memory is measured


FULL = Sizes()
SMOKE = Sizes(chain=3, fan=3, sleep=0.5, parse=50, long_run=6)


@dataclass(frozen=True)
class Step:
    name: str
    upstream: str | None  # the one step whose value this step reads (None: none)
    code: str  # the step's own work, between reading its input and writing its output


def chain(n: int) -> list[Step]:
    return [Step(f"s{i}", f"s{i - 1}" if i else None, "") for i in range(n)]


def fan(n: int, sleep: float) -> list[Step]:
    return [Step(f"p{i}", None, f"import time\ntime.sleep({sleep})") for i in range(n)]


# -- mlpipe --------------------------------------------------------------------------------
def _nb(cells: list[tuple[str, list[str]]]) -> dict:
    """nbformat-4 notebook from (source, tags) code cells."""
    return {
        "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {"tags": tags} if tags else {},
                   "execution_count": None, "outputs": [], "source": src}
                  for i, (src, tags) in enumerate(cells)],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


def write_mlpipe(directory: Path, steps: list[Step], with_values: bool) -> Path:
    """A notebook of `%%step` cells; with_values: each step outputs `x_<name>`, read by the next."""
    cells = [("%load_ext mlpipe_jupyter", [])]
    for step in steps:
        line = f"%%step {step.name}"
        body = [step.code] if step.code else []
        if with_values:
            if step.upstream:
                line += f" --inputs x_{step.upstream}"
            line += f" --outputs x_{step.name}"
            value = f"x_{step.upstream} + 1" if step.upstream else "0"
            body.append(f"x_{step.name} = {value}")
        cells.append((line + "\n" + "\n".join(body), []))
    return _write(directory / "pipeline.ipynb", _nb(cells))


def write_parse_notebook(directory: Path, n: int) -> Path:
    """W4: n steps in a layered DAG (each reads its predecessor and one step further back), half
    with declared inputs, half inferred from the code, plus parameters and setup code."""
    cells = [("%load_ext mlpipe_jupyter", []), ("%%pipeline_params\nalpha = 0.5", []),
             ("%%pipeline_setup\nimport math", []), ("%%step s0 --outputs x0\nx0 = 0", [])]
    for i in range(1, n):
        deps = sorted({i - 1, i // 2})
        total = " + ".join(f"x{d}" for d in deps)
        if i % 2:
            inputs = " ".join(f"x{d}" for d in deps)
            cells.append((f"%%step s{i} --inputs {inputs} --outputs x{i}\n"
                          f"x{i} = {total} + alpha", []))
        else:
            cells.append((f"%%step s{i} --outputs x{i}\nx{i} = {total} + math.sqrt(alpha)", []))
    return _write(directory / "pipeline.ipynb", _nb(cells))


# -- plain papermill -----------------------------------------------------------------------
def write_papermill(directory: Path, steps: list[Step], with_values: bool) -> list[list[str]]:
    """One parameterised notebook per step; returns the papermill argument lists, in
    topological order (the steps are generated in one)."""
    calls = []
    (directory / "out").mkdir(parents=True, exist_ok=True)
    for step in steps:
        body = [step.code] if step.code else []
        args = [f"{step.name}.ipynb", f"out/{step.name}.ipynb"]
        if with_values:
            body += ["import json",
                     "x = json.load(open(in_path)) + 1 if in_path else 0",
                     "json.dump(x, open(out_path, 'w'))"]
            args += ["-p", "out_path", f"out/{step.name}.json"]
            if step.upstream:
                args += ["-p", "in_path", f"out/{step.upstream}.json"]
        params = "in_path = None\nout_path = None"
        _write(directory / f"{step.name}.ipynb",
               _nb([(params, ["parameters"]), ("\n".join(body) or "pass", [])]))
        calls.append(args)
    return calls


# -- Ploomber ------------------------------------------------------------------------------
def write_ploomber(directory: Path, steps: list[Step], with_values: bool,
                   executor: str, processes: int | None = None) -> Path:
    """pipeline.yaml with one notebook task per step; `executor` is serial or parallel."""
    tasks = []
    for step in steps:
        upstream = f"[{step.upstream!r}]" if step.upstream else "None"
        body = [step.code] if step.code else []
        product = f"  - source: {step.name}.ipynb\n    name: {step.name}\n    product:\n"
        product += f"      nb: out/{step.name}.ipynb\n"
        if with_values:
            value = (f"json.load(open(upstream[{step.upstream!r}]['data'])) + 1"
                     if step.upstream else "0")
            body += ["import json", f"x = {value}", "json.dump(x, open(product['data'], 'w'))"]
            product += f"      data: out/{step.name}.json\n"
        _write(directory / f"{step.name}.ipynb",
               _nb([(f"upstream = {upstream}\nproduct = None", ["parameters"]),
                    ("\n".join(body) or "pass", [])]))
        tasks.append(product)
    if executor == "parallel":
        head = ("executor:\n  dotted_path: ploomber.executors.Parallel\n"
                f"  processes: {processes or 2}\n")
    else:
        head = "executor: serial\n"
    path = directory / "pipeline.yaml"
    path.write_text(head + "tasks:\n" + "".join(tasks), encoding="utf-8")
    return path


def write_ploomber_parse(directory: Path, n: int) -> Path:
    """W4 for Ploomber: the same layered DAG as n notebook tasks (Ploomber has one notebook
    per task where mlpipe has one cell per step)."""
    tasks = []
    for i in range(n):
        deps = sorted({i - 1, i // 2}) if i else []
        upstream = repr([f"s{d}" for d in deps]) if deps else "None"
        _write(directory / f"s{i}.ipynb",
               _nb([(f"upstream = {upstream}\nproduct = None\nalpha = 0.5", ["parameters"]),
                    ("import math\nx = math.sqrt(alpha)", [])]))
        tasks.append(f"  - source: s{i}.ipynb\n    name: s{i}\n    product: out/s{i}.ipynb\n")
    path = directory / "pipeline.yaml"
    path.write_text("tasks:\n" + "".join(tasks), encoding="utf-8")
    return path


def _write(path: Path, nb: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path
