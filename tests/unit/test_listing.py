"""The pure pieces behind `mlpipe runs/show/logs` and `.mlpipe/latest/`: reasons, sizes, column
fitting, parameter diffs, reuse chains, the store's added columns, the latest directory."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from mlpipe_jupyter.errors import NotFound
from mlpipe_jupyter.home import Home
from mlpipe_jupyter.model.cache import miss_reason, miss_reasons, short_reason
from mlpipe_jupyter.run import latest as latest_module
from mlpipe_jupyter.run.artifacts import ArtifactStore
from mlpipe_jupyter.run.latest import MANIFEST, publish_run, update_latest
from mlpipe_jupyter.run.store import RunStore, changed_params
from mlpipe_jupyter.ui.listing import (
    artifact_entry,
    ellipsize,
    fit_columns,
    format_params,
    human_size,
    reuse_origin,
    runs_lines,
    step_counts,
)

PARTS = {"code": "c1", "setup": "s", "params": {"alpha": "a1"}, "inputs": {"raw": "d1"},
         "outputs": ["x"], "env": "e", "environment": "local:1", "runtime": "0.1"}


def test_every_miss_reason_is_kept_and_the_short_form_counts_the_rest():
    new = {**PARTS, "code": "c2", "params": {"alpha": "a2"}, "inputs": {"raw": "d2"}}
    reasons = miss_reasons(PARTS, new)
    assert reasons == ["code changed", "input `raw` changed", "parameter `alpha` changed"]
    assert miss_reason(PARTS, new) == "code changed (and 2 more)"
    assert short_reason(["code changed"]) == "code changed"
    assert miss_reasons(None, PARTS) == ["no earlier run"]
    assert miss_reasons(PARTS, dict(PARTS)) == ["earlier result no longer available"]


@pytest.mark.parametrize("size, text", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                        (1536, "1.5 KiB"), (5 * 2 ** 30, "5.0 GiB"),
                                        (None, "?")])
def test_human_size(size, text):
    assert human_size(size) == text


def test_ellipsize_counts_terminal_cells():
    assert ellipsize("wine_quality", 20) == "wine_quality"
    assert ellipsize("wine_quality", 8) == "wine_qu…"
    assert ellipsize("数据数据", 5) == "数据…"  # two cells each
    assert ellipsize("abc", 0) == ""


def test_param_diffs():
    assert changed_params({"alpha": 2, "name": "x"}, {"alpha": 1, "name": "x"}) == {"alpha": 2}
    assert changed_params({"a": [1, 2]}, {"a": [1, 2]}) == {}
    assert format_params({"alpha": 0.05, "name": "big"}) == "alpha=0.05 name='big'"
    assert format_params({}) == ""
    assert format_params(None) == "?"


def _run(i: int, **kw) -> dict:
    return {"id": f"20250101-12000{i}-abcde{i}", "notebook": "/data/wine_quality.ipynb",
            "state": "succeeded", "started": "2025-01-01T12:00:00.000",
            "steps": [{"state": "succeeded"}, {"state": "cached"}, {"state": "cached"}],
            "params_changed": {}, **kw}


def test_runs_lines_fit_the_width_and_cut_only_notebook_and_params():
    runs = [_run(1, params_changed={"learning_rate": 0.05, "comment": "x" * 80}),
            _run(2, notebook="/n/a_notebook_with_a_very_long_name_indeed.ipynb",
                 state="failed", steps=[{"state": "failed"}, {"state": "skipped"}]),
            _run(3, params_changed=None)]
    for width in (80, 100, 64):
        lines = ["  ".join(cells).rstrip() for cells in runs_lines(runs, width)]
        assert len(lines) == 4
        assert all(len(line) <= width for line in lines), (width, lines)
        for run, line in zip(runs, lines[1:], strict=True):
            assert line.startswith(run["id"] + "  ")  # never cut
            assert "01-01 12:00" in line
    at80 = ["  ".join(cells).rstrip() for cells in runs_lines(runs, 80)]
    assert at80[1].endswith("  learning_rate=…")  # the notebook column gave up room first
    at100 = ["  ".join(cells).rstrip() for cells in runs_lines(runs, 100)]
    assert "learning_rate=0.05 comment='xx" in at100[1] and at100[1].endswith("…")
    assert "  a_noteb…  " in at80[2] and "1✘ 1⤼" in at80[2]
    assert at80[3].endswith("?")
    wide = ["  ".join(cells).rstrip() for cells in runs_lines(runs[2:], 200)]
    assert wide[1].split()[1] == "wine_quality" and "…" not in wide[1]


def test_fit_columns_gives_up_room_in_column_order():
    rows = [["aaaa", "bbbbbbbb", "cccccccccc"]]
    flexible = {1: (6, 3), 2: (8, 2)}
    assert fit_columns(rows, 100, flexible) == [4, 8, 10]
    assert fit_columns(rows, 4 + 7 + 10 + 4, flexible) == [4, 7, 10]
    assert fit_columns(rows, 4 + 6 + 9 + 4, flexible) == [4, 6, 9]  # both to what they keep
    assert fit_columns(rows, 4 + 5 + 8 + 4, flexible) == [4, 5, 8]  # then below it
    assert fit_columns(rows, 4 + 3 + 7 + 4, flexible) == [4, 3, 7]
    assert fit_columns(rows, 4 + 3 + 2 + 4, flexible) == [4, 3, 2]
    assert fit_columns(rows, 5, flexible) == [4, 3, 2]  # never below the least


def test_step_counts_in_a_fixed_order():
    steps = [{"state": s} for s in ("cached", "succeeded", "failed", "succeeded")]
    assert step_counts(steps) == "2✔ 1↺ 1✘"


def test_reuse_origin_follows_chains_and_stops_at_a_missing_run():
    runs = {
        "r3": {"steps": [{"name": "fit", "state": "cached", "reused_from": "r2"}]},
        "r2": {"steps": [{"name": "fit", "state": "cached", "reused_from": "r1"}]},
        "r1": {"steps": [{"name": "fit", "state": "succeeded", "reused_from": None}]},
        "loop": {"steps": [{"name": "fit", "state": "cached", "reused_from": "loop"}]},
    }

    def lookup(run_id):
        if run_id not in runs:
            raise NotFound(run_id)
        return runs[run_id]

    assert reuse_origin(lookup, "fit", "r3") == "r1"
    assert reuse_origin(lookup, "fit", "gone") == "gone"
    assert reuse_origin(lookup, "fit", "loop") == "loop"


def test_artifact_entry_paths_and_sizes(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    report = tmp_path / "report.txt"
    report.write_text("12345")
    digest = store.publish_file(report, "reports/report.txt")
    path, size = artifact_entry(store.root, digest)
    assert path == store.root / digest / "data/reports/report.txt" and size == 5
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"x" * 10)
    (folder / "b.png").write_bytes(b"x" * 20)
    path, size = artifact_entry(store.root, store.publish_file(folder, "plots/"))
    assert path.name == "plots" and size == 30
    produced = tmp_path / "out"
    (produced / "data").mkdir(parents=True)
    (produced / "meta.json").write_text(json.dumps({"kind": "variable", "serializer": "json"}))
    (produced / "data/value.json").write_text("[1, 2]")
    variable = store.publish_output_variable(tmp_path, "out", label="output `out`")
    path, size = artifact_entry(store.root, variable)
    assert path.name == "value.json" and size == 6
    assert artifact_entry(store.root, "0" * 64) == (store.root / ("0" * 64), None)


OLD_SCHEMA = """
CREATE TABLE runs (id TEXT PRIMARY KEY, notebook TEXT, pipeline TEXT, state TEXT NOT NULL,
  reason TEXT, started REAL, finished REAL, params TEXT, executor TEXT, host TEXT, pid INTEGER,
  pid_start TEXT);
CREATE TABLE steps (run_id TEXT NOT NULL REFERENCES runs(id), name TEXT NOT NULL,
  position INTEGER, state TEXT NOT NULL, reason TEXT, started REAL, finished REAL, error TEXT,
  attempt INTEGER, cache_key TEXT, key_parts TEXT, reused_from TEXT, outputs TEXT,
  PRIMARY KEY (run_id, name));
INSERT INTO runs (id, notebook, state, started, params) VALUES
  ('old', '/n/p.ipynb', 'succeeded', 1, '{"alpha": 2}');
INSERT INTO steps (run_id, name, position, state, reason) VALUES
  ('old', 'fit', 0, 'succeeded', 'code changed (and 1 more)');
"""


def test_an_older_db_gets_the_new_columns_and_keeps_its_runs(tmp_path):
    db = tmp_path / "mlpipe.db"
    conn = sqlite3.connect(db)
    conn.executescript(OLD_SCHEMA)
    conn.close()
    store = RunStore(db)
    old = store.run("old")
    assert old["params"] == {"alpha": 2} and old["params_changed"] is None
    assert old["steps"][0]["reasons"] == ["code changed (and 1 more)"]
    store.on_run_started(run_id="new", notebook="/n/p.ipynb", params={"alpha": 3},
                         steps=["fit"], executor="local", started=2, defaults={"alpha": 2})
    store.on_step_state(run_id="new", step="fit", state="running", at=2,
                        reason="code changed (and 1 more)",
                        reasons=["code changed", "parameter `alpha` changed"])
    store.on_step_state(run_id="new", step="fit", state="failed", at=3, reason="boom",
                        error={"message": "boom"})
    store.close()
    again = RunStore(db)  # opened a second time: nothing to add
    new = again.run("new")
    again.close()
    assert new["params_changed"] == {"alpha": 3} and new["param_defaults"] == {"alpha": 2}
    # the failure's message replaced the short reason; the reasons it ran are kept
    assert new["steps"][0]["reasons"] == ["code changed", "parameter `alpha` changed"]


def _artifact(store: ArtifactStore, tmp_path, name: str, text: str):
    source = tmp_path / "src" / name
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(text)
    return store.data_path(store.publish_file(source, name))


def test_latest_holds_copies_and_is_swapped_whole(tmp_path):
    home = Home(tmp_path / ".mlpipe").ensure()
    store = ArtifactStore(home.artifacts)
    first = {"reports/m.json": _artifact(store, tmp_path, "reports/m.json", "1"),
             "old.txt": _artifact(store, tmp_path, "old.txt", "old")}
    link = update_latest(home, "wine", "run1", first)
    assert link == home.latest("wine") == home.root / "latest/wine"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    copy = link / "reports/m.json"
    assert copy.read_text() == "1" and not copy.is_symlink()
    assert copy.stat().st_ino != first["reports/m.json"].stat().st_ino  # not a hard link
    assert json.loads((link / MANIFEST).read_text())["run"] == "run1"

    update_latest(home, "wine", "run2", {"reports/m.json": _artifact(store, tmp_path,
                                                                     "reports/m.json", "2")})
    assert (link / "reports/m.json").read_text() == "2" and not (link / "old.txt").exists()
    update_latest(home, "wine", "run3", {})
    versions = sorted(p.name for p in (link.parent / ".versions/wine").iterdir())
    assert versions == ["run2", "run3"]  # the one replaced last stays, for a reader inside it
    assert first["reports/m.json"].read_text() == "1"  # the store is untouched


def test_until_the_swap_readers_see_the_previous_run_whole(tmp_path, monkeypatch):
    home = Home(tmp_path / ".mlpipe").ensure()
    store = ArtifactStore(home.artifacts)
    files = {f"f{i}.txt": _artifact(store, tmp_path, f"f{i}.txt", str(i)) for i in range(5)}
    update_latest(home, "nb", "run0", files)
    seen = []
    copy = latest_module._copy

    def observed_copy(source, dest):  # what a reader finds while the new run's dir is filled
        link = home.latest("nb")
        seen.append((json.loads((link / MANIFEST).read_text())["run"],
                     sorted(p.name for p in link.iterdir())))
        copy(source, dest)

    monkeypatch.setattr(latest_module, "_copy", observed_copy)
    update_latest(home, "nb", "run1", files)
    assert seen == [("run0", [MANIFEST, *sorted(files)])] * 5
    assert json.loads((home.latest("nb") / MANIFEST).read_text())["run"] == "run1"


def test_publish_run_copies_file_outputs_only_and_logs_a_failure(tmp_path):
    home = Home(tmp_path / ".mlpipe").ensure()
    store = ArtifactStore(home.artifacts)
    report = tmp_path / "report.txt"
    report.write_text("r")
    produced = tmp_path / "out"
    (produced / "data").mkdir(parents=True)
    (produced / "meta.json").write_text(json.dumps({"kind": "variable", "serializer": "json"}))
    (produced / "data/value.json").write_text("1")
    model = store.publish_output_variable(tmp_path, "out", label="output `out`")
    outputs = {"fit": {"model": model},
               "report": {"reports/r.txt": store.publish_file(report, "reports/r.txt")}}
    logged = []
    link = publish_run(home, "/nb/wine.ipynb", "run1", store, outputs, log=logged.append)
    assert link == home.latest("wine") and logged == []
    assert sorted(p.name for p in link.iterdir()) == [MANIFEST, "reports"]
    blocked = home.latest("other")
    (blocked / "mine").mkdir(parents=True)  # a directory of the user's where the link goes
    assert publish_run(home, "/nb/other.ipynb", "run2", store, outputs, log=logged.append) is None
    assert len(logged) == 1 and logged[0].startswith(f"could not update {blocked}: ")
    assert (blocked / "mine").is_dir()
    assert list((blocked.parent / ".versions/other").iterdir()) == []
    # an output whose artifact is gone: one line logged, the run stands (nothing raised)
    gone = {"report": {"reports/r.txt": "0" * 64}}
    assert publish_run(home, "/nb/gone.ipynb", "run3", store, gone, log=logged.append) is None
    assert len(logged) == 2 and logged[1].startswith("could not update ")
    assert "is not in" in logged[1]


def test_latest_names_are_safe():
    home = Home(Path("/h"))
    assert home.latest("<kernel>").name == "_kernel_"
    assert home.latest(".hidden").name == "hidden"
    assert home.latest("").name == "notebook"
