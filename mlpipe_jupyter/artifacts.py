"""Content-addressed, immutable artifacts under `.mlpipe/artifacts/<sha256>/`.

An artifact directory holds `meta.json` and `data/`. Its digest is the sha256 of the meta and
of every file under data/ (relative path and content), so the same content is stored once.
Publishing is atomic: a staged directory is renamed into place, never written in place. A
published file is read-only (0444) and a directory 0755: no setuid bit, nobody else's to write.

What a step produced is copied in without following a symlink out of the directory the step
wrote it in (safefs.py): a file output that is a link is refused; a link inside a directory
output is kept as a link when it resolves inside that output, refused otherwise; a variable
holds no link at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import Any

from . import safefs
from .errors import NotFound

CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _entries(root: Path) -> list[Path]:
    """Every file and symlink under root, links never followed."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        found += [Path(dirpath, n) for n in dirnames + filenames
                  if os.path.islink(os.path.join(dirpath, n))]
        found += [Path(dirpath, n) for n in filenames
                  if not os.path.islink(os.path.join(dirpath, n))]
    return sorted(found)


def tree_digest(root: Path) -> str:
    """Digest of a directory: its files' relative paths and contents (a link's own text), in
    sorted order."""
    h = hashlib.sha256()
    for path in _entries(root):
        rel = path.relative_to(root).as_posix()
        content = (b"link:" + os.fsencode(os.readlink(path)) if path.is_symlink()
                   else file_digest(path).encode())
        h.update(rel.encode() + b"\0" + content + b"\n")
    return h.hexdigest()


class ArtifactStore:
    def __init__(self, root: Path, *, run_id: str = "any") -> None:
        self.root = Path(root)
        # staged per run, so that what a crashed run left half-written can be removed by id
        self._staging = self.root / ".staging" / run_id

    def path(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise NotFound(f"`{digest}` is not an artifact digest")
        return self.root / digest

    def exists(self, digest: str) -> bool:
        return (self.root / digest / "meta.json").is_file()

    def staging_dir(self) -> Path:
        path = self._staging / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    def publish(self, staged: Path) -> str:
        """Move a staged `meta.json` + `data/` directory into the store; return its digest."""
        digest = tree_digest(staged)
        final = self.root / digest
        if final.exists():
            shutil.rmtree(staged, ignore_errors=True)
            return digest
        for dirpath, dirnames, filenames in os.walk(staged):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                mode = os.lstat(path).st_mode
                if not stat.S_ISLNK(mode):
                    os.chmod(path, 0o755 if stat.S_ISDIR(mode) else 0o444)
        try:
            os.rename(staged, final)
        except OSError:  # another run published the same content first
            if not final.exists():
                raise
            shutil.rmtree(staged, ignore_errors=True)
        return digest

    def publish_variable(self, produced: Path) -> str:
        """`produced` is what runtime.save_outputs wrote for one variable."""
        staged = self.staging_dir()
        shutil.copytree(produced, staged, dirs_exist_ok=True)
        return self.publish(staged)

    def publish_file(self, source: Path, name: str) -> str:
        """A file or directory artifact, copied from where the step wrote it."""
        staged = self.staging_dir()
        data = staged / "data" / name.rstrip("/")
        data.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, data, symlinks=False)
        else:
            shutil.copyfile(source, data)
        kind = "directory" if source.is_dir() else "file"
        (staged / "meta.json").write_text(json.dumps({"kind": kind, "path": name.rstrip("/")}))
        return self.publish(staged)

    def publish_output(self, workdir: Path, item: str, *, label: str) -> str:
        """A file output of a step: `item` under its work dir, copied without following a link
        out of it (safefs.Refused says why not; FileNotFoundError when it is not there)."""
        name = item.rstrip("/")
        staged = self.staging_dir()
        data = staged / "data" / name
        data.parent.mkdir(parents=True, exist_ok=True)
        kind = safefs.copy_out(workdir, name, data, label=label, shown=f"{name}/", links=True)
        if kind == "directory":
            safefs.links_out_of(data, label=label, shown=f"{name}/")
        (staged / "meta.json").write_text(json.dumps({"kind": kind, "path": name}))
        return self.publish(staged)

    def publish_output_variable(self, outputs_dir: Path, name: str, *, label: str) -> str:
        """What runtime.save_outputs wrote for the variable `name` in a step's outputs dir, with
        no link anywhere in it. FileNotFoundError without its meta.json."""
        staged = self.staging_dir()
        os.rmdir(staged)
        safefs.copy_out(outputs_dir, name, staged, label=label, shown=f"{name}/", links=False)
        if not (staged / "meta.json").is_file():
            raise FileNotFoundError(f"{name}/meta.json")
        return self.publish(staged)

    def meta(self, digest: str) -> dict[str, Any]:
        try:
            return json.loads((self.path(digest) / "meta.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"artifact {digest[:12]} is not in {self.root}") from None

    def data_path(self, digest: str) -> Path:
        """The file or directory a file artifact holds (for mounting or copying)."""
        meta = self.meta(digest)
        return self.path(digest) / "data" / meta["path"]

    def load(self, digest: str) -> Any:
        """Bring a variable artifact back as a Python value."""
        from . import serializers

        meta = self.meta(digest)
        if meta["kind"] != "variable":
            return self.data_path(digest)
        ser = serializers.by_name(meta["serializer"])
        return ser.load(self.path(digest) / "data" / ser.filename)

    def clean_staging(self) -> None:
        """Drop what this store's run staged and never published (a crashed run)."""
        shutil.rmtree(self._staging, ignore_errors=True)
