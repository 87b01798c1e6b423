"""The pipeline as a networkx DAG: assembly, validation, generations, subgraph selection.

Pure: the only outside knowledge (which files exist beside the notebook) comes in as a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import networkx as nx

from ..errors import SpecError, UsageError
from .rules import STEP_NAME, check_artifact
from .spec import PipelineSpec, is_variable


def build_dag(spec: PipelineSpec,
              file_exists: Callable[[str], bool] = lambda _: False) -> nx.DiGraph:
    """Validate the spec and return its DAG; edges carry the artifacts they pass in `artifacts`.

    A file input that no step produces is a *source file* when it exists beside the notebook;
    nodes record those in `sources`. Every error names the steps involved, on one line.
    """
    graph = nx.DiGraph()
    producer: dict[str, str] = {}
    for index, step in enumerate(spec.steps):
        if not STEP_NAME.match(step.name):
            raise SpecError(f"invalid step name `{step.name}`", step=step.name)
        if step.name in graph:
            raise SpecError(f"duplicate step name `{step.name}`", step=step.name)
        try:
            for item in step.inputs:
                check_artifact(item, option="--inputs", step=step.name)
            for item in step.outputs:
                check_artifact(item, option="--outputs", step=step.name)
        except UsageError as err:
            raise SpecError(str(err), step=step.name, option=err.option) from None
        graph.add_node(step.name, spec=step, index=index, sources=())
        for out in step.outputs:
            if _norm(out) in producer:
                raise SpecError(f"steps `{producer[_norm(out)]}` and `{step.name}` both declare "
                                f"output `{out}`", step=step.name, option="--outputs")
            producer[_norm(out)] = step.name
    for step in spec.steps:
        sources = []
        for item in step.inputs:
            src = producer.get(_norm(item))
            if src == step.name:
                raise SpecError(f"step `{step.name}` reads its own output `{item}`",
                                step=step.name, option="--inputs")
            if src is not None:
                edge = graph.get_edge_data(src, step.name)
                if edge is None:
                    graph.add_edge(src, step.name, artifacts=[item])
                else:
                    edge["artifacts"].append(item)
            elif not is_variable(item) and file_exists(item):
                sources.append(item)
            else:
                what = "variable" if is_variable(item) else "file"
                hint = "" if is_variable(item) else " and no such file exists beside the notebook"
                raise SpecError(f"step `{step.name}` reads {what} `{item}`, but no step outputs "
                                f"it{hint}", step=step.name, option="--inputs")
        graph.nodes[step.name]["sources"] = tuple(sources)
        for after in step.after:
            if after not in graph:
                raise SpecError(f"step `{step.name}` --after: no step named `{after}`",
                                step=step.name, option="--after")
            if after == step.name:
                raise SpecError(f"step `{step.name}` --after: a step cannot follow itself",
                                step=step.name, option="--after")
            if not graph.has_edge(after, step.name):
                graph.add_edge(after, step.name, artifacts=[])
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return graph
    names = [u for u, _ in cycle] + [cycle[0][0]]
    raise SpecError(f"cycle between steps: {' -> '.join(names)}", step=names[0])


def _norm(item: str) -> str:
    return item.rstrip("/") if not is_variable(item) else item


def topo_order(graph: nx.DiGraph) -> list[str]:
    """Topological order, ties broken by position in the notebook."""
    return list(nx.lexicographical_topological_sort(graph, key=lambda n: graph.nodes[n]["index"]))


def generations(graph: nx.DiGraph) -> list[list[str]]:
    """Layers of steps whose upstream steps are all in earlier layers (for drawing)."""
    return [sorted(g, key=lambda n: graph.nodes[n]["index"])
            for g in nx.topological_generations(graph)]


def select(graph: nx.DiGraph, only: Iterable[str] = (), from_: str | None = None) -> set[str]:
    """Steps to execute for `--only`/`--from`; the rest are taken from earlier runs."""
    only = list(only)
    for name in [*only, *([from_] if from_ else [])]:
        if name not in graph:
            option = "--from" if name == from_ else "--only"
            raise SpecError(f"{option}: no step named `{name}` (steps: {', '.join(graph)})",
                            step=name, option=option)
    if not only and not from_:
        return set(graph)
    chosen = set(only)
    if from_:
        chosen |= {from_} | nx.descendants(graph, from_)
    return chosen
