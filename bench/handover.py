"""A DataFrame handed from one step to the next, against writing and reading it as Parquet in
one process (target: at most 1.5 x).

    python bench/handover.py [--mb 1024] [--reps 3]

The pipeline is two steps: `make` builds a DataFrame of about --mb MB (8 float64 columns of
random numbers, which Parquet cannot compress) and outputs it; `use` takes it as an input. The
hand-over is timed from the executed notebooks' own cell timestamps (papermill's): from the
start of `make`'s outputs cell (serialising the frame) to the end of `use`'s inputs cell
(loading it). Between the two are the runner publishing the artifact and `use` getting its
kernel (forked ahead, while `make` runs); building the frame and starting kernels are not in
it. The baseline builds the same frame in one plain process and times `to_parquet` plus
`read_parquet` of a file in the same directory. Repetitions are interleaved; medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as wl  # noqa: E402
from tools import PROJECT_BIN, base_env  # noqa: E402

TARGET = 1.5
BUILD = ("import numpy as np, pandas as pd\n"
         "df = pd.DataFrame(np.random.default_rng(0).random(({rows}, 8)),\n"
         "                  columns=[f'c{{i}}' for i in range(8)])")
BASELINE = BUILD + """
import json, sys, time
path = sys.argv[1]
t0 = time.perf_counter()
df.to_parquet(path)
back = pd.read_parquet(path)
print(json.dumps({{"seconds": time.perf_counter() - t0, "rows": len(back)}}))
"""


def rows_for(mb: float) -> int:
    return max(1, int(mb * 1024 * 1024 / 64))  # 8 float64 columns: 64 bytes a row


def write_pipeline(where: Path, rows: int) -> Path:
    cells = [("%load_ext mlpipe_jupyter", []),
             ("%%step make --outputs df\n" + BUILD.format(rows=rows), []),
             ("%%step use --inputs df --outputs n\nn = len(df)", [])]
    path = where / "pipeline.ipynb"
    path.write_text(json.dumps(wl._nb(cells), indent=1), encoding="utf-8")
    return path


def _cell_times(executed: Path, role: str) -> tuple[datetime, datetime]:
    nb = json.loads(executed.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell.get("metadata", {}).get("mlpipe") == role:
            meta = cell["metadata"]["papermill"]
            return (datetime.fromisoformat(meta["start_time"].rstrip("Z")),
                    datetime.fromisoformat(meta["end_time"].rstrip("Z")))
    raise LookupError(f"no {role} cell in {executed}")


def mlpipe_once(where: Path, env: dict[str, str]) -> float:
    done = subprocess.run([str(PROJECT_BIN / "mlpipe"), "run", "pipeline.ipynb", "--executor",
                           "local", "--no-cache"], cwd=where, env=env, capture_output=True,
                          text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"mlpipe run failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    run_dir = max((where / ".mlpipe/runs").iterdir(), key=lambda p: p.stat().st_mtime)
    start, _ = _cell_times(run_dir / "make/output.ipynb", "outputs")
    _, end = _cell_times(run_dir / "use/output.ipynb", "inputs")
    return (end - start).total_seconds()


def baseline_once(where: Path, rows: int, env: dict[str, str]) -> float:
    done = subprocess.run([str(PROJECT_BIN / "python"), "-c", BASELINE.format(rows=rows),
                           str(where / "baseline.parquet")], capture_output=True, text=True,
                          env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"baseline failed:\n{done.stderr[-3000:]}")
    (where / "baseline.parquet").unlink(missing_ok=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=1024)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    env = base_env()
    rows = rows_for(args.mb)
    got: dict[str, list[float]] = {"mlpipe": [], "parquet": []}
    with tempfile.TemporaryDirectory(prefix="mlpipe-handover-") as tmp:
        where = Path(tmp)
        write_pipeline(where, rows)
        for rep in range(args.reps):
            got["mlpipe"].append(mlpipe_once(where, env))
            got["parquet"].append(baseline_once(where, rows, env))
            print(f"rep {rep + 1}: mlpipe hand-over {got['mlpipe'][-1]:.2f} s, Parquet write+read "
                  f"in one process {got['parquet'][-1]:.2f} s", flush=True)
    mine, base = statistics.median(got["mlpipe"]), statistics.median(got["parquet"])
    print(f"hand-over of a {args.mb:g} MB DataFrame ({rows} rows x 8 float64): mlpipe median "
          f"{mine:.2f} s, Parquet in one process {base:.2f} s, ratio {mine / base:.2f} "
          f"(target <= {TARGET:g}: {'met' if mine / base <= TARGET else 'missed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
