"""The artifact store checks itself: a damaged or missing artifact is never reused silently, a
step never loads a damaged input, publishing repairs, `mlpipe verify` rehashes. Real CLI, real
kernels, real files."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

from mlpipe_jupyter.model.notebook import read_pipeline
from mlpipe_jupyter.run.artifacts import ArtifactStore
from mlpipe_jupyter.run.events import RunListener
from mlpipe_jupyter.run.runner import PipelineRunner, RunOptions
from tests.conftest import run_cli, write_notebook

CELLS = ["%%step make --outputs x report.txt\nx = list(range(5))\n"
         "open('report.txt', 'w').write('all good')",
         "%%step use --outputs y\ny = sum(x)"]


def last_run(directory: Path) -> dict:
    return json.loads(run_cli("runs", "--json", cwd=directory).stdout)[0]


def step(run: dict, name: str) -> dict:
    return next(s for s in run["steps"] if s["name"] == name)


def overwrite(path: Path, content: str, *, keep_stat: bool = False) -> None:
    """Change a published (read-only) file as a stray tool or a user would."""
    before = path.stat()
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    path.write_text(content)
    os.chmod(path, 0o444)
    if keep_stat:  # a change the fast check cannot see: same size and mtime
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def first_run(directory: Path) -> tuple[dict, ArtifactStore]:
    write_notebook(directory / "p.ipynb", CELLS)
    result = run_cli("run", "p.ipynb", "--executor", "local", cwd=directory)
    assert result.returncode == 0, result.stderr + result.stdout
    return last_run(directory), ArtifactStore(directory / ".mlpipe" / "artifacts")


def test_a_damaged_artifact_reruns_its_step_and_is_rewritten(notebook_dir):
    run, store = first_run(notebook_dir)
    report = step(run, "make")["outputs"]["report.txt"]
    target = store.data_path(report)
    overwrite(target, "tampered")
    assert store.verify(report) == "content changed"

    again = run_cli("run", "p.ipynb", "--executor", "local", cwd=notebook_dir)
    assert again.returncode == 0, again.stderr + again.stdout
    run = last_run(notebook_dir)
    made = step(run, "make")
    assert made["state"] == "succeeded"
    assert made["reasons"] == ["artifact of `report.txt` damaged"]
    assert step(run, "use")["state"] == "cached"  # x was intact: same digest, reused
    # the same content was published again over the damaged directory: repaired
    assert made["outputs"]["report.txt"] == report
    assert target.read_text() == "all good" and store.verify(report, full=True) is None


def test_a_missing_artifact_reruns_its_step(notebook_dir):
    run, store = first_run(notebook_dir)
    x = step(run, "make")["outputs"]["x"]
    shutil.rmtree(store.path(x))
    again = run_cli("run", "p.ipynb", "--executor", "local", cwd=notebook_dir)
    assert again.returncode == 0, again.stderr + again.stdout
    made = step(last_run(notebook_dir), "make")
    assert made["reasons"] == ["artifact of `x` damaged"]
    assert store.load(x) == [0, 1, 2, 3, 4]


def test_mlpipe_verify_rehashes_what_the_fast_check_cannot_see(notebook_dir):
    run, store = first_run(notebook_dir)
    ok = run_cli("verify", cwd=notebook_dir)
    assert ok.returncode == 0 and "all intact" in ok.stdout
    report = step(run, "make")["outputs"]["report.txt"]
    overwrite(store.data_path(report), "all bad!", keep_stat=True)  # same size, same mtime
    assert store.verify(report) is None  # the fast path trusts size and mtime
    bad = run_cli("verify", cwd=notebook_dir)
    assert bad.returncode == 1
    assert f"damaged: {store.path(report)} (content changed)" in bad.stdout
    listed = json.loads(run_cli("verify", "--json", cwd=notebook_dir).stdout)
    assert [d["digest"] for d in listed["damaged"]] == [report]
    assert listed["checked"] == len(store.digests()) >= 3


def test_a_step_never_loads_a_damaged_input(notebook_dir):
    """Damaged between the step that made it and the step that reads it, in one run."""
    notebook = write_notebook(notebook_dir / "p.ipynb", CELLS)

    class Vandal(RunListener):
        def on_step_state(self, *, step, state, outputs=None, **_) -> None:
            if step == "make" and state == "succeeded":
                store = ArtifactStore(notebook_dir / ".mlpipe" / "artifacts")
                data = store.path(outputs["x"]) / "data"
                overwrite(next(p for p in data.iterdir() if p.is_file()), "[9]")

    runner = PipelineRunner(read_pipeline(notebook), notebook=str(notebook),
                            base_dir=notebook_dir, options=RunOptions(executor="local"),
                            listeners=[Vandal()])
    assert runner.run() == "failed"
    run = last_run(notebook_dir)
    used = step(run, "use")
    assert used["state"] == "failed"
    assert used["error"]["message"].startswith("step `use`: input `x` is damaged in the "
                                               "artifact store (content changed")


def test_publishing_over_a_damaged_directory_repairs_it(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    source = tmp_path / "m.csv"
    source.write_text("a,b\n1,2\n")
    digest = store.publish_file(source, "m.csv")
    overwrite(store.data_path(digest), "a,b\n9,9\n")
    assert store.verify(digest) == "content changed"
    assert store.publish_file(source, "m.csv") == digest
    assert store.data_path(digest).read_text() == "a,b\n1,2\n"
    assert store.verify(digest, full=True) is None
