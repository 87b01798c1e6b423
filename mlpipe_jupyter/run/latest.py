"""`<home>/latest/<notebook stem>/`: the file outputs of a notebook's last successful run.

`latest/<stem>` is a symlink to `latest/.versions/<stem>/<run_id>/`, a directory of copies of
that run's file outputs at the paths the steps wrote them (`reports/metrics.json`) and
`.mlpipe-run.json` naming the run. A new run's directory is filled first, then the symlink is
swapped with os.replace: a reader sees the old run's files or the new run's, never a mix or a
half-made directory. The directory it replaced stays until the next swap, so a reader that
was inside it when it was replaced can finish; older ones are removed.

Copies, not links into the artifact store: artifacts are content-addressed and immutable, and
reuse trusts that. A symlink or hard link hands the user the artifact itself; an editor that
writes in place (vim writes through a symlink, `:w!` makes a read-only file writable first)
would change it under its digest, and later runs would reuse the edited content as if it were
the original, silently. A copy can be edited or deleted with no effect but on itself. Copies
keep the artifacts' read-only mode, a hint that the next successful run replaces them. The
cost is disk space: two runs' file outputs per notebook at most (the latest, the one before).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import MlpipeError
from ..home import Home
from ..model.spec import is_variable
from .artifacts import ArtifactStore

MANIFEST = ".mlpipe-run.json"
VERSIONS = ".versions"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One update of a notebook's latest directory at a time (runs of it finishing together)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, dest, dirs_exist_ok=True)
    else:
        shutil.copy2(source, dest)


def update_latest(home: Home, pipeline: str, run_id: str, files: dict[str, Path]) -> Path:
    """Make `home.latest(pipeline)` hold `files` (output name -> its data in the artifact
    store) of run `run_id`; return that path."""
    link = home.latest(pipeline)
    versions = link.parent / VERSIONS / link.name
    versions.mkdir(parents=True, exist_ok=True)
    with _locked(link.parent / VERSIONS / f"{link.name}.lock"):
        target = versions / run_id
        shutil.rmtree(target, ignore_errors=True)  # a half-made one, from a crash in here
        target.mkdir()
        for item, source in sorted(files.items()):
            _copy(source, target / item.rstrip("/"))
        (target / MANIFEST).write_text(json.dumps(
            {"run": run_id, "pipeline": pipeline, "files": sorted(files)}, indent=1) + "\n")
        try:
            previous = Path(os.readlink(link)).name
        except OSError:
            previous = None
        staged = link.with_name(f".{link.name}.{uuid.uuid4().hex}")
        os.symlink(Path(VERSIONS, link.name, run_id), staged)
        try:
            os.replace(staged, link)
        except OSError:
            staged.unlink()
            shutil.rmtree(target, ignore_errors=True)
            raise
        for old in versions.iterdir():
            if old.name not in (run_id, previous):
                shutil.rmtree(old, ignore_errors=True)
    return link


def publish_run(home: Home, notebook: str, run_id: str, artifacts: ArtifactStore,
                outputs: dict[str, dict[str, str]], log: Callable[[str], None]) -> Path | None:
    """After run `run_id` of `notebook` succeeded: its file outputs (step -> output -> digest in
    the ArtifactStore `artifacts`) become the notebook's latest. A failure to copy them is
    logged, not raised: the run stands."""
    pipeline = Path(notebook).stem
    try:
        files = {item: artifacts.data_path(digest) for produced in outputs.values()
                 for item, digest in produced.items() if not is_variable(item)}
        return update_latest(home, pipeline, run_id, files)
    except (OSError, MlpipeError) as err:
        log(f"could not update {home.latest(pipeline)}: {err}")
        return None
