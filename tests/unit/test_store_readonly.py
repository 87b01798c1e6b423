"""Reading the run store writes nothing: a reader's open (`RunStore(db, readonly=True)`) leaves
the file's bytes, its mtime and its directory as they were, even with a dead runner's run in
it, works on a read-only mount, and refuses writes in one line; recovery is an explicit step.
Real SQLite files, real processes (a dead one's pid), a real read-only bind mount (root)."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlpipe_jupyter.home import Home
from mlpipe_jupyter.run.processes import Owner, boot_id, process_start
from mlpipe_jupyter.run.reaper import reap_home
from mlpipe_jupyter.run.store import RunStore
from mlpipe_jupyter.run.storecheck import StoreUnwritable


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def record(db: Path, run_id: str, *, state: str = "running") -> None:
    store = RunStore(db)
    store.on_run_started(run_id=run_id, notebook="p.ipynb", params={}, steps=["s"],
                         executor="local", started=time.time())
    store.on_step_state(run_id=run_id, step="s", state=state, at=time.time())
    if state != "running":
        store.on_run_finished(run_id=run_id, state=state, at=time.time())
    store.close()


def orphan(db: Path, run_id: str) -> None:
    """A run still `running` whose runner on this host is gone."""
    record(db, run_id)
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("UPDATE runs SET pid=?, pid_start='1' WHERE id=?", (dead_pid(), run_id))
    raw.close()


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / ".mlpipe")


def test_reading_writes_nothing_even_with_a_dead_runners_run(home):
    home.root.mkdir()
    record(home.db, "done", state="succeeded")
    orphan(home.db, "orphan")
    before = snapshot(home.root)
    dir_mtime = home.root.stat().st_mtime_ns
    reader = RunStore(home.db, readonly=True)
    assert {r["id"]: r["state"] for r in reader.runs()} == {"done": "succeeded",
                                                            "orphan": "running"}
    assert reader.run("orphan")["steps"][0]["state"] == "running"
    assert list(reader.interrupted()) == ["orphan"]  # told, not acted on
    with pytest.raises(StoreUnwritable, match="cannot be written"):
        reader.recover_interrupted()
    reader.close()
    assert snapshot(home.root) == before and home.root.stat().st_mtime_ns == dir_mtime
    runner_store = RunStore(home.db, recover=True)  # the runner's open recovers, explicitly
    assert runner_store.run("orphan")["state"] == "failed"
    assert runner_store.run("orphan")["reason"] == "interrupted"
    runner_store.close()


def test_a_reader_sees_what_a_live_writer_has_not_checkpointed(home):
    writer = RunStore(home.db)
    writer.on_run_started(run_id="live", notebook="p.ipynb", params={}, steps=["s"],
                          executor="local", started=time.time())
    try:
        names = sorted(p.name for p in home.root.iterdir())
        assert names == ["mlpipe.db", "mlpipe.db-shm", "mlpipe.db-wal"]
        db_bytes = home.db.read_bytes()
        reader = RunStore(home.db, readonly=True)
        assert [r["id"] for r in reader.runs()] == ["live"]
        reader.close()
        assert sorted(p.name for p in home.root.iterdir()) == names
        assert home.db.read_bytes() == db_bytes
    finally:
        writer.close()


def test_a_missing_store_reads_as_empty_and_is_not_created(home):
    reader = RunStore(home.db, readonly=True)
    assert reader.runs() == []
    with pytest.raises(StoreUnwritable):
        reader.on_run_started(run_id="r", notebook="p.ipynb", params={}, steps=["s"],
                              executor="local", started=time.time())
    reader.close()
    assert not home.root.exists()


OLD_SCHEMA = """
CREATE TABLE runs (id TEXT PRIMARY KEY, notebook TEXT, pipeline TEXT, state TEXT NOT NULL,
  reason TEXT, started REAL, finished REAL, params TEXT, executor TEXT, host TEXT, pid INTEGER,
  pid_start TEXT);
CREATE TABLE steps (run_id TEXT NOT NULL, name TEXT NOT NULL, position INTEGER,
  state TEXT NOT NULL, reason TEXT, started REAL, finished REAL, error TEXT, attempt INTEGER,
  cache_key TEXT, key_parts TEXT, reused_from TEXT, outputs TEXT, PRIMARY KEY (run_id, name));
INSERT INTO runs (id, notebook, state, started, params, host, pid) VALUES
  ('old', '/n/p.ipynb', 'running', 1, '{}', 'elsewhere', 1);
INSERT INTO steps (run_id, name, position, state, reason) VALUES
  ('old', 'fit', 0, 'succeeded', 'no earlier run');
"""


def test_an_older_store_is_read_as_it_is(home):
    home.root.mkdir()
    conn = sqlite3.connect(home.db)
    conn.executescript(OLD_SCHEMA)
    conn.close()
    before = snapshot(home.root)
    reader = RunStore(home.db, readonly=True)
    old = reader.run("old")
    assert old["experiment"] is None and old["params_changed"] is None
    assert old["steps"][0]["reasons"] == ["no earlier run"]
    assert reader.runs(experiment="e") == []  # a column it does not have: no run has it
    assert reader.interrupted() == {}  # another host, no heartbeat: cannot be told
    reader.close()
    assert snapshot(home.root) == before


@contextlib.contextmanager
def read_only(directory: Path):
    subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(directory)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_a_store_on_a_read_only_mount_is_read(home):
    home.root.mkdir()
    record(home.db, "done", state="succeeded")
    with read_only(home.root):
        reader = RunStore(home.db, readonly=True)
        assert [r["state"] for r in reader.runs()] == ["succeeded"]
        with pytest.raises(StoreUnwritable, match="read-only"):
            reader.on_run_finished(run_id="done", state="failed", at=time.time())
        reader.close()
        assert reap_home(home).runs == []  # nothing to recover: nothing tried


def test_reap_home_writes_only_when_a_runner_died(home):
    home.root.mkdir()
    record(home.db, "done", state="succeeded")
    before = snapshot(home.root)
    assert reap_home(home).runs == []
    assert snapshot(home.root) == before
    orphan(home.db, "orphan")
    staging = home.staging("orphan")
    staging.mkdir(parents=True)  # what it was publishing when it died
    assert reap_home(home).runs == ["orphan"]
    reader = RunStore(home.db, readonly=True)
    assert reader.run("orphan")["state"] == "failed"
    reader.close()
    assert not staging.exists()


def test_owner_labels_name_one_process():
    me = Owner.this()
    assert me.pid == os.getpid() and me.start == process_start(os.getpid())
    assert Owner.parse(me.label()) == me and me.alive() is True
    host = socket.gethostname()
    assert Owner(host, dead_pid(), None, boot_id()).alive() is False
    assert Owner(host, os.getpid(), "1", boot_id()).alive() is False  # its pid, reused
    assert Owner(host, os.getpid(), me.start, "an-earlier-boot").alive() is False
    assert Owner("another-host", os.getpid()).alive() is None
    assert Owner.parse(f"{host}:{os.getpid()}:{me.start}") == Owner(host, os.getpid(), me.start)
    assert Owner.parse("not a label") is None
