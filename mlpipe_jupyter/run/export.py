"""`export --to DIR`: every step notebook plus `pipeline.json`, ready for another runner."""

from __future__ import annotations

import json
from pathlib import Path

from ..model.dag import build_dag, topo_order
from ..model.spec import PipelineSpec
from .stepbook import write_step_notebook


def export_pipeline(spec: PipelineSpec, directory: Path, *, pipeline: str,
                    base_dir: Path | None = None) -> Path:
    base = base_dir or Path.cwd()
    graph = build_dag(spec, file_exists=lambda p: (base / p).exists())
    directory.mkdir(parents=True, exist_ok=True)
    order = topo_order(graph)
    for name in order:
        write_step_notebook(directory / f"{name}.ipynb", spec, graph.nodes[name]["spec"],
                            pipeline=pipeline)
    manifest = {
        "pipeline": pipeline,
        "order": order,
        "edges": [{"from": u, "to": v, "artifacts": d["artifacts"]}
                  for u, v, d in graph.edges(data=True)],
        "spec": spec.to_dict(),
    }
    path = directory / "pipeline.json"
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return path
