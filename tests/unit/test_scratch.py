"""Scratch directories carry their runner's pid; gc removes those of runners that are gone."""

from __future__ import annotations

import os
import subprocess

from mlpipe_jupyter.kernels.scratch import scratch_dir, sweep


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_scratch_dir_is_private_and_named_by_its_runner(tmp_path):
    path = scratch_dir("kernels", root=tmp_path)
    assert path.parent == tmp_path and path.name.startswith(f"mlpipe-kernels-{os.getpid()}-")
    assert path.stat().st_mode & 0o777 == 0o700


def test_sweep_removes_only_directories_of_dead_runners(tmp_path):
    dead = _dead_pid()
    gone = tmp_path / f"mlpipe-k-{dead}-abc123"
    (gone / "sub").mkdir(parents=True)
    (gone / "sub" / "kernel.json").write_text("{}")
    mine = scratch_dir("k", root=tmp_path)
    other = tmp_path / f"mlpipe-cache-{dead}"  # not a scratch name: no random part
    other.mkdir()
    a_file = tmp_path / f"mlpipe-k-{dead}-file"
    a_file.write_text("x")
    assert sweep(roots=(tmp_path,), dry_run=True) == [gone] and gone.exists()
    assert sweep(roots=(tmp_path,)) == [gone]
    assert not gone.exists() and mine.exists() and other.exists() and a_file.exists()
