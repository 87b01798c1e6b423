"""`mlpipe show` of a fan-out step, on a real run through the real CLI (local kernels): the
JSON has the mini-batch counts and every failure with its traceback, the text the counts and
the first failures; the store keeps them in a column an older store gets when a runner opens
it."""

from __future__ import annotations

import json
import sqlite3

from mlpipe_jupyter.home import Home
from mlpipe_jupyter.run.store import RunStore
from tests.conftest import run_cli, write_notebook

SCORE = ("%%step score --foreach nums --batch-size 5 --max-failures 2 --inputs nums "
         "--outputs sq\n"
         "if nums[0] in (5, 15):\n"
         "    raise ValueError(f'bad batch {nums[0]}')\n"
         "sq = [n * n for n in nums]")


def test_show_has_the_batches_and_the_failures_of_a_fan_out_step(tmp_path):
    write_notebook(tmp_path / "p.ipynb", ["%load_ext mlpipe_jupyter",
                                          "%%step make --outputs nums\nnums = list(range(22))",
                                          SCORE])
    result = run_cli("run", "p.ipynb", "--executor", "local", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)[0]["id"]
    shown = json.loads(run_cli("show", run_id, "--json", cwd=tmp_path).stdout)
    make, score = shown["steps"]
    assert "batches" not in make and "failures" not in make  # not a fan-out step
    assert score["batches"] == {"total": 5, "succeeded": 3, "failed": 2, "cached": 0}
    assert [f["items"] for f in score["failures"]] == [[5, 9], [15, 19]]
    first = score["failures"][0]
    assert (first["ename"], first["evalue"], first["line"]) == ("ValueError", "bad batch 5", 2)
    assert "bad batch 5" in first["traceback"] and "----> 2" in first["traceback"]

    text = run_cli("show", run_id, cwd=tmp_path).stdout
    assert "score: 3/5 mini-batches succeeded, 2 failed, 0 reused" in text
    assert "items 5-9: ValueError: bad batch 5 (line 2)" in text
    assert "items 15-19: ValueError: bad batch 15 (line 2)" in text


def test_a_fan_out_step_reused_whole_shows_its_batches_as_reused(tmp_path):
    write_notebook(tmp_path / "p.ipynb", ["%load_ext mlpipe_jupyter",
                                          "%%step make --outputs nums\nnums = list(range(12))",
                                          SCORE.replace("--max-failures 2", "--max-failures 0")
                                          .replace("(5, 15)", "(-1,)")])
    for _ in range(2):
        result = run_cli("run", "p.ipynb", "--executor", "local", cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
    run_id = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)[0]["id"]
    score = json.loads(run_cli("show", run_id, "--json", cwd=tmp_path).stdout)["steps"][1]
    assert score["state"] == "cached"
    assert score["batches"] == {"total": 3, "succeeded": 3, "failed": 0, "cached": 3}
    assert score["failures"] == []


def test_a_fan_out_step_over_the_threshold_keeps_its_failures(tmp_path):
    write_notebook(tmp_path / "p.ipynb", ["%load_ext mlpipe_jupyter",
                                          "%%step make --outputs nums\nnums = list(range(22))",
                                          SCORE.replace("(5, 15)", "(0, 5, 15)")])
    result = run_cli("run", "p.ipynb", "--executor", "local", cwd=tmp_path)
    assert result.returncode != 0
    run_id = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)[0]["id"]
    score = json.loads(run_cli("show", run_id, "--json", cwd=tmp_path).stdout)["steps"][1]
    assert score["state"] == "failed"
    assert score["batches"]["failed"] == 3
    assert [f["items"] for f in score["failures"]] == [[0, 4], [5, 9], [15, 19]]
    text = run_cli("show", run_id, cwd=tmp_path).stdout
    assert "score: 2/5 mini-batches succeeded, 3 failed, 0 reused" in text
    assert "items 0-4: ValueError: bad batch 0 (line 2)" in text


def test_a_runner_adds_the_column_to_an_older_store(tmp_path):
    home = Home(tmp_path / ".mlpipe")
    home.root.mkdir()
    conn = sqlite3.connect(home.db)
    conn.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, notebook TEXT, pipeline TEXT, "
                 "state TEXT NOT NULL, reason TEXT, started REAL, finished REAL, params TEXT, "
                 "executor TEXT, host TEXT, pid INTEGER, pid_start TEXT)")
    conn.execute("CREATE TABLE steps (run_id TEXT NOT NULL, name TEXT NOT NULL, position "
                 "INTEGER, state TEXT NOT NULL, reason TEXT, started REAL, finished REAL, "
                 "error TEXT, attempt INTEGER, cache_key TEXT, key_parts TEXT, "
                 "reused_from TEXT, outputs TEXT, PRIMARY KEY (run_id, name))")
    conn.close()
    reader = RunStore(home.db, readonly=True)
    reader.close()
    assert "fanout" not in columns(home)  # a reader adds nothing
    RunStore(home.db).close()
    assert "fanout" in columns(home)


def columns(home: Home) -> set[str]:
    conn = sqlite3.connect(home.db)
    try:
        return {r[1] for r in conn.execute("PRAGMA table_info(steps)")}
    finally:
        conn.close()
