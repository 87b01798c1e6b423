"""`bench/run.py --smoke` for real: every workload and tool ends up in the JSON with numbers,
or with the reason it has none (never a made-up number)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

WORKLOADS = {"W0", "W1", "W2", "W3", "W4", "W5-run"}
TOOLS = {"mlpipe-local", "mlpipe-docker", "papermill", "ploomber-serial", "ploomber-parallel"}
# (workload, tool) pairs that have no number by design, and why
NOT_APPLICABLE = {("W3", "papermill"), ("W4", "papermill"), ("W5-run", "papermill"),
                  ("W4", "mlpipe-docker"), ("W5-run", "mlpipe-docker"),
                  ("W4", "ploomber-parallel"), ("W5-run", "ploomber-serial"),
                  ("W5-run", "ploomber-parallel")}


def test_bench_smoke_measures_every_workload_and_tool(tmp_path):
    out, docs = tmp_path / "smoke.json", tmp_path / "benchmarks.md"
    done = subprocess.run([sys.executable, "bench/run.py", "--smoke", "--out", str(out),
                           "--docs", str(docs)], cwd=ROOT, capture_output=True, text=True,
                          timeout=1500)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    data = json.loads(out.read_text())
    assert set(data["results"]) == WORKLOADS
    docker_reason = None
    for workload, row in data["results"].items():
        assert set(row) == TOOLS, workload
        for tool, entry in row.items():
            if (workload, tool) in NOT_APPLICABLE:
                assert entry.get("skipped"), (workload, tool, entry)
            elif tool == "mlpipe-docker" and "skipped" in entry:
                # only when the executor says it cannot run here, and then it says why
                assert entry["skipped"].startswith("docker executor unavailable: ")
                docker_reason = entry["skipped"]
            else:
                assert entry["median_s"] > 0 and entry["runs_s"], (workload, tool, entry)
                assert entry["peak_rss_mb"] > 0, (workload, tool, entry)
    assert data["machine"]["cores"] and data["versions"]["mlpipe-jupyter"]
    assert data["ratios"]["W1"]["mlpipe-local / ploomber"] > 0
    targets = {t["target"].split(":")[0] for t in data["targets"]}
    assert {"W1 local", "W1 docker", "W2 local", "W3 local", "W4", "W5"} <= targets
    for target in data["targets"]:
        if target["value"] is None:
            assert docker_reason and "docker" in target["target"], target
    table = docs.read_text()
    assert "<!-- bench:begin -->" in table and "| W1: chain of 3 trivial steps" in table


def test_the_close_measurements_run():
    """bench/w2.py (W2 alone, CPU and a timeline) and bench/docker_floor.py (the least W2 can
    take with a container per step), at their smallest."""
    w2 = subprocess.run([sys.executable, "bench/w2.py", "--executor", "local", "--reps", "1",
                         "--fan", "2", "--sleep", "0", "--trace"], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)
    assert w2.returncode == 0, w2.stdout[-4000:] + w2.stderr[-4000:]
    assert "W2 local current: wall median" in w2.stdout and "p1" in w2.stdout
    floor = subprocess.run([sys.executable, "bench/docker_floor.py", "--reps", "1", "--fan", "2",
                            "--sleep", "0"], cwd=ROOT, capture_output=True, text=True,
                           timeout=600)
    assert floor.returncode == 0, floor.stdout[-4000:] + floor.stderr[-4000:]
    assert "2 containers importing ipykernel and sleeping 0 s, network bridge: wall median" \
        in floor.stdout


def test_the_foreach_benchmark_runs(tmp_path):
    """bench/foreach.py at its smallest: every case measured, the target checked."""
    out = tmp_path / "foreach.json"
    done = subprocess.run([sys.executable, "bench/foreach.py", "--items", "40", "--batch-size",
                           "10", "--reps", "1", "--warmup", "0", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    data = json.loads(out.read_text())
    assert all(v > 0 for v in data["medians"].values()), data["medians"]
    assert data["target_met"] is not None and "target: fan-out step" in done.stdout
