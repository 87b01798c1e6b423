"""History must be written or the run stops; a damaged mlpipe.db is one line and `mlpipe doctor`
rebuilds it; a full disk fails the run cleanly. Real CLI subprocesses, a real SQLite file held
locked by another process, real tmpfs and read-only mounts (root), real kernels."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from mlpipe_jupyter.run.events import Broadcaster, RunListener
from mlpipe_jupyter.run.store import RunStore
from tests.conftest import MLPIPE, run_cli, wait_for, write_notebook

# `second` tells the test it runs, then waits for the test's go-ahead (a file)
WAITING = ["%%step first --outputs a\na = [1, 2]",
           "%%step second --inputs a --outputs b\nimport os, time\n"
           "open('../../second-running', 'w').write('1')\n"
           "while not os.path.exists('../../../../go'):\n    time.sleep(0.05)\nb = a + [3]"]


def start(cwd: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    full = {**os.environ, "COLUMNS": "200", **(env or {})}
    full.pop("MLPIPE_HOME", None)
    return subprocess.Popen([MLPIPE, "run", "p.ipynb", "--executor", "local", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full)


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def last_run(cwd: Path) -> dict:
    result = run_cli("runs", "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


@contextlib.contextmanager
def mounted(target: Path, *args: str):
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *args, str(target)], check=True)
    try:
        yield target
    finally:
        if subprocess.run(["umount", str(target)]).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], check=True)


# -- history must be written -------------------------------------------------------------------
def test_a_store_locked_by_another_process_stops_the_run(tmp_path):
    write_notebook(tmp_path / "p.ipynb", WAITING)
    proc = start(tmp_path, env={"MLPIPE_DB_TIMEOUT": "1"})
    holder = None
    try:
        wait_for(lambda: list((tmp_path / ".mlpipe/runs").glob("*/second-running")),
                 "step `second` to run")
        holder = sqlite3.connect(tmp_path / ".mlpipe/mlpipe.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        (tmp_path / ".mlpipe" / "go").write_text("")  # `second` goes on (../../../../go)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
    assert proc.returncode == 1, out + err
    assert errors(err) == [f"error: run store {tmp_path}/.mlpipe/mlpipe.db cannot be written: "
                           "another process has held it locked for more than 1 s "
                           "(MLPIPE_DB_TIMEOUT)"], err
    assert "succeeded in" not in out and "Traceback" not in err
    run = last_run(tmp_path)  # the runner is gone: its run is failed, never a ghost
    assert run["state"] == "failed"
    assert {s["name"]: s["state"] for s in run["steps"]}["first"] == "succeeded"
    assert all(s["state"] != "running" for s in run["steps"])


def test_a_read_only_store_fails_the_run_before_it_starts(tmp_path):
    write_notebook(tmp_path / "p.ipynb", ["%%step only --outputs a\na = 1"])
    assert run_cli("run", "p.ipynb", "--executor", "local", cwd=tmp_path).returncode == 0
    home = tmp_path / ".mlpipe"
    with mounted(home, "--bind", str(home)):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(home)], check=True)
        result = run_cli("run", "p.ipynb", "--executor", "local", "--no-cache", cwd=tmp_path)
        listed = run_cli("runs", "--json", cwd=tmp_path)  # a reader still reads it
    assert result.returncode == 1, result.stdout + result.stderr
    lines = errors(result.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"error: run store {home}/mlpipe.db cannot "
                                                   "be written: read-only"), result.stderr
    assert listed.returncode == 0, listed.stderr
    assert [r["state"] for r in json.loads(listed.stdout)] == ["succeeded"]


def test_a_failing_view_is_dropped_once_and_a_failing_store_is_raised():
    calls = []

    class Broken(RunListener):
        def on_step_log(self, **_):
            calls.append("broken")
            raise RuntimeError("view bug")

    class Essential(RunListener):
        essential = True

        def on_step_log(self, **_):
            raise OSError("store down")

    class Seen(RunListener):
        def on_step_log(self, **_):
            calls.append("seen")

    events = Broadcaster([Broken(), Seen()])
    events.on_step_log(run_id="r", step="s", line="1")
    events.on_step_log(run_id="r", step="s", line="2")
    assert calls == ["broken", "seen", "seen"] and events.failure is None
    store = Essential()
    events = Broadcaster([store, Seen()])
    with pytest.raises(OSError, match="store down"):
        events.on_step_log(run_id="r", step="s", line="3")
    assert events.failure is not None and store not in events.listeners
    assert calls[-1] == "seen"  # the others still got the event


# -- a damaged mlpipe.db -----------------------------------------------------------------------
def zero(db: Path) -> None:
    db.write_bytes(b"")


def truncate(db: Path) -> None:
    with open(db, "r+b") as fh:
        fh.truncate(db.stat().st_size - 1000)


def garble_header(db: Path) -> None:
    with open(db, "r+b") as fh:
        fh.write(b"not a database!!")


def malform_page(db: Path) -> None:
    page = int.from_bytes(db.read_bytes()[16:18], "big")
    with open(db, "r+b") as fh:  # the runs table's page (the first after the schema's)
        fh.seek(page)
        fh.write(b"\xff" * page)


@pytest.mark.parametrize("damage", [zero, truncate, garble_header, malform_page])
def test_a_damaged_store_is_one_line_and_doctor_rebuilds_it(tmp_path, damage):
    write_notebook(tmp_path / "p.ipynb", WAITING[:1] + ["%%step second --inputs a\n1 / 0"])
    assert run_cli("run", "p.ipynb", "--executor", "local", cwd=tmp_path).returncode == 1
    before = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)
    db = tmp_path / ".mlpipe" / "mlpipe.db"
    assert not Path(f"{db}-wal").exists()  # all in the file: the damage is to what is there
    damage(db)
    expected = (f"error: {db} is damaged (", f"): run `mlpipe doctor --home {db.parent}` to set "
                "it aside and rebuild")
    for args in (("runs",), ("runs", "--json"), ("show", before[0]["id"]),
                 ("run", "p.ipynb", "--executor", "local")):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected[0]) \
            and lines[0].endswith(expected[1]), (args, result.stderr)
        if args[0] != "run":  # `run` may have said which run it starts (a malformed page)
            assert result.stdout == ""  # never "no runs yet" (`[]`)
    fixed = run_cli("doctor", "--home", str(db.parent), cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    aside = [p for p in db.parent.iterdir() if p.name.startswith("mlpipe.db.damaged-")
             and not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and f"saved aside as {aside[0]}" in fixed.stdout
    after = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)
    assert [r["id"] for r in after] == [r["id"] for r in before]
    assert [(s["name"], s["state"]) for s in after[0]["steps"]] == \
        [(s["name"], s["state"]) for s in before[0]["steps"]] == [("first", "succeeded"),
                                                                  ("second", "failed")]
    assert "ZeroDivisionError" in after[0]["steps"][1]["reason"]
    assert run_cli("doctor", "--home", str(db.parent), cwd=tmp_path).stdout.strip() == \
        f"{db} is sound"
    rerun = run_cli("run", "p.ipynb", "--executor", "local", cwd=tmp_path)
    assert rerun.returncode == 1 and "Traceback" not in rerun.stderr  # a store again


def test_a_new_store_never_shows_as_a_zero_byte_file(tmp_path):
    db = tmp_path / "mlpipe.db"
    RunStore(db).close()
    assert db.stat().st_size > 0 and [p.name for p in tmp_path.iterdir()] == ["mlpipe.db"]


# -- disk full ---------------------------------------------------------------------------------
def test_disk_full_while_publishing_fails_the_run_and_leaves_nothing_half_written(tmp_path):
    home = tmp_path / "home"
    write_notebook(tmp_path / "p.ipynb", [
        "%%step big --outputs big.bin\nimport os\n"
        "open('big.bin', 'wb').write(os.urandom(2_500_000))"])
    with mounted(home, "-t", "tmpfs", "-o", "size=4m", "tmpfs"):
        result = run_cli("run", "p.ipynb", "--executor", "local", "--home", str(home),
                         cwd=tmp_path)
        run = json.loads(run_cli("runs", "--json", "--home", str(home),
                                 cwd=tmp_path).stdout)[0]
        artifacts = home / "artifacts"
        staging = list((artifacts / ".staging").glob("*/*"))
        published = [p for p in artifacts.iterdir() if not p.name.startswith(".")]
    assert result.returncode == 1, result.stdout + result.stderr
    assert "output `big.bin` could not be published: No space left on device" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert run["state"] == "failed" and run["steps"][0]["state"] == "failed"
    assert staging == [] and published == []  # nothing half-written, the space given back


def test_disk_full_while_writing_a_record_fails_the_run_in_one_line(tmp_path):
    home = tmp_path / "home"
    write_notebook(tmp_path / "p.ipynb", WAITING)
    with mounted(home, "-t", "tmpfs", "-o", "size=8m", "tmpfs"):
        proc = subprocess.Popen(
            [MLPIPE, "run", "p.ipynb", "--executor", "local", "--home", str(home)],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: list((home / "runs").glob("*/second-running")), "`second`")
            filler = home / "filler"
            with open(filler, "wb") as fh, contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            go = home / "go"
            with contextlib.suppress(OSError):
                go.write_text("")
            if not go.exists():  # no room even for an empty file's entry: make a little
                filler.write_bytes(b"\0" * 1)
                go.write_text("")
                with open(filler, "ab") as fh, contextlib.suppress(OSError):
                    while True:
                        fh.write(b"\0" * 4096)
                        fh.flush()
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        filler.unlink()
        run = json.loads(run_cli("runs", "--json", "--home", str(home), cwd=tmp_path).stdout)[0]
    assert proc.returncode == 1, out + err
    assert "succeeded in" not in out and "Traceback" not in out + err
    assert "disk is full" in out + err, out + err
    assert run["state"] == "failed"
    assert all(s["state"] != "running" for s in run["steps"])
