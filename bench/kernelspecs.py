"""W1 (a chain of trivial steps) with the kernelspec ipykernel ships and with the one
`python -m ipykernel install --prefix` writes (`-Xfrozen_modules=off` and an absolute python),
repetitions interleaved; the ratio of their medians is what the second form costs (target
<= 1.1: both get forked step kernels).

    python bench/kernelspecs.py [--reps N] [--chain 8] [--no-fork] [--variant LABEL=DIR ...]

Each spec is put first on JUPYTER_PATH from a tmp dir (nothing is installed anywhere else).
Before timing, one probe run per spec says whether its step kernel was forked (its parent is
the run's zygote) and with which flags. --no-fork adds rows with MLPIPE_FORK_KERNELS=0 (every
kernel a new interpreter); --variant measures the mlpipe package in DIR too (first on
PYTHONPATH, as bench/w2.py does: e.g. the code before a change, from `git archive`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as wl  # noqa: E402
from tools import PROJECT_BIN, base_env, measure  # noqa: E402

SHIPPED = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
PROBE_STEP = ("%%step probe --outputs parent\n"
              "import os\n"
              "parent = open(f'/proc/{os.getppid()}/cmdline').read().split('\\0')")


def make_specs(root: Path) -> dict[str, Path]:
    """{label: a directory for JUPYTER_PATH whose kernels/python3 is that spec}."""
    shipped = root / "shipped"
    source = Path(sys.prefix) / "share/jupyter/kernels/python3"
    if (source / "kernel.json").is_file():
        shutil.copytree(source, shipped / "kernels/python3")
    else:  # ipykernel installed without its data files: the same spec, written out
        (shipped / "kernels/python3").mkdir(parents=True)
        (shipped / "kernels/python3/kernel.json").write_text(json.dumps(
            {"argv": SHIPPED, "display_name": "Python 3 (ipykernel)", "language": "python"}))
    subprocess.run([str(PROJECT_BIN / "python"), "-m", "ipykernel", "install", "--prefix",
                    str(root / "prefix")], check=True, capture_output=True, timeout=120)
    return {"shipped": shipped, "install --prefix": root / "prefix/share/jupyter"}


def probe(env: dict[str, str], where: Path) -> str:
    """How the step kernel of a one-step run was started under `env`."""
    where.mkdir()
    path = where / "probe.ipynb"
    path.write_text(json.dumps(wl._nb([("%load_ext mlpipe_jupyter", []), (PROBE_STEP, [])])))
    run = [str(PROJECT_BIN / "mlpipe"), "run", path.name, "--executor", "local"]
    done = subprocess.run(run, cwd=where, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return f"probe run failed: {done.stdout[-500:]}{done.stderr[-500:]}"
    listed = subprocess.run([str(PROJECT_BIN / "mlpipe"), "runs", "--json"], cwd=where, env=env,
                            capture_output=True, text=True, timeout=120)
    digest = json.loads(listed.stdout)[0]["steps"][0]["outputs"]["parent"]
    parent = json.loads((where / ".mlpipe/artifacts" / digest / "data/value.json").read_text())
    if "mlpipe_jupyter.kernels.zygote" not in parent:
        return f"not forked (parent: {' '.join(parent[:3])} ...)"
    flags = parent[1:parent.index("-m")]
    return f"forked from the zygote{' with ' + ' '.join(flags) if flags else ''}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--chain", type=int, default=8)
    p.add_argument("--no-fork", action="store_true", help="also rows with MLPIPE_FORK_KERNELS=0")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=DIR")
    args = p.parse_args(argv)
    codes = {"current": None}
    for text in args.variant:
        label, _, where = text.partition("=")
        codes[label] = str(Path(where).resolve())
    with tempfile.TemporaryDirectory(prefix="mlpipe-kernelspecs-") as tmp:
        root = Path(tmp)
        specs = make_specs(root)
        rows: dict[str, dict[str, str]] = {}
        for code, pythonpath in codes.items():
            for spec, jupyter_path in specs.items():
                forks = [True, False] if args.no_fork else [True]
                for fork in forks:
                    env = {**base_env(), "JUPYTER_PATH": str(jupyter_path),
                           "MLPIPE_FORK_KERNELS": "1" if fork else "0"}
                    if pythonpath:
                        env["PYTHONPATH"] = pythonpath
                    label = f"{code}, {spec}" + ("" if fork else ", no fork")
                    rows[label] = env
        work = root / "w1"
        work.mkdir()
        wl.write_mlpipe(work, wl.chain(args.chain), with_values=True)
        cmd = [str(PROJECT_BIN / "mlpipe"), "run", "pipeline.ipynb", "--executor", "local",
               "--no-cache"]
        for i, (label, env) in enumerate(rows.items()):
            print(f"{label}: {probe(env, root / f'probe-{i}')}", flush=True)
        samples: dict[str, list[float]] = {label: [] for label in rows}
        for rep in range(args.warmup + args.reps):
            for label, env in rows.items():
                s = measure(cmd, work, env)
                if not s.ok:
                    print(f"{label}: the run failed\n{s.tail}")
                    return 1
                if rep >= args.warmup:
                    samples[label].append(s.seconds)
                    print(f"{label} rep {rep - args.warmup + 1}: {s.seconds:.2f} s", flush=True)
    medians = {label: statistics.median(got) for label, got in samples.items()}
    for label, got in samples.items():
        print(f"W1 ({args.chain} steps) {label}: median {medians[label]:.2f} s "
              f"(min {min(got):.2f}, max {max(got):.2f})")
    for code in codes:
        ratio = medians[f"{code}, install --prefix"] / medians[f"{code}, shipped"]
        print(f"{code}: install --prefix / shipped = {ratio:.2f} (target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
