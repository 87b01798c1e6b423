"""One queued run, in its own process: `python -m mlpipe_jupyter.service.worker --home H
--run-id ID [--executor E]`.

It runs the published snapshot through PipelineRunner under the id the service handed out,
recording into the same run store as `mlpipe run`. SIGTERM cancels the run exactly as it does
for `mlpipe run` (steps stopped, containers removed, the run recorded `cancelled`). A failure
before the run starts (an executor that cannot start, say) is written to the queue row as one
line, and the exit code is 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlpipe-service-worker")
    parser.add_argument("--home", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--executor", default=None)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)

    from ..config import load_config
    from ..errors import MlpipeError
    from ..home import Home
    from ..notebook import read_pipeline
    from ..runner import PipelineRunner, RunOptions
    from .db import ServiceDB
    from .publish import snapshot_notebook

    home = Home(Path(args.home))
    db = ServiceDB(home.root / "service.db")
    row = db.one("SELECT * FROM queue WHERE id=?", (args.run_id,))
    if row is None:
        print(f"error: no queued run {args.run_id}", file=sys.stderr)
        return 2
    try:
        notebook = snapshot_notebook(db, row["pipeline"], row["version"])
        config = load_config(notebook.parent)
        options = RunOptions(
            params=json.loads(row["params"]), executor=args.executor or config.executor,
            max_parallel=config.max_parallel, run_id=row["id"], experiment=row["experiment"],
            source=row["source"], pipeline=row["pipeline"], pipeline_version=row["version"])
        runner = PipelineRunner(read_pipeline(notebook), notebook=str(notebook),
                                base_dir=notebook.parent, options=options, home=home)
    except MlpipeError as err:
        db.write("UPDATE queue SET reason=? WHERE id=?", (str(err), args.run_id))
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    for note in runner.notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    try:
        state = runner.run()
    except KeyboardInterrupt:
        print(f"run {runner.run_id} cancelled", file=sys.stderr)
        return 0
    print(f"run {runner.run_id} {state}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
