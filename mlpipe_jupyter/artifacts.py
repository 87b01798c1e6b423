"""Content-addressed, immutable artifacts under `.mlpipe/artifacts/<sha256>/`.

An artifact directory holds `meta.json` and `data/`. Its digest is the sha256 of the meta and
of every file under data/ (relative path and content), so the same content is stored once.
Publishing is atomic: a staged directory is renamed into place, never written in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from .errors import NotFound

CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(root: Path) -> str:
    """Digest of a directory: its files' relative paths and contents, in sorted order."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        h.update(rel.encode() + b"\0" + file_digest(path).encode() + b"\n")
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
        for path in staged.rglob("*"):
            if path.is_file():
                path.chmod(0o444)
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
