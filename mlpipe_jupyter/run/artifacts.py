"""Content-addressed, immutable artifacts under `.mlpipe/artifacts/<sha256>/`.

An artifact directory holds `meta.json` and `data/`. Its digest is the sha256 of the meta and
of every file under data/ (relative path and content), so the same content is stored once.
Publishing is atomic: a staged directory is renamed into place, never written in place. A
published file is read-only (0444) and a directory 0755: no setuid bit, nobody else's to write.

Artifacts are checked before they are trusted (`verify`): when reused from history and when a
step loads one as an input. The fast path compares each entry's size, mtime and type with the
stamp written at publish time (`.stamps/<digest>.json`); where they differ, or there is no
stamp, the content is hashed again. A damaged artifact is never reused: its step runs again,
and publishing the same digest over a damaged directory replaces it. `mlpipe verify` rehashes
everything.

What a step produced is copied in without following a symlink out of the directory the step
wrote it in (safefs.py): a file output that is a link is refused; a link inside a directory
output is kept as a link when it resolves inside that output, refused otherwise; a variable
holds no link at all, and its meta.json (which the step wrote) must name a serializer installed
here, with its data file, and no path.

Loading a variable runs its serializer's `load` on the host: a cloudpickle variable a step
produced (in a container too) runs whatever code that step put in it, in the process that calls
`run.load()` or `ArtifactStore.load`; load such a variable only from a step you would run locally.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import Any

from .. import safefs
from ..errors import NotFound, StepFailed
from ..model.spec import is_variable

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
    for dirpath, dirnames, filenames in safefs.walk(root):
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


def _fingerprint(root: Path) -> list[list]:
    """What the fast check compares: every entry's path, size, mtime and type, links not
    followed. Cheap (lstat only), and changed by any ordinary write."""
    out = []
    for path in _entries(root):
        st = os.lstat(path)
        out.append([path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns,
                    stat.S_IFMT(st.st_mode)])
    return out


KINDS = ("variable", "file", "directory")
VARIABLE_KEYS = {"kind", "serializer", "type"}
META_LIMIT = 1 << 20


def _relative(path: object) -> bool:
    """A path inside the artifact's data/: relative, no `..`, nothing odd."""
    return (isinstance(path, str) and path != "" and not path.startswith("/")
            and "\0" not in path and all(p not in ("", ".", "..") for p in path.split("/")))


def _check_variable(staged: Path, name: str, label: str) -> None:
    """Refused unless the meta.json a step wrote for a variable is what runtime.save_outputs
    writes: kind "variable", a serializer installed here, its data file a regular file, and no
    other field (no path: a variable's data is where its serializer says)."""
    from ..step import serializers

    where = f"{label}: its meta.json"
    meta_file = staged / "meta.json"
    if meta_file.lstat().st_size > META_LIMIT:
        raise safefs.Refused(f"{where} is larger than {META_LIMIT >> 20} MiB")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise safefs.Refused(f"{where} is not JSON ({err})") from None
    if not isinstance(meta, dict):
        raise safefs.Refused(f"{where} is not a JSON object")
    extra = sorted(set(meta) - VARIABLE_KEYS)
    if extra:
        raise safefs.Refused(f"{where} has fields a variable has not: "
                             + ", ".join(f"`{k}`" for k in extra))
    if meta.get("kind") != "variable":
        raise safefs.Refused(f"{where} says kind {meta.get('kind')!r}, not 'variable'")
    if not isinstance(meta.get("type", ""), str):
        raise safefs.Refused(f"{where} has a `type` that is not a string")
    try:
        ser = serializers.by_name(meta.get("serializer"))
    except LookupError:
        raise safefs.Refused(f"{where} names serializer {meta.get('serializer')!r}, which is not "
                             "installed here") from None
    data = staged / "data" / ser.filename
    try:
        mode = data.lstat().st_mode
    except FileNotFoundError:
        mode = 0
    if not stat.S_ISREG(mode):
        raise safefs.Refused(f"{label}: no data file `{name}/data/{ser.filename}` for its "
                             f"serializer {ser.name!r}")


class ArtifactStore:
    def __init__(self, root: Path, *, run_id: str = "any", staging: Path | None = None) -> None:
        self.root = Path(root)
        # staged per run (a runner passes home.staging(run_id)), so that what a crashed run
        # left half-written can be removed by id
        self._staging = staging or self.root / ".staging" / run_id

    def path(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise NotFound(f"`{digest}` is not an artifact digest")
        return self.root / digest

    def exists(self, digest: str) -> bool:
        return (self.root / digest / "meta.json").is_file()

    def _stamp(self, digest: str) -> Path:
        return self.root / ".stamps" / f"{digest}.json"

    def _write_stamp(self, digest: str, fingerprint: list[list]) -> None:
        stamp = self._stamp(digest)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_name(f".{stamp.name}.{uuid.uuid4().hex}")
        tmp.write_text(json.dumps(fingerprint))
        os.replace(tmp, stamp)

    def verify(self, digest: str, *, full: bool = False) -> str | None:
        """None when the artifact holds what its digest says; else what is wrong, in a few
        words. `full` rehashes even when the stamp matches."""
        final = self.path(digest)
        if not (final / "meta.json").is_file():
            return "missing" if not final.exists() else "meta.json missing"
        try:
            current = _fingerprint(final)
            if not full:
                try:
                    if json.loads(self._stamp(digest).read_text()) == current:
                        return None
                except (OSError, ValueError):
                    pass  # no stamp yet (an older store) or a damaged one: hash
            if tree_digest(final) != digest:
                return "content changed"
        except OSError as err:
            return f"unreadable ({err.strerror or err})"
        self._write_stamp(digest, current)
        return None

    def digests(self) -> list[str]:
        """Every artifact in the store."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if len(p.name) == 64 and not p.name.startswith("."))

    def staging_dir(self) -> Path:
        path = self._staging / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    @contextlib.contextmanager
    def _staged(self, *, make: bool = True):
        """A staging directory that is removed if publishing it fails (a full disk, a refused
        link): nothing half-copied stays behind, and the space is given back at once."""
        staged = self.staging_dir()
        if not make:
            os.rmdir(staged)
        try:
            yield staged
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise

    def publish(self, staged: Path) -> str:
        """Move a staged `meta.json` + `data/` directory into the store; return its digest."""
        digest = tree_digest(staged)
        final = self.root / digest
        if final.exists():
            if self.verify(digest) is None:
                shutil.rmtree(staged, ignore_errors=True)
                return digest
            self._set_aside(final)  # damaged: the staged copy replaces it
        for dirpath, dirnames, filenames in safefs.walk(staged):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                mode = os.lstat(path).st_mode
                if not stat.S_ISLNK(mode):
                    os.chmod(path, 0o755 if stat.S_ISDIR(mode) else 0o444)
        fingerprint = _fingerprint(staged)  # rename keeps sizes and mtimes
        try:
            os.rename(staged, final)
        except OSError:  # another run published the same content first
            if not final.exists():
                raise
            shutil.rmtree(staged, ignore_errors=True)
            return digest
        self._write_stamp(digest, fingerprint)
        return digest

    def _set_aside(self, final: Path) -> None:
        """Move a damaged artifact out of the way (atomically), then delete it."""
        aside = self.root / ".damaged" / f"{final.name}-{uuid.uuid4().hex}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(final, aside)
        except FileNotFoundError:  # another run set it aside first
            return
        shutil.rmtree(aside, ignore_errors=True)

    def publish_file(self, source: Path, name: str) -> str:
        """A file or directory artifact, copied from where the step wrote it."""
        with self._staged() as staged:
            data = staged / "data" / name.rstrip("/")
            data.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, data, symlinks=False)
            else:
                shutil.copyfile(source, data)
            kind = "directory" if source.is_dir() else "file"
            (staged / "meta.json").write_text(json.dumps({"kind": kind,
                                                          "path": name.rstrip("/")}))
            return self.publish(staged)

    def publish_output(self, workdir: Path, item: str, *, label: str) -> str:
        """A file output of a step: `item` under its work dir, copied without following a link
        out of it (safefs.Refused says why not; FileNotFoundError when it is not there)."""
        name = item.rstrip("/")
        with self._staged() as staged:
            data = staged / "data" / name
            data.parent.mkdir(parents=True, exist_ok=True)
            kind = safefs.copy_out(workdir, name, data, label=label, shown=f"{name}/",
                                   links=True)
            if kind == "directory":
                safefs.links_out_of(data, label=label, shown=f"{name}/")
            (staged / "meta.json").write_text(json.dumps({"kind": kind, "path": name}))
            return self.publish(staged)

    def publish_output_variable(self, outputs_dir: Path, name: str, *, label: str) -> str:
        """What runtime.save_outputs wrote for the variable `name` in a step's outputs dir, with
        no link anywhere in it. FileNotFoundError without its meta.json."""
        with self._staged(make=False) as staged:
            safefs.copy_out(outputs_dir, name, staged, label=label, shown=f"{name}/",
                            links=False)
            if not (staged / "meta.json").is_file():
                raise FileNotFoundError(f"{name}/meta.json")
            _check_variable(staged, name, label)
            return self.publish(staged)

    def publish_step_outputs(self, step: str, outputs: tuple[str, ...], workdir: Path,
                             outputs_dir: Path) -> dict[str, str]:
        """Publish what step `step` declared (variables from `outputs_dir`, files from
        `workdir`), never through a symlink it left: each problem is one StepFailed line."""
        published = {}
        for item in outputs:
            label = f"output `{item}`"
            try:
                if is_variable(item):
                    published[item] = self.publish_output_variable(outputs_dir, item,
                                                                   label=label)
                else:
                    published[item] = self.publish_output(workdir, item, label=label)
                    safefs.dangling_links(self.data_path(published[item]), item, label=label)
            except FileNotFoundError:
                raise StepFailed(f"step `{step}` did not produce its declared output `{item}`",
                                 step=step, cell="the outputs cell") from None
            except safefs.Refused as err:
                raise StepFailed(f"step `{step}`: {err}", step=step, file=item,
                                 cause="unsafe-output") from None
            except OSError as err:  # unreadable, or changed while it was read
                raise StepFailed(f"step `{step}`: {label} could not be published: "
                                 f"{err.strerror or err}", step=step, file=item) from None
        return published

    def meta(self, digest: str) -> dict[str, Any]:
        """The artifact's meta.json; NotFound when it is not one mlpipe could have written (a
        `path` absolute or climbing out of the artifact, among others)."""
        try:
            meta = json.loads((self.path(digest) / "meta.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"artifact {digest[:12]} is not in {self.root}") from None
        except (OSError, ValueError) as err:
            raise NotFound(f"artifact {digest[:12]}: unreadable meta.json ({err})") from None
        path = meta.get("path") if isinstance(meta, dict) else None
        if not isinstance(meta, dict) or meta.get("kind") not in KINDS or (
                meta["kind"] == "variable") != (path is None) or (
                path is not None and not _relative(path)):
            raise NotFound(f"artifact {digest[:12]}: its meta.json is not an artifact's "
                           f"(kind {meta.get('kind') if isinstance(meta, dict) else None!r}, "
                           f"path {path!r})")
        return meta

    def data_path(self, digest: str) -> Path:
        """The file or directory a file artifact holds (for mounting or copying)."""
        meta = self.meta(digest)
        if meta["kind"] == "variable":
            raise NotFound(f"artifact {digest[:12]} is a variable, not a file")
        return self.path(digest) / "data" / meta["path"]

    def load(self, digest: str) -> Any:
        """Bring a variable artifact back as a Python value."""
        from ..step import serializers

        meta = self.meta(digest)
        if meta["kind"] != "variable":
            return self.data_path(digest)
        try:
            ser = serializers.by_name(meta.get("serializer"))
        except LookupError as err:
            raise NotFound(f"artifact {digest[:12]}: {err}") from None
        return ser.load(self.path(digest) / "data" / ser.filename)

    def clean_staging(self) -> None:
        """Drop what this store's run staged and never published (a crashed run)."""
        shutil.rmtree(self._staging, ignore_errors=True)
