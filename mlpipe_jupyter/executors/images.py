"""Runtime images for the `docker` executor: built once, tagged by what they contain, reused.

A runtime image is `FROM` a base image (`base-image` in `[tool.mlpipe]` or MLPIPE_BASE_IMAGE;
unset, the first of DEFAULT_BASES the engine has, else `python:3.11-slim` pulled) plus a venv
at /opt/mlpipe with papermill, ipykernel and cloudpickle at the host's versions, the
pipeline's requirements, and this package at the same version, copied from the running source.
Its tag `mlpipe-runtime:<hash16>` is a hash of the Dockerfile text, the base image's id, the
package files and the requirements, so the same inputs find the same image and any change
builds a new one.

The Dockerfile is ordered so that Docker's layer cache does most of the work: the papermill layer
is shared by every runtime image of a base, and a change of this package alone only redoes the
last, small layer.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ExecutorError, UsageError
from ..model.spec import PipelineSpec
from ..step.lines import LineBuffer

REPOSITORY = "mlpipe-runtime"
# Tried in order when no base image is configured: the official image users pull, then the one
# scripts/setup-docker.sh builds with debootstrap where no registry is reachable. The home-made
# one has a name of our own, so it can never shadow the official image on a user's machine.
DEFAULT_BASES = ("python:3.11-slim", "mlpipe-base:bookworm-py3.11")
RUNTIME_LABEL = "mlpipe.runtime"  # set on every image this module builds
PACKAGE_LABEL = "mlpipe.package"  # the package_digest() it was built with
VENV = "/opt/mlpipe"
PYTHON = f"{VENV}/bin/python"
# What every step kernel needs; pinned to the host's versions so that a step behaves in a
# container as it does locally, and so that cloudpickled artifacts load on both sides.
RUNTIME_PACKAGES = ("papermill", "ipykernel", "cloudpickle")
# pip options that name other files cannot work inside the build context
_LOCAL_FILE_OPTIONS = ("-r", "--requirement", "-c", "--constraint", "-e", "--editable")

Log = Callable[[str], None]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _pins() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in RUNTIME_PACKAGES:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


@lru_cache(maxsize=1)
def package_files() -> tuple[tuple[str, bytes], ...]:
    """This package's source files (relative path, content): what goes into the image."""
    root = Path(__file__).resolve().parent.parent  # the whole mlpipe_jupyter package
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc":
            files.append((rel.as_posix(), path.read_bytes()))
    return tuple(files)


def package_digest() -> str:
    """A hash of this package's files: runtime images built from other files are stale."""
    h = hashlib.sha256()
    for rel, content in package_files():
        h.update(rel.encode() + b"\0" + hashlib.sha256(content).digest())
    return h.hexdigest()


# The package is installed from a copy of its source with this minimal metadata, never with its
# host-side dependencies (docker, anywidget, jupyterlab...): a step needs only papermill's.
PACKAGE_PYPROJECT = f"""\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "mlpipe-jupyter"
version = "{__version__}"
requires-python = ">=3.8"

[tool.setuptools.packages.find]
include = ["mlpipe_jupyter*"]

[tool.setuptools.package-data]
"*" = ["*"]
"""


def pipeline_requirements(spec: PipelineSpec, base_dir: Path) -> str:
    """One requirements text from `--requirements FILE`, a `requirements.txt` beside the
    notebook and `--pip PKG ...`, in that order. Paths are named relative to the notebook so
    the same requirements in another directory give the same image."""
    base_dir = Path(base_dir)
    files: list[tuple[str, Path]] = []
    if spec.requirements:
        path = base_dir / spec.requirements
        if not path.is_file():
            raise UsageError(f"%%pipeline_setup --requirements {spec.requirements}: no such file "
                             f"next to the notebook ({path})", option="--requirements",
                             file=str(path))
        files.append((spec.requirements, path))
    beside = base_dir / "requirements.txt"
    if beside.is_file() and all(p.resolve() != beside.resolve() for _, p in files):
        files.append(("requirements.txt", beside))
    parts = []
    for name, path in files:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        for line in lines:
            if line.split(" ")[0].split("=")[0] in _LOCAL_FILE_OPTIONS:
                raise UsageError(f"{name}: `{line}` names another file, which the image build "
                                 "cannot see; list the packages themselves", file=str(path))
        kept = [line for line in lines if line and not line.startswith("#")]
        if kept:
            parts.append(f"# {name}\n" + "\n".join(kept))
    if spec.pip:
        parts.append("# %%pipeline_setup --pip\n" + "\n".join(spec.pip))
    return "\n".join(parts) + ("\n" if parts else "")


@dataclass(frozen=True)
class Recipe:
    """Everything a runtime image is made of; its hash names the image."""

    base: str  # the base image as the user named it
    base_id: str  # its image id: a rebuilt base means a new runtime image
    requirements: str = ""
    pins: tuple[str, ...] = field(default_factory=lambda: tuple(_pins()))
    files: tuple[tuple[str, bytes], ...] = field(default_factory=package_files, repr=False)

    def dockerfile(self) -> str:
        pins = " ".join(f"'{p}'" for p in self.pins)
        lines = [
            f"# mlpipe-jupyter {__version__}: the runtime image of a pipeline's steps",
            f"FROM {self.base}",
            "ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore",
            # the base's own packages stay visible (an ML base image with torch, say)
            f"RUN python3 -m venv --system-site-packages {VENV}",
            f"ENV PATH={VENV}/bin:$PATH VIRTUAL_ENV={VENV}",
            f"RUN pip install {pins} 'setuptools>=61' wheel",
        ]
        if self.requirements:
            lines += ["COPY requirements.txt /opt/mlpipe-build/requirements.txt",
                      "RUN pip install -r /opt/mlpipe-build/requirements.txt"]
        lines += [
            "COPY package /opt/mlpipe-build/package",
            "RUN pip install --no-deps --no-build-isolation /opt/mlpipe-build/package"
            " && rm -rf /opt/mlpipe-build",
        ]
        return "\n".join(lines) + "\n"

    def digest(self) -> str:
        h = hashlib.sha256()
        for part in (self.dockerfile(), self.base_id, self.requirements):
            h.update(part.encode() + b"\0")
        for rel, content in self.files:
            h.update(rel.encode() + b"\0" + hashlib.sha256(content).digest())
        return h.hexdigest()

    @property
    def tag(self) -> str:
        return f"{REPOSITORY}:{self.digest()[:16]}"

    def labels(self) -> dict[str, str]:
        return {RUNTIME_LABEL: self.digest(), "mlpipe.version": __version__,
                "mlpipe.base": self.base, PACKAGE_LABEL: package_digest()}

    def context(self) -> bytes:
        """The build context as an uncompressed tar."""
        members = [("Dockerfile", self.dockerfile().encode()),
                   ("package/pyproject.toml", PACKAGE_PYPROJECT.encode())]
        if self.requirements:
            members.append(("requirements.txt", self.requirements.encode()))
        members += [(f"package/mlpipe_jupyter/{rel}", content) for rel, content in self.files]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, content in members:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(content), 0o644, 0
                tar.addfile(info, io.BytesIO(content))
        return buf.getvalue()


class BuildOutput:
    """Follows `docker build` output: the current Dockerfile step, the last lines, the error."""

    def __init__(self, log: Log, verbose: bool) -> None:
        self.log = log
        self.verbose = verbose
        self.step = ""
        self.tail: deque[str] = deque(maxlen=40)
        self.error: str | None = None
        self.image_id: str | None = None
        self._lines = LineBuffer()

    def feed(self, chunk: dict[str, Any]) -> None:
        if "stream" in chunk:
            # a line may come in pieces; Docker colours a RUN's stderr with ANSI codes
            for line in self._lines.feed(_ANSI.sub("", chunk["stream"])):
                self._line(line.rstrip())
        if "error" in chunk:
            for line in self._lines.flush():
                self._line(line.rstrip())
            self.error = chunk.get("errorDetail", {}).get("message") or chunk["error"]
        if isinstance(chunk.get("aux"), dict) and "ID" in chunk["aux"]:
            self.image_id = chunk["aux"]["ID"]

    def _line(self, line: str) -> None:
        if not line:
            return
        if line.startswith("Step ") and " : " in line:
            self.step = line
            self.log(line)
        else:
            self.tail.append(line)
            if self.verbose:
                self.log(line)

    def failing_line(self) -> str:
        """The line that says why: pip's `ERROR:` line, else the last output, else Docker's."""
        for line in reversed(self.tail):
            if line.startswith(("ERROR:", "E: ", "error:")) or "Error" in line.split(":")[0]:
                return line.strip()
        lines = [line for line in self.tail
                 if not line.startswith((" ---> ", "Removing intermediate container"))]
        return (lines[-1].strip() if lines else "") or (self.error or "").strip()


def build(client, recipe: Recipe, *, log: Log, verbose: bool = False) -> str:
    """Build the image of `recipe`; return its id. Failure: one line naming the failing line."""
    out = BuildOutput(log, verbose)
    stream = client.api.build(fileobj=io.BytesIO(recipe.context()), custom_context=True,
                              tag=recipe.tag, rm=True, forcerm=True, pull=False, decode=True,
                              labels=recipe.labels())
    for chunk in stream:
        out.feed(chunk)
    if out.error is not None:
        if not verbose:  # the context of the failure, which the run's log did not show yet
            for line in list(out.tail)[-15:]:
                log(line)
        step = out.step.split(" : ", 1)[-1] if out.step else "the build"
        where = out.step.split(" : ", 1)[0].replace("Step ", "step ") if out.step else ""
        raise ExecutorError(f"building image {recipe.tag} failed at {where} `{step[:120]}`: "
                            f"{out.failing_line()[:300]}", cause="build")
    return out.image_id or client.images.get(recipe.tag).id


def base_image_id(client, name: str, *, log: Log) -> tuple[str, dict]:
    """The id and labels of an image, pulled when it is not here; clear error when neither."""
    from docker.errors import APIError, ImageNotFound

    try:
        image = client.images.get(name)
    except ImageNotFound:
        log(f"image {name} is not here: pulling it")
        try:
            image = client.images.pull(name)
        except APIError as err:
            # the engine's `Get "https://registry/...": dial tcp: ...`: the cause is the tail
            reason = re.sub(r'^Get "[^"]*": ', "", " ".join(str(err.explanation or err).split()))
            raise ExecutorError(f"image `{name}` not found: it is not in the local Docker "
                                f"engine and `docker pull` failed ({reason[:200]})",
                                cause="image-not-found") from None
    return image.id, image.labels or {}


def ensure_runtime_image(client, *, base: str, requirements: str, log: Log,
                         verbose: bool = False) -> str:
    """The id of the runtime image for this base and these requirements, built if missing.
    A base that is already a runtime image (label mlpipe.runtime) is used as it is."""
    from docker.errors import ImageNotFound

    base_id, labels = base_image_id(client, base, log=log)
    if RUNTIME_LABEL in labels:
        return base_id
    recipe = Recipe(base=base, base_id=base_id, requirements=requirements)
    try:
        image_id = client.images.get(recipe.tag).id
        log(f"runtime image {recipe.tag} (reused)")
        return image_id
    except ImageNotFound:
        pass
    log(f"building runtime image {recipe.tag} from {base} (once; `mlpipe image build NOTEBOOK` "
        "does this ahead of time)")
    started = time.monotonic()
    image_id = build(client, recipe, log=log, verbose=verbose)
    log(f"built {recipe.tag} in {time.monotonic() - started:.1f} s")
    return image_id


def resolve_base(client, configured: str | None, *, log: Log) -> str:
    """The base image a run builds FROM: the configured one (pulled if missing), else the
    first of DEFAULT_BASES the engine has, else the first pulled. One ExecutorError (cause
    `image-not-found`) when there is none."""
    from docker.errors import ImageNotFound

    if configured:
        try:
            base_image_id(client, configured, log=log)
        except ExecutorError as err:
            if err.cause != "image-not-found":
                raise
            raise ExecutorError(f"base {err} (base-image in [tool.mlpipe] or "
                                "MLPIPE_BASE_IMAGE)", cause=err.cause,
                                option="base-image") from None
        return configured
    for name in DEFAULT_BASES:
        try:
            client.images.get(name)
            return name
        except ImageNotFound:
            continue
    try:
        base_image_id(client, DEFAULT_BASES[0], log=log)
    except ExecutorError as err:
        if err.cause != "image-not-found":
            raise
        raise ExecutorError(
            f"no base image: the Docker engine has neither {' nor '.join(DEFAULT_BASES)} and "
            f"pulling {DEFAULT_BASES[0]} failed (set base-image in [tool.mlpipe] or "
            "MLPIPE_BASE_IMAGE, or build one with scripts/setup-docker.sh)",
            cause=err.cause, option="base-image") from None
    return DEFAULT_BASES[0]


def pipeline_images(client, spec: PipelineSpec, base_dir: Path, *, base: str, log: Log,
                    verbose: bool = False) -> dict[str | None, str]:
    """Image id per image a step names (None: the pipeline's runtime image, FROM `base`, which
    resolve_base chose). A step's `--image` is a base too: it gets the same runtime layers."""
    requirements = pipeline_requirements(spec, base_dir)
    wanted: list[str | None] = sorted({s.image for s in spec.steps if s.image})
    if any(s.image is None for s in spec.steps) or not spec.steps:
        wanted.insert(0, None)
    images = {}
    for name in wanted:
        try:
            images[name] = ensure_runtime_image(client, base=name or base,
                                                requirements=requirements, log=log,
                                                verbose=verbose)
        except ExecutorError as err:
            if name is None:
                raise
            users = ", ".join(f"`{s.name}`" for s in spec.steps if s.image == name)
            raise ExecutorError(f"step {users} --image: {err}", cause=err.cause,
                                option="--image") from None
    return images


def describe(client, image_id: str) -> str:
    """`mlpipe-runtime:abc... (sha256:1234..., 1.2 GB)` for messages."""
    image = client.images.get(image_id)
    tags = ", ".join(image.tags) or image_id
    return f"{tags} ({image_id[:19]}, {image.attrs.get('Size', 0) / 1e9:.2f} GB)"



def remove_stale_images(client, *, dry_run: bool = False) -> list[str]:
    """Remove runtime images built from other versions of this package's files: this mlpipe
    never picks them again. Images a container still uses are kept (Docker refuses)."""
    from docker.errors import APIError

    current = package_digest()
    removed = []
    for image in client.images.list(filters={"label": RUNTIME_LABEL}):
        if (image.labels or {}).get(PACKAGE_LABEL) == current:
            continue
        name = image.tags[0] if image.tags else image.short_id
        if not dry_run:
            try:
                client.images.remove(image.id, force=False)
            except APIError:  # in use by a container, or removed meanwhile
                continue
        removed.append(name)
    return removed
