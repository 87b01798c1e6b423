"""Fan-out steps (issue 13): ITEMS trivial items in mini-batches of BATCH on WORKERS workers.

    python bench/foreach.py [--items 10000] [--batch-size 100] [--workers 2] [--reps 3]
                            [--warmup 1] [--json OUT]

Three cases, their repetitions interleaved so background load lands on all alike, each in a
fresh state directory (nothing reused):
- W0: `mlpipe run` of one trivial step (the fixed cost of a run, cold);
- mlpipe-foreach: `mlpipe run` of a step making the list and a `--foreach` step over it; the
  fan-out step's own duration is read back from `mlpipe runs --json`;
- papermill: the same work as plain papermill per mini-batch: one notebook executed once per
  batch with the batch as a parameter, WORKERS at a time, each writing its result to a JSON
  file, gathered in order.
Target: the fan-out step within W0 + 2 s, i.e. under 20 ms per mini-batch beyond the kernels'
start (at the defaults). Ploomber has no per-item task over a runtime list (its grids are over
parameters fixed when the pipeline is built), so it has no case here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as wl  # noqa: E402
from tools import PROJECT_BIN, base_env  # noqa: E402

TARGET_S = 2.0  # beyond W0, for the whole fan-out step


def write_cases(where: Path, items: int, batch_size: int, workers: int) -> None:
    wl._write(where / "w0" / "pipeline.ipynb", wl._nb([
        ("%load_ext mlpipe_jupyter", []), ("%%step t\nx = 1", [])]))
    wl._write(where / "foreach" / "pipeline.ipynb", wl._nb([
        ("%load_ext mlpipe_jupyter", []),
        (f"%%step make --outputs nums\nnums = list(range({items}))", []),
        (f"%%step score --foreach nums --batch-size {batch_size} --workers {workers} "
         "--inputs nums --outputs doubled\ndoubled = [n * 2 for n in nums]", [])]))
    wl._write(where / "papermill" / "batch.ipynb", wl._nb([
        ("batch = []\nout_path = None", ["parameters"]),
        ("import json\njson.dump([n * 2 for n in batch], open(out_path, 'w'))", [])]))


def mlpipe_run(directory: Path, env: dict[str, str]) -> dict:
    """One cold `mlpipe run`: its wall time and each step's duration from the run store."""
    shutil.rmtree(directory / ".mlpipe", ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run([str(PROJECT_BIN / "mlpipe"), "run", "pipeline.ipynb", "--executor",
                           "local"], cwd=directory, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"ok": False, "why": (done.stdout + done.stderr).strip().splitlines()[-1:]}
    listed = subprocess.run([str(PROJECT_BIN / "mlpipe"), "runs", "--json"], cwd=directory,
                            env=env, capture_output=True, text=True, check=True)
    steps = json.loads(listed.stdout)[0]["steps"]
    return {"ok": True, "wall": wall, "steps": {s["name"]: s["duration"] for s in steps}}


def _papermill_batch(notebook: str, out: str, batch: list[int]) -> None:
    import papermill

    papermill.execute_notebook(notebook, out + ".ipynb", parameters={"batch": batch,
                                                                      "out_path": out + ".json"},
                               progress_bar=False, log_output=False)


def papermill_run(directory: Path, items: int, batch_size: int, workers: int) -> dict:
    """The same work as plain papermill per mini-batch, `workers` at a time; gathered."""
    out = directory / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    nums = list(range(items))
    starts = range(0, items, batch_size)
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        for future in [pool.submit(_papermill_batch, str(directory / "batch.ipynb"),
                                   str(out / f"b{n}"), nums[s:s + batch_size])
                       for n, s in enumerate(starts)]:
            future.result()
    gathered = [v for n in range(len(starts))
                for v in json.loads((out / f"b{n}.json").read_text())]
    wall = time.perf_counter() - started
    if gathered != [n * 2 for n in nums]:
        return {"ok": False, "why": "papermill's gathered result is wrong"}
    return {"ok": True, "wall": wall}


def _median(samples: list[dict], pick) -> float | None:
    got = [pick(s) for s in samples if s["ok"]]
    return statistics.median(got) if got else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--json", help="also write the samples and medians here")
    args = p.parse_args(argv)
    env = base_env()
    batches = -(-args.items // args.batch_size)
    samples: dict[str, list[dict]] = {"W0": [], "mlpipe-foreach": [], "papermill": []}
    with tempfile.TemporaryDirectory(prefix="mlpipe-foreach-") as tmp:
        where = Path(tmp)
        write_cases(where, args.items, args.batch_size, args.workers)
        cases = {"W0": lambda: mlpipe_run(where / "w0", env),
                 "mlpipe-foreach": lambda: mlpipe_run(where / "foreach", env),
                 "papermill": lambda: papermill_run(where / "papermill", args.items,
                                                    args.batch_size, args.workers)}
        for rep in range(args.warmup + args.reps):
            for label, case in cases.items():
                s = case()
                if rep < args.warmup:
                    continue
                samples[label].append(s)
                extra = (f", fan-out step {s['steps']['score']:.2f} s"
                         if s["ok"] and "score" in s.get("steps", {}) else "")
                print(f"{label} rep {rep - args.warmup + 1}: "
                      + (f"wall {s['wall']:.2f} s{extra}" if s["ok"] else f"failed: {s['why']}"),
                      flush=True)
    w0 = _median(samples["W0"], lambda s: s["wall"])
    run = _median(samples["mlpipe-foreach"], lambda s: s["wall"])
    step = _median(samples["mlpipe-foreach"], lambda s: s["steps"]["score"])
    paper = _median(samples["papermill"], lambda s: s["wall"])
    failed = sum(not s["ok"] for runs in samples.values() for s in runs)
    medians = {"W0": w0, "mlpipe-foreach run": run, "mlpipe-foreach step": step,
               "papermill": paper}
    print(f"{args.items} items, batches of {args.batch_size} ({batches}), {args.workers} "
          "workers; medians: " + ", ".join(f"{k} {v:.2f} s" for k, v in medians.items()
                                           if v is not None))
    target = None
    if None not in (w0, run, step, paper):
        print(f"ratios: papermill / mlpipe-foreach run {paper / run:.1f} x; mlpipe-foreach run "
              f"/ W0 {run / w0:.2f} x")
        target = step <= w0 + TARGET_S
        print(f"target: fan-out step {step:.2f} s <= W0 {w0:.2f} s + {TARGET_S:g} s: "
              f"{'met' if target else 'missed'} ({max(0.0, step - w0) / batches * 1000:.1f} "
              "ms per mini-batch beyond W0)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "items": args.items, "batch_size": args.batch_size, "workers": args.workers,
            "samples": samples, "medians": medians, "target_met": target}, indent=1))
    return 1 if failed or target is None else 0


if __name__ == "__main__":
    sys.exit(main())
