"""What a run will do, resolved before anything runs: its DAG, parameter values, the steps it
runs (`--only`, `--from`) and the ones it needs from earlier runs, in order.

Planning writes nothing. A partial run that needs a step no earlier run succeeded at is refused
here, in one line, before a run is recorded; whether a step that did run before can be reused
(same code, parameters, inputs and environment) is only known once the run computes its key.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from ..errors import SpecError
from ..home import Home
from ..model.checks import check_params
from ..model.dag import build_dag, select, topo_order
from ..model.spec import PipelineSpec


@dataclass
class RunOptions:
    params: dict[str, Any] = field(default_factory=dict)
    executor: str | None = None
    only: tuple[str, ...] = ()
    from_step: str | None = None
    no_cache: bool = False
    max_parallel: int | None = None
    fail_fast: bool = False
    executor_options: dict[str, Any] = field(default_factory=dict)
    # who started the run (cli|kernel|rest|schedule) and what it is filed under; the service
    # also gives the run id it already handed out at submit time, and the published version
    run_id: str | None = None
    experiment: str | None = None
    source: str | None = None
    pipeline: str | None = None
    pipeline_version: int | None = None


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def resolve_params(spec: PipelineSpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """The run's parameter values; an unknown name or a value of the wrong type is a one-line
    UsageError raised here, before any executor is chosen or started (rules: checks.py)."""
    return check_params(spec.param_defaults, overrides)


@dataclass(frozen=True)
class RunPlan:
    spec: PipelineSpec
    notebook: str
    base_dir: Path
    options: RunOptions
    home: Home
    graph: nx.DiGraph
    params: dict[str, Any]
    selected: set[str]  # the steps it runs (or reuses, unless --no-cache)
    order: list[str]  # those and every step they need, in a topological order

    @property
    def borrowed(self) -> list[str]:
        """The steps it needs but does not run: each must reuse an earlier result."""
        return [name for name in self.order if name not in self.selected]


def plan_run(spec: PipelineSpec, *, notebook: str, base_dir: str | Path,
             options: RunOptions | None = None, home: Home | None = None) -> RunPlan:
    """The plan of a run, or the one-line MlpipeError that refuses it."""
    base_dir = Path(base_dir).resolve()
    options = options or RunOptions()
    graph = build_dag(spec, file_exists=lambda p: (base_dir / p).exists())
    params = resolve_params(spec, options.params)
    selected = select(graph, options.only, options.from_step)
    needed = set(selected).union(*(nx.ancestors(graph, name) for name in selected))
    plan = RunPlan(spec=spec, notebook=notebook, base_dir=base_dir, options=options,
                   home=home or Home.for_dir(base_dir), graph=graph, params=params,
                   selected=selected, order=[n for n in topo_order(graph) if n in needed])
    if plan.borrowed:
        _refuse_never_run(plan)
    return plan


def _refuse_never_run(plan: RunPlan) -> None:
    from .store import RunStore

    store = RunStore(plan.home.db, readonly=True)
    try:
        have = store.steps_with_results(plan.borrowed)
    finally:
        store.close()
    missing = next((name for name in plan.borrowed if name not in have), None)
    if missing is not None:
        raise SpecError(refusal(missing, ran_before=False), step=missing)


def refusal(step: str, *, ran_before: bool) -> str:
    """Why a partial run cannot have `step`, which it needs but does not run."""
    same = " with the same code, parameters and inputs" if ran_before else ""
    return (f"step `{step}` is not selected and has no earlier successful run{same}; run it "
            "first (or add it to --only)")
