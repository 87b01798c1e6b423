"""bench/soak.py at CI size: the same many-step pipeline run repeatedly in one process at a
high --max-parallel. It fails on a run slower than 3 x the median of the runs (a ratio within
one run of the soak, never a fixed duration), on a step that does not succeed, and on any
process (kernel, zygote) a run leaves behind. bench/w6.py: the small W6 runs and reports."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.conftest import ROOT


def test_repeated_runs_in_one_process_keep_pace_and_leave_nothing(tmp_path):
    out = tmp_path / "soak.json"
    done = subprocess.run([sys.executable, "bench/soak.py", "--steps", "16", "--runs", "6",
                           "--max-parallel", "8", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    data = json.loads(out.read_text())
    assert data["problems"] == []
    assert [r["state"] for r in data["results"]] == ["succeeded"] * 6
    assert all(r["left"] == [] for r in data["results"])
    # nothing accumulates from run to run in the parent process (threads, descriptors)
    assert len({r["threads"] for r in data["results"]}) == 1
    assert len({r["fds"] for r in data["results"][1:]}) == 1


def test_w6_reports_throughput_and_runner_cpu_per_step():
    done = subprocess.run([sys.executable, "bench/w6.py", "--steps", "6", "--max-parallel", "4",
                           "--reps", "1", "--warmup", "0"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert re.search(r"W6 6 steps, --max-parallel 4, current: wall median \d+\.\d\d s "
                     r"\(\d+\.\d steps/s\); runner cpu median \d+\.\d\d s = \d+\.\d ms/step",
                     done.stdout), done.stdout
