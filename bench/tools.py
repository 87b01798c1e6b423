"""How each tool is run and measured: whole commands in subprocesses, as a user would run them,
with wall time and the peak resident memory of the orchestrating process (not its kernels)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT_BIN = Path(sys.executable).parent  # the project venv: mlpipe, papermill
BENCH_VENV = ROOT / ".venv-bench"  # Ploomber's own venv: its pins never touch the project's
PLOOMBER_REQS = ["ploomber==0.23.3", "papermill", "ipykernel"]
# their tested versions (a lock of its own: Ploomber 0.23 needs notebook<7); `make upgrade`
BENCH_LOCK = ROOT / "requirements" / "bench-constraints.txt"
TIMEOUT = 900


@dataclass
class Sample:
    seconds: float
    peak_rss_mb: float | None
    ok: bool
    tail: str = ""


@dataclass
class Variant:
    """A version of mlpipe to measure: `current` is the installed one; others put an older copy
    of the package first on PYTHONPATH (the before/after columns of docs/benchmarks.md)."""

    label: str
    pythonpath: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLPIPE_HOME", "PYTHONPATH")}
    env.update(
        COLUMNS="200",
        PLOOMBER_STATS_ENABLED="false",  # no telemetry calls from the benchmark
        PLOOMBER_VERSION_CHECK_DISABLED="true",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    return env


def variant_envs(env_items: list[str], variant_items: list[str]) -> dict[str, dict[str, str]]:
    """The environments to compare, from `--env K=V ...` and `--variant LABEL=DIR ...`: the
    current code, and each LABEL with DIR (another checkout's source) first on PYTHONPATH."""
    env = {**base_env(), **dict(e.split("=", 1) for e in env_items)}
    variants = {"current": env}
    for text in variant_items:
        label, _, where = text.partition("=")
        variants[label] = {**env, "PYTHONPATH": str(Path(where).resolve())}
    return variants


def _peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(cmd: list[str], cwd: Path, env: dict[str, str]) -> Sample:
    """Run one command; wall time, and VmHWM of that process sampled until it exits (VmHWM only
    grows, so the last sample is the peak up to the last few milliseconds)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    peak = None
    out_chunks: list[bytes] = []
    import threading

    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        peak = _peak_rss_mb(proc.pid) or peak
        if time.perf_counter() - started > TIMEOUT:
            proc.kill()
        time.sleep(0.01)
    seconds = time.perf_counter() - started
    reader.join()
    text = b"".join(out_chunks).decode(errors="replace")
    return Sample(seconds, peak, proc.returncode == 0, "\n".join(text.splitlines()[-15:]))


def measure_sequence(cmds: list[list[str]], cwd: Path, env: dict[str, str]) -> Sample:
    """Several commands one after the other (plain papermill); peak is the largest of them."""
    started = time.perf_counter()
    peak = None
    for cmd in cmds:
        one = measure(cmd, cwd, env)
        peak = max(p for p in (peak, one.peak_rss_mb, 0.0) if p is not None)
        if not one.ok:
            return Sample(time.perf_counter() - started, peak, False, one.tail)
    return Sample(time.perf_counter() - started, peak, True)


# -- availability ------------------------------------------------------------------------
def docker_unavailable(env: dict[str, str]) -> str | None:
    """None when mlpipe's docker executor is registered and says it can run here."""
    probe = (
        "import json\n"
        "try:\n"
        "    from mlpipe_jupyter.executors import executors\n"
        "    why = executors.get('docker').available()\n"
        "except Exception as err:\n"
        "    why = f'{type(err).__name__}: {err}'\n"
        "print(json.dumps(None if why is None else str(why)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, timeout=120)
    if done.returncode != 0:
        return f"probe failed: {done.stderr.strip().splitlines()[-1:]}"
    why = json.loads(done.stdout.strip().splitlines()[-1])
    return None if why is None else f"docker executor unavailable: {why}"


def ensure_ploomber(log=print) -> str | None:
    """Create .venv-bench with Ploomber from PyPI at the versions of BENCH_LOCK once (again
    when the lock changes); None when usable, else the reason it is not."""
    stamp = BENCH_VENV / ".bench-stamp"
    wanted = " ".join(PLOOMBER_REQS) + "\n" + BENCH_LOCK.read_text()
    if stamp.exists() and stamp.read_text() == wanted and (BENCH_VENV / "bin/ploomber").exists():
        return None
    log(f"creating {BENCH_VENV.name} with {' '.join(PLOOMBER_REQS)} (once)")
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [[base, "-m", "venv", "--clear", str(BENCH_VENV)],
             [str(BENCH_VENV / "bin/pip"), "install", "-q", "-c", str(BENCH_LOCK), "pip"],
             [str(BENCH_VENV / "bin/pip"), "install", "-q", "-c", str(BENCH_LOCK),
              *PLOOMBER_REQS]]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if "is ignored" not in ln]
            return f"ploomber unavailable: `{' '.join(cmd[:3])}` failed: {lines[-1:]}"
    stamp.write_text(wanted)
    return None


def versions(env: dict[str, str]) -> dict[str, str]:
    def ask(python: Path, mods: list[str]) -> dict[str, str]:
        code = ("import importlib.metadata as m, json, sys\n"
                "print(json.dumps({d: m.version(d) for d in sys.argv[1:]}))")
        done = subprocess.run([str(python), "-c", code, *mods], capture_output=True, text=True,
                              env=env)
        return json.loads(done.stdout) if done.returncode == 0 else {}

    found = ask(Path(sys.executable), ["mlpipe-jupyter", "papermill", "nbclient", "ipykernel",
                                       "jupyter_client"])
    if (BENCH_VENV / "bin/python").exists():
        found.update({f"{k} (.venv-bench)": v for k, v in
                      ask(BENCH_VENV / "bin/python", ["ploomber", "papermill"]).items()})
    return found


def machine() -> dict[str, object]:
    import platform

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem,
            "os": platform.platform(), "python": platform.python_version(),
            "docker": docker.stdout.strip() if docker.returncode == 0 else "none"}


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError):
        return -1.0
