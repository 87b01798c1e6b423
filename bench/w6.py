"""W6: many independent trivial steps: throughput and the runner's own CPU per step.

    python bench/w6.py [--steps 1000] [--max-parallel 16] [--reps 3] [--warmup 1]
                       [--variant LABEL=DIR ...] [--env K=V ...]

Each repetition is one `mlpipe run --executor local --no-cache` of `--steps` steps that depend
on nothing, run through bench/selfcpu.py: wall time, steps/s, and the CPU seconds of the runner
process alone (RUSAGE_SELF; its kernels and zygote are children and not counted; they are
reported apart). Target: at most 20 ms of runner CPU per step. --variant measures the mlpipe
package in DIR too (first on PYTHONPATH, e.g. a copy of the code before a change),
repetitions interleaved, so background load lands on all alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as wl  # noqa: E402
from tools import PROJECT_BIN, loadavg, variant_envs  # noqa: E402

HERE = Path(__file__).resolve().parent
TARGET_MS = 20.0


def run_once(where: Path, env: dict[str, str], max_parallel: int,
             stall_after: float) -> dict:
    out = where / "selfcpu.json"
    out.unlink(missing_ok=True)
    load = loadavg()
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [str(PROJECT_BIN / "python"), str(HERE / "selfcpu.py"), str(out), "run",
             "pipeline.ipynb", "--executor", "local", "--no-cache", "--max-parallel",
             str(max_parallel)],
            cwd=where, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=stall_after)
    except subprocess.TimeoutExpired:  # killed: a stall is a result, not a hung benchmark
        return {"ok": False, "why": f"stalled: still running after {stall_after:g} s"}
    wall = time.perf_counter() - started
    if done.returncode != 0 or not out.exists():
        failed = [ln for ln in done.stdout.splitlines() if "✘" in ln or "error" in ln]
        return {"ok": False, "why": f"exit {done.returncode}: " + " | ".join(failed[:3])}
    got = json.loads(out.read_text())
    return {"ok": True, "wall": wall, "cpu_self": got["cpu_self"],
            "cpu_children": got["cpu_children"], "load": load}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--max-parallel", type=int, default=16)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--env", action="append", default=[], metavar="K=V")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=DIR")
    p.add_argument("--stall-after", type=float, default=900,
                   help="kill a run still going after this many seconds (counted as failed)")
    p.add_argument("--json", help="also write the samples and medians here")
    args = p.parse_args(argv)
    variants = variant_envs(args.env, args.variant)
    samples: dict[str, list[dict]] = {label: [] for label in variants}
    with tempfile.TemporaryDirectory(prefix="mlpipe-w6-") as tmp:
        where = Path(tmp)
        steps = [wl.Step(f"t{i}", None, "x = 1") for i in range(args.steps)]
        wl.write_mlpipe(where, steps, with_values=False)
        for rep in range(args.warmup + args.reps):
            for label, venv in variants.items():
                s = run_once(where, venv, args.max_parallel, args.stall_after)
                if rep < args.warmup:
                    continue
                samples[label].append(s)
                if not s["ok"]:  # reported and counted, left out of the medians
                    print(f"{label} rep {rep - args.warmup + 1}: the run failed: {s['why']}",
                          flush=True)
                    continue
                print(f"{label} rep {rep - args.warmup + 1}: wall {s['wall']:.2f} s, "
                      f"{args.steps / s['wall']:.1f} steps/s, runner cpu {s['cpu_self']:.2f} s "
                      f"({s['cpu_self'] / args.steps * 1000:.1f} ms/step), kernels+zygote "
                      f"{s['cpu_children']:.2f} cpu-s, load {s['load']:.1f}", flush=True)
    summary = {}
    failures = 0
    for label, runs in samples.items():
        got = [s for s in runs if s["ok"]]
        failed = len(runs) - len(got)
        failures += failed
        if not got:
            print(f"W6 {args.steps} steps, {label}: every run failed")
            continue
        wall = statistics.median(s["wall"] for s in got)
        cpu = statistics.median(s["cpu_self"] for s in got)
        ms = cpu / args.steps * 1000
        summary[label] = {"wall": wall, "steps_per_s": args.steps / wall,
                          "runner_cpu": cpu, "runner_ms_per_step": ms, "failed_runs": failed}
        print(f"W6 {args.steps} steps, --max-parallel {args.max_parallel}, {label}: wall "
              f"median {wall:.2f} s ({args.steps / wall:.1f} steps/s); runner cpu median "
              f"{cpu:.2f} s = {ms:.1f} ms/step (target <= {TARGET_MS:g}: "
              f"{'met' if ms <= TARGET_MS else 'missed'})"
              + (f"; {failed} of {len(runs)} runs failed" if failed else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"samples": samples, "medians": summary,
                                               "steps": args.steps,
                                               "max_parallel": args.max_parallel}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
