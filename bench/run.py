"""Benchmarks: mlpipe (local and docker executors) against plain papermill and Ploomber on the
same work, in one run. `make bench` (full) or `make bench-smoke` (one repetition, small sizes).

    python bench/run.py [--smoke] [--reps N] [--only W1,W3] [--tools mlpipe-local,papermill]
                        [--variant LABEL=DIR ...] [--out FILE] [--docs FILE | --no-docs]

Writes medians, ratios and the targets to bench/results/<date>.json and a table to
docs/benchmarks.md (between its bench markers). Repetitions are interleaved across tools, after
one untimed warm-up each, so that background load lands on every tool alike.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402
import workloads as wl  # noqa: E402
from tools import (  # noqa: E402
    BENCH_VENV,
    PROJECT_BIN,
    ROOT,
    Sample,
    Variant,
    base_env,
    docker_unavailable,
    ensure_ploomber,
    loadavg,
    machine,
    measure,
    measure_sequence,
    versions,
)

WORKLOADS = ("W0", "W1", "W2", "W3", "W4", "W5-run")
TOOLS = ("mlpipe-local", "mlpipe-docker", "papermill", "ploomber-serial", "ploomber-parallel")
Runner = Callable[[], Sample]


class Case:
    """One (workload, tool) cell: files written once, then a command measured repeatedly."""

    def __init__(self, run: Runner | None = None, *, warmups: int = 1, reps: int | None = None,
                 skip: str | None = None) -> None:
        self.run, self.warmups, self.reps, self.skip = run, warmups, reps, skip
        self.samples: list[Sample] = []
        self.error: str | None = None


def mlpipe_case(workload: str, executor: str, variant: Variant, d: Path, sizes: wl.Sizes,
                skip: str | None) -> Case:
    if skip:
        return Case(skip=skip)
    env = {**base_env(), **variant.env}
    if variant.pythonpath:
        env["PYTHONPATH"] = variant.pythonpath
    run = [str(PROJECT_BIN / "mlpipe"), "run", "pipeline.ipynb", "--executor", executor]
    if variant.label not in ("current", "before") and workload in ("W4", "W5-run"):
        return Case(skip="ablation variants are measured on W0-W3")
    if workload == "W4":
        wl.write_parse_notebook(d, sizes.parse)
        cmd = [str(PROJECT_BIN / "python"), str(ROOT / "bench/parse_only.py"), "mlpipe",
               "pipeline.ipynb"]
        return Case(lambda: measure(cmd, d, env))
    if executor == "docker" and workload == "W5-run":
        return Case(skip="runner memory is measured with the local executor (a 200-container "
                         "run takes minutes)")
    if workload == "W2":
        wl.write_mlpipe(d, wl.fan(sizes.fan, sizes.sleep), with_values=False)
        cmd = [*run, "--no-cache", "--max-parallel", str(sizes.fan)]
    else:
        n = {"W0": 1, "W1": sizes.chain, "W3": sizes.chain, "W5-run": sizes.long_run}[workload]
        wl.write_mlpipe(d, wl.chain(n), with_values=True)
        cmd = run if workload == "W3" else [*run, "--no-cache"]
    return Case(lambda: measure(cmd, d, env), reps=1 if workload == "W5-run" else None,
                warmups=0 if workload == "W5-run" else 1)


def papermill_case(workload: str, d: Path, sizes: wl.Sizes) -> Case:
    if workload in ("W3", "W4", "W5-run"):
        return Case(skip={"W3": "no reuse in plain papermill: every call executes",
                          "W4": "no DAG in plain papermill: nothing to parse",
                          "W5-run": "no runner in plain papermill"}[workload])
    steps = (wl.fan(sizes.fan, sizes.sleep) if workload == "W2"
             else wl.chain(1 if workload == "W0" else sizes.chain))
    calls = wl.write_papermill(d, steps, with_values=workload != "W2")
    env = base_env()
    cmds = [[str(PROJECT_BIN / "papermill"), *args] for args in calls]
    return Case(lambda: measure_sequence(cmds, d, env))


def ploomber_case(workload: str, executor: str, d: Path, sizes: wl.Sizes,
                  skip: str | None) -> Case:
    if skip:
        return Case(skip=skip)
    env = base_env()
    env["PATH"] = f"{BENCH_VENV / 'bin'}:{env.get('PATH', '')}"
    if workload == "W4":
        if executor == "parallel":
            return Case(skip="the executor plays no part in parsing: see ploomber-serial")
        wl.write_ploomber_parse(d, sizes.parse)
        cmd = [str(BENCH_VENV / "bin/python"), str(ROOT / "bench/parse_only.py"), "ploomber",
               "pipeline.yaml"]
        return Case(lambda: measure(cmd, d, env))
    if workload == "W5-run":
        return Case(skip="W5 measures mlpipe's runner")
    if workload == "W2":
        wl.write_ploomber(d, wl.fan(sizes.fan, sizes.sleep), False, executor, sizes.fan)
    else:
        n = 1 if workload == "W0" else sizes.chain
        wl.write_ploomber(d, wl.chain(n), True, executor)
    cmd = [str(BENCH_VENV / "bin/ploomber"), "build", "-e", "pipeline.yaml"]
    if workload != "W3":
        cmd.append("--force")
    return Case(lambda: measure(cmd, d, env))


def build_cases(args, sizes: wl.Sizes, work: Path, variants: list[Variant],
                log) -> dict[str, dict[str, Case]]:
    env = base_env()
    docker_skip = docker_unavailable(env) if "mlpipe-docker" in args.tools else None
    if docker_skip:
        log(docker_skip)
    needs_ploomber = any(t.startswith("ploomber") for t in args.tools)
    ploomber_skip = ensure_ploomber(log) if needs_ploomber else None
    if ploomber_skip:
        log(ploomber_skip)
    cases: dict[str, dict[str, Case]] = {}
    for workload in args.only:
        row = cases[workload] = {}
        for tool in args.tools:
            for variant in (variants if tool == "mlpipe-local" else [Variant("current")]):
                key = tool if variant.label == "current" else f"{tool}@{variant.label}"
                d = work / workload / key
                d.mkdir(parents=True)
                if tool.startswith("mlpipe"):
                    executor = tool.split("-", 1)[1]
                    skip = docker_skip if executor == "docker" else None
                    if workload == "W4" and executor == "docker":
                        skip = "the executor plays no part in parsing: see mlpipe-local"
                    row[key] = mlpipe_case(workload, executor, variant, d, sizes, skip)
                elif tool == "papermill":
                    row[key] = papermill_case(workload, d, sizes)
                else:
                    row[key] = ploomber_case(workload, tool.split("-", 1)[1], d, sizes,
                                             ploomber_skip)
    return cases


def run_cases(cases: dict[str, dict[str, Case]], reps: dict[str, int], warm: bool, log) -> None:
    for workload, row in cases.items():
        live = {k: c for k, c in row.items() if c.skip is None}
        for key, case in live.items():
            for _ in range(case.warmups if warm or workload == "W3" else 0):
                sample = case.run()
                if not sample.ok:
                    case.error = sample.tail
                    log(f"{workload} {key}: warm-up failed:\n{sample.tail}")
                    break
        n = reps.get(workload, reps["default"])
        for rep in range(n):
            for key, case in live.items():
                if case.error or rep >= (case.reps or n):
                    continue
                sample = case.run()
                if not sample.ok:
                    case.error = sample.tail
                    log(f"{workload} {key}: failed:\n{sample.tail}")
                    continue
                case.samples.append(sample)
                rss = f", {sample.peak_rss_mb:.0f} MB" if sample.peak_rss_mb else ""
                log(f"{workload} {key:<28} rep {rep + 1}/{n}: {sample.seconds:6.2f} s{rss} "
                    f"(load {loadavg():.1f})")


def summarise(cases: dict[str, dict[str, Case]]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for workload, row in cases.items():
        out[workload] = {}
        for key, case in row.items():
            if case.skip:
                out[workload][key] = {"skipped": case.skip}
            elif case.error or not case.samples:
                out[workload][key] = {"error": case.error or "no samples"}
            else:
                secs = [s.seconds for s in case.samples]
                rss = [s.peak_rss_mb for s in case.samples if s.peak_rss_mb]
                out[workload][key] = {
                    "median_s": round(statistics.median(secs), 3),
                    "runs_s": [round(s, 3) for s in secs],
                    "peak_rss_mb": round(max(rss), 1) if rss else None,
                }
    return out


def _variant(text: str) -> Variant:
    """`LABEL=DIR[,KEY=VALUE...]`: the package in DIR (empty: the installed one), with env.
    `before` (the code before an optimisation) also gets W4 and W5; others only W0-W3."""
    label, _, rest = text.partition("=")
    where, *assignments = rest.split(",")
    env = dict(a.split("=", 1) for a in assignments)
    return Variant(label, str(Path(where).resolve()) if where else None, env)


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="one repetition, small sizes")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 5; W2 3)")
    p.add_argument("--only", default=",".join(WORKLOADS), help="workloads, comma-separated")
    p.add_argument("--tools", default=",".join(TOOLS), help="tools, comma-separated")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=DIR[,K=V...]",
                   help="also measure the mlpipe package in DIR (empty: the installed one) "
                   "with these environment variables (before/after columns)")
    p.add_argument("--out", default=None, help="results JSON (default bench/results/<date>.json;"
                   " smoke: bench/results/smoke.json)")
    p.add_argument("--docs", default=str(ROOT / "docs/benchmarks.md"))
    p.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    args = p.parse_args(argv)
    args.only = [w for w in args.only.split(",") if w]
    args.tools = [t for t in args.tools.split(",") if t]
    for name, allowed in ((args.only, WORKLOADS), (args.tools, TOOLS)):
        bad = [x for x in name if x not in allowed]
        if bad:
            p.error(f"unknown {bad[0]!r}; choose from {', '.join(allowed)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = wl.SMOKE if args.smoke else wl.FULL
    if args.reps:
        reps = {"default": args.reps}
    else:
        reps = {"default": 1} if args.smoke else {"default": 5, "W2": 3}
    variants = [Variant("current")] + [_variant(v) for v in args.variant]
    date = time.strftime("%Y-%m-%d")
    out = Path(args.out) if args.out else ROOT / "bench/results" / (
        "smoke.json" if args.smoke else f"{date}.json")

    def log(line: str) -> None:
        print(line, flush=True)

    work = Path(tempfile.mkdtemp(prefix="mlpipe-bench-"))
    started, load_before = time.time(), loadavg()
    try:
        cases = build_cases(args, sizes, work, variants, log)
        run_cases(cases, reps, warm=not args.smoke, log=log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = summarise(cases)
    data = {
        "date": date, "smoke": args.smoke, "started": time.strftime(
            "%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": machine(), "versions": versions(base_env()),
        "load": {"before": load_before, "after": loadavg()},
        "sizes": vars(sizes), "repetitions": reps,
        "variants": {v.label: {"pythonpath": v.pythonpath, "env": v.env} for v in variants},
        "results": results,
    }
    data["ratios"] = report.ratios(results)
    data["targets"] = report.targets(results, sizes)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    log(f"results: {out}")
    if not args.no_docs:
        report.write_docs(Path(args.docs), data)
        log(f"table: {args.docs}")
    print(report.markdown(data))
    errors = [f"{w} {k}" for w, row in results.items() for k, v in row.items() if "error" in v]
    if errors:
        log("failed: " + ", ".join(errors))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
