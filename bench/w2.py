"""W2 alone, measured closely: wall time, CPU seconds and (--trace) a per-step timeline.

    python bench/w2.py [--executor local|docker] [--reps N] [--trace] [--fan 8] [--sleep 2]
                       [--variant LABEL=DIR ...]

Wall clock on a shared 2-core machine is noisy, so each repetition also reports the CPU seconds
(user+sys) of the runner and every process it reaped (its kernels; for docker, not the
containers, whose processes belong to the daemon), for docker the CPU of the run's containers
(from their cgroups) and of dockerd+containerd, the machine-wide busy CPU seconds over the run
(from /proc/stat: includes other people's work) and the load average. --trace runs the
CLI through bench/trace.py and prints when each step's kernel was requested, started, ready,
ran its cells, and exited (and its container's create/start/wait for docker). --variant
also measures the mlpipe package in DIR (put first on PYTHONPATH, as bench/run.py does; e.g.
`git archive HEAD mlpipe_jupyter | tar -x -C /tmp/before`), repetitions interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as wl  # noqa: E402
from tools import PROJECT_BIN, loadavg, variant_envs  # noqa: E402

HERE = Path(__file__).resolve().parent


def busy_cpu() -> float:
    """Machine-wide non-idle CPU seconds since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


DOCKER_CGROUPS = Path("/sys/fs/cgroup/cpuacct/docker")  # cgroup v1 with the cgroupfs driver
CONTAINERS = Path("/var/lib/docker/containers")
OURS = re.compile(r"^/?mlpipe-.+-p\d+-\d+$")  # this workload's step containers (p0, p1, ...)


class ContainerCPU:
    """CPU seconds used by this workload's containers, from their cgroups, polled every 10 ms
    while the run lasts (a container's cgroup goes when it stops, so up to 10 ms of each is
    missed). Only containers named like W2's steps count: a colleague's containers on the same
    engine are left out. `seconds` is None where that cgroup layout is not there."""

    def __init__(self) -> None:
        self.usage: dict[str, int] = {}
        self.names: dict[str, bool] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self.available = DOCKER_CGROUPS.is_dir()

    def __enter__(self) -> ContainerCPU:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()

    def _ours(self, cid: str) -> bool:
        """Named like a W2 step container; read once, from the engine's own record of it
        (no daemon call to distort the daemons' CPU)."""
        if cid not in self.names:
            try:
                config = json.loads((CONTAINERS / cid / "config.v2.json").read_text())
                self.names[cid] = bool(OURS.match(config.get("Name", "")))
            except (OSError, ValueError):
                return False  # not readable yet: asked again at the next poll
        return self.names[cid]

    def _poll(self) -> None:
        while not self._stop.is_set():
            for d in DOCKER_CGROUPS.iterdir():
                if not d.is_dir() or not self._ours(d.name):
                    continue
                try:
                    used = int((d / "cpuacct.usage").read_text())
                except (OSError, ValueError):
                    continue
                self.usage[d.name] = max(used, self.usage.get(d.name, 0))
            self._stop.wait(0.01)

    @property
    def seconds(self) -> float | None:
        if not self.available:
            return None
        return sum(self.usage.values()) / 1e9


def daemons_cpu() -> float:
    """CPU seconds used so far by dockerd and containerd (container set-up and tear-down)."""
    total = 0.0
    for name in ("dockerd", "containerd"):
        found = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout
        for pid in found.split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, IndexError, ValueError):
                pass
    return total


def run_once(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict:
    busy0, load0 = busy_cpu(), loadavg()
    daemons0 = daemons_cpu()
    with ContainerCPU() as containers:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "containers_cpu": containers.seconds,
            "daemons_cpu": daemons_cpu() - daemons0,
            "machine_cpu": busy_cpu() - busy0, "load": load0, "ok": proc.returncode == 0,
            "stderr": err[-2000:]}


def timeline(trace: Path) -> str:
    data = json.loads(trace.read_text())
    rows: dict[str, dict[str, float]] = {}
    kernels: dict[str, dict[str, float]] = {}
    for t, who, what, detail in data["events"]:
        if who.startswith("p") or who.startswith("s"):
            row = rows.setdefault(who, {})
            key = what
            if what.startswith("cell"):
                key = f"{what}{detail}"
            row.setdefault(key, t)
            if what.endswith(":end"):
                row[key] = t
        if what.startswith("kernel-start:end") or what.startswith("kernel-stop"):
            name = detail.split()[-1]
            kernels.setdefault(name, {})[what] = t
    cols = [("step", "step:begin"), ("req", "pool-request:end"), ("pm", "import-papermill:end"),
            ("conn0", "connect:begin"), ("ready", "connect:end"), ("c1", "cell:begin1"),
            ("sleep0", "cell:begin4"), ("sleepEnd", "cell:end4"), ("c5end", "cell:end5"),
            ("ctr-create", "container-create:end"), ("ctr-start", "container-start:end"),
            ("ctr-exit", "container-wait:end"), ("end", "step:end")]
    lines = ["step  " + " ".join(f"{c:>9}" for c, _ in cols)]
    for name in sorted(rows):
        row = rows[name]
        lines.append(f"{name:<5} " + " ".join(
            f"{row[k]:9.2f}" if k in row else f"{'-':>9}" for _, k in cols))
    lines.append("kernels: " + ", ".join(
        f"{k}: up {v.get('kernel-start:end', float('nan')):.2f}"
        f" stop {v.get('kernel-stop:begin', float('nan')):.2f}"
        f"-{v.get('kernel-stop:end', float('nan')):.2f}" for k, v in sorted(kernels.items())))
    step_cpu = [float(detail.split()[-1]) for _, _, what, detail in data["events"]
                if what == "step:end" and detail.startswith("thread cpu")]
    if step_cpu:
        lines.append(f"step threads' cpu: {sum(step_cpu):.2f} s in all, "
                     f"{statistics.median(step_cpu):.3f} s median")
    ends = {what: t for t, who, what, detail in data["events"]
            if what.startswith(("pool-shutdown", "run-finish"))}
    lines.append("run end: " + ", ".join(f"{k} {v:.2f}" for k, v in ends.items()))
    lines.append(f"runner wall {data['wall']:.2f} s, cpu self {data['cpu_self']:.2f} s, "
                 f"children {data['cpu_children']:.2f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--executor", default="local")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--fan", type=int, default=8)
    p.add_argument("--sleep", type=float, default=2.0)
    p.add_argument("--trace", action="store_true", help="print a per-step timeline per run")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--env", action="append", default=[], metavar="K=V")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=DIR")
    args = p.parse_args(argv)
    variants = variant_envs(args.env, args.variant)
    samples: dict[str, list[dict]] = {label: [] for label in variants}
    with tempfile.TemporaryDirectory(prefix="mlpipe-w2-") as tmp:
        d = Path(tmp)
        wl.write_mlpipe(d, wl.fan(args.fan, args.sleep), with_values=False)
        mlpipe = ["mlpipe", "run", "pipeline.ipynb", "--executor", args.executor, "--no-cache",
                  "--max-parallel", str(args.fan)]
        for rep in range(args.warmup + args.reps):
            for label, venv in variants.items():
                trace = d / f"trace-{rep}.json"
                if args.trace:
                    cmd = [str(PROJECT_BIN / "python"), str(HERE / "trace.py"), str(trace),
                           *mlpipe[1:]]
                else:
                    cmd = [str(PROJECT_BIN / "python"), "-m", "mlpipe_jupyter.ui.cli", *mlpipe[1:]]
                s = run_once(cmd, d, venv)
                if not s["ok"]:
                    print(s["stderr"])
                    return 1
                if rep < args.warmup:
                    continue
                samples[label].append(s)
                extra = ""
                if args.executor == "docker" and s["containers_cpu"] is not None:
                    extra = (f", containers {s['containers_cpu']:.2f} cpu-s, dockerd+containerd"
                             f" {s['daemons_cpu']:.2f} cpu-s")
                print(f"{label} rep {rep - args.warmup + 1}: wall {s['wall']:.2f} s, "
                      f"cpu {s['cpu']:.2f} s{extra}, machine busy {s['machine_cpu']:.2f} cpu-s, "
                      f"load {s['load']:.1f}", flush=True)
                if args.trace:
                    print(timeline(trace), flush=True)
    for label, got in samples.items():
        if not got:
            continue
        walls = [s["wall"] for s in got]
        cpus = [s["cpu"] for s in got]
        print(f"W2 {args.executor} {label}: wall median {statistics.median(walls):.2f} s "
              f"(min {min(walls):.2f}, max {max(walls):.2f}); cpu median "
              f"{statistics.median(cpus):.2f} s; " + (
                  f"containers median {statistics.median(s['containers_cpu'] for s in got):.2f}"
                  f" cpu-s, daemons median {statistics.median(s['daemons_cpu'] for s in got):.2f}"
                  " cpu-s; " if args.executor == "docker" and got[0]["containers_cpu"] is not None
                  else "") + "machine busy median "
              f"{statistics.median(s['machine_cpu'] for s in got):.2f} cpu-s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
