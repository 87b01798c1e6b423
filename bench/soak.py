"""Soak: the same many-step pipeline run again and again in ONE process (as `%pipeline run`
does in a notebook, or a server), at a high --max-parallel.

    python bench/soak.py [--steps 1000] [--runs 10] [--max-parallel 16] [--json FILE]

It fails (exit 1) when a run does not succeed, when a run takes more than 3 x the median of
the runs, or when a run leaves a process behind (kernels, the zygote: this process's
descendants, from psutil, once the run has returned). The limit is a ratio of runs in the same
process, never a fixed duration. Each run is also capped at `--stall` x the first run's wall
time (default 10): past that the run is cancelled and recorded as a stall, with the steps still
running, instead of hanging the soak. tests/integration/test_soak.py runs it small.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as wl  # noqa: E402

SLOWER = 3.0  # a run slower than this x the median fails the soak


def descendants() -> list[str]:
    """This process's live descendants, as 'pid cmdline' (zombies are not left behind: their
    parent reaps them)."""
    import psutil

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            found.append(f"{proc.pid} {' '.join(proc.cmdline()[:4])}")
        except psutil.Error:
            continue
    return found


def one_run(notebook: Path, max_parallel: int, limit: float | None) -> dict:
    from mlpipe_jupyter.model.notebook import read_pipeline
    from mlpipe_jupyter.run.runner import PipelineRunner, RunOptions

    spec = read_pipeline(notebook)
    runner = PipelineRunner(spec, notebook=str(notebook), base_dir=notebook.parent,
                            options=RunOptions(executor="local", no_cache=True,
                                               max_parallel=max_parallel))
    stalled: list[str] = []
    done = threading.Event()

    def watchdog() -> None:
        if limit is not None and not done.wait(limit):
            stalled.extend(n for n, s in runner.states.items() if s == "running")
            runner.cancel()

    guard = threading.Thread(target=watchdog, daemon=True)
    guard.start()
    started = time.perf_counter()
    try:
        state = runner.run()
    finally:
        done.set()
        guard.join()
    wall = time.perf_counter() - started
    # event loops of finished step threads (jupyter_core makes one per thread and never closes
    # it) hold descriptors until collected: count what is still referenced
    gc.collect()
    failed = {n: s for n, s in runner.states.items() if s != "succeeded"}
    return {"state": state, "wall": wall, "left": descendants(), "stalled": stalled,
            "not_succeeded": dict(list(failed.items())[:10]), "threads": threading.active_count(),
            "fds": len(os.listdir("/proc/self/fd"))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--max-parallel", type=int, default=16)
    p.add_argument("--stall", type=float, default=10.0,
                   help="cancel a run after this x the first run's wall time")
    p.add_argument("--json", help="write every run's result here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mlpipe-soak-") as tmp:
        where = Path(tmp)
        steps = [wl.Step(f"t{i}", None, "x = 1") for i in range(args.steps)]
        notebook = wl.write_mlpipe(where, steps, with_values=False)
        results: list[dict] = []
        for i in range(args.runs):
            limit = results[0]["wall"] * args.stall if results else None
            got = one_run(notebook, args.max_parallel, limit)
            results.append(got)
            print(f"run {i + 1}/{args.runs}: {got['state']} in {got['wall']:.2f} s "
                  f"({args.steps / got['wall']:.1f} steps/s), {len(got['left'])} processes "
                  f"left, {got['threads']} threads, {got['fds']} fds"
                  + (f", stalled: {got['stalled']}" if got["stalled"] else ""), flush=True)
    median = statistics.median(r["wall"] for r in results)
    problems = []
    for i, r in enumerate(results, 1):
        if r["state"] != "succeeded":
            problems.append(f"run {i} {r['state']}: {r['not_succeeded']}"
                            + (f" (stalled: {r['stalled']})" if r["stalled"] else ""))
        if r["wall"] > SLOWER * median:
            problems.append(f"run {i} took {r['wall']:.2f} s, {r['wall'] / median:.1f} x the "
                            f"median {median:.2f} s")
        if r["left"]:
            problems.append(f"run {i} left {len(r['left'])} processes: {r['left'][:5]}")
    summary = {"steps": args.steps, "runs": args.runs, "max_parallel": args.max_parallel,
               "median_wall": median, "max_over_median": max(r["wall"] for r in results) / median,
               "problems": problems, "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    print(f"soak: {args.runs} runs of {args.steps} steps at --max-parallel "
          f"{args.max_parallel}: median {median:.2f} s, slowest "
          f"{summary['max_over_median']:.2f} x the median; "
          + ("ok" if not problems else "FAILED:\n  " + "\n  ".join(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
