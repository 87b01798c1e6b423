"""One queued run, in its own process: `python -m mlpipe_jupyter.service.worker --home H
--run-id ID --claim C [--executor E]`.

It runs the published snapshot through PipelineRunner under the id the service handed out,
recording into the same run store as `mlpipe run`. The service claimed the queue row before
starting this process (state `starting`, stamped `C`); the worker first records its own pid on
the row, and only if the claim still holds: a worker whose claim is stale (the row was queued
again by a restarted service) runs nothing.

SIGTERM cancels the run: before the runner exists the worker just stops; after, the runner is
cancelled (steps stopped, containers removed, the run recorded `cancelled`) and its cleanup is
never interrupted, by that signal or by another one. A failure before the run starts (an
executor that cannot start, say) is written to the queue row as one line, and the exit code
is 2.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path


class _Cancel:
    """The SIGTERM handler: raises KeyboardInterrupt until there is a runner to cancel; then
    cancels it (once, in a thread: the handler may interrupt the runner holding its locks)."""

    def __init__(self) -> None:
        self.runner = None
        self.done = False

    def __call__(self, signum, frame) -> None:
        if self.runner is None:
            raise KeyboardInterrupt
        if not self.done:
            self.done = True
            threading.Thread(target=self.runner.cancel, name="mlpipe-cancel",
                             daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlpipe-service-worker")
    parser.add_argument("--home", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--claim", type=float, default=None)
    parser.add_argument("--executor", default=None)
    args = parser.parse_args(argv)
    cancel = _Cancel()
    signal.signal(signal.SIGTERM, cancel)
    try:
        return _main(args, cancel)
    except KeyboardInterrupt:
        return 130


def _main(args: argparse.Namespace, cancel: _Cancel) -> int:
    from ..errors import MlpipeError
    from ..home import Home
    from ..model.notebook import read_pipeline
    from ..run.processes import process_start
    from ..run.runner import PipelineRunner, RunOptions
    from ..ui.config import load_config
    from .db import ServiceDB
    from .publish import snapshot_notebook
    from .queue import QueueState

    home = Home(Path(args.home))
    db = ServiceDB(home.root / "service.db")
    row = db.one("SELECT * FROM queue WHERE id=?", (args.run_id,))
    if row is None:
        print(f"error: no queued run {args.run_id}", file=sys.stderr)
        return 2
    if args.claim is not None and not db.write(
            "UPDATE queue SET pid=?, pid_start=? WHERE id=? AND started=? AND state IN (?,?)",
            (os.getpid(), process_start(os.getpid()), args.run_id, args.claim,
             QueueState.STARTING, QueueState.RUNNING)):
        print(f"error: run {args.run_id} is not this worker's to run (its claim is stale)",
              file=sys.stderr)
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
    except KeyboardInterrupt:
        raise
    except Exception as err:  # one line in the run's reason, never a traceback
        line = str(err) if isinstance(err, MlpipeError) else f"{type(err).__name__}: {err}"
        line = " ".join(line.split())[:500] or type(err).__name__
        db.write("UPDATE queue SET reason=? WHERE id=?", (line, args.run_id))
        print(f"error: {line}", file=sys.stderr)
        return 2
    cancel.runner = runner  # from here SIGTERM cancels the run, never interrupts it
    for note in runner.notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    try:
        state = runner.run()
    except MlpipeError as err:  # the run store failed: the run is wound up, said in one line
        if not runner.recorded:  # no run row to read the reason from: the queue row says it
            db.write("UPDATE queue SET reason=? WHERE id=?", (str(err)[:500], args.run_id))
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"run {runner.run_id} {state}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
