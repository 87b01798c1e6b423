"""W4: parse and assemble a pipeline without executing it, as its own process.

    python bench/parse_only.py mlpipe pipeline.ipynb     (project venv)
    python bench/parse_only.py ploomber pipeline.yaml    (.venv-bench)

Prints {"steps": N, "seconds": in-process time}; the harness times the whole process.
"""

from __future__ import annotations

import json
import sys
import time


def mlpipe(path: str) -> int:
    from mlpipe_jupyter.model.dag import build_dag, topo_order
    from mlpipe_jupyter.model.notebook import read_pipeline

    spec = read_pipeline(path)
    return len(topo_order(build_dag(spec)))


def ploomber(path: str) -> int:
    from ploomber.spec import DAGSpec

    dag = DAGSpec(path).to_dag()
    dag.render()  # resolves upstream and params of every task: Ploomber's "assemble"
    return len(dag)


if __name__ == "__main__":
    started = time.perf_counter()
    steps = {"mlpipe": mlpipe, "ploomber": ploomber}[sys.argv[1]](sys.argv[2])
    print(json.dumps({"steps": steps, "seconds": time.perf_counter() - started}))
