"""The one parser of `%%step` and `%%pipeline_setup` options, shared by the magics and the
notebook reader, so that a notebook means the same thing in a kernel and on disk."""

from __future__ import annotations

import math
import posixpath
import re
import shlex
import threading
from dataclasses import dataclass

from IPython.core import magic_arguments as ma
from IPython.core.error import UsageError as IPythonUsageError

from ..errors import UsageError
from .spec import is_variable

NETWORKS = ("none", "bridge")
MEMORY = re.compile(r"(\d+(?:\.\d+)?)([bkmg]?)\Z", re.I)
STEP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class StepOptions:
    name: str
    inputs: tuple[str, ...] | None  # None: infer from the code
    outputs: tuple[str, ...]
    after: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    retries: int
    timeout: float | None
    no_cache: bool
    no_run: bool
    image: str | None = None
    cpus: float | None = None
    memory: str | None = None
    gpus: int | None = None
    network: str | None = None


@dataclass(frozen=True)
class SetupOptions:
    requirements: str | None
    pip: tuple[str, ...]


@ma.magic_arguments()
@ma.argument("name", help="step name: [A-Za-z_][A-Za-z0-9_-]*, unique in the notebook")
@ma.argument("--inputs", nargs="+", metavar="X", help="artifacts this step reads "
             "(identifiers are variables, anything else a relative file path); "
             "inferred from the code when omitted")
@ma.argument("--outputs", nargs="+", default=[], metavar="X", help="artifacts this step writes")
@ma.argument("--after", nargs="+", default=[], metavar="STEP", help="run after these steps")
@ma.argument("--env", nargs="+", default=[], metavar="KEY=VALUE",
             help="environment variables for the step")
@ma.argument("--retries", type=int, default=0, metavar="N", help="retry a failed step N times")
@ma.argument("--timeout", type=float, default=None, metavar="SECONDS",
             help="fail the step after this many seconds")
@ma.argument("--no-cache", action="store_true", help="never reuse an earlier result")
@ma.argument("--no-run", action="store_true", help="register the step without running the cell")
@ma.argument("--image", default=None, metavar="IMAGE",
             help="run this step in IMAGE instead of the pipeline's runtime image")
@ma.argument("--cpus", type=float, default=None, metavar="N", help="CPU limit (docker)")
@ma.argument("--memory", default=None, metavar="SIZE", help="memory limit such as 512m or 2g")
@ma.argument("--gpus", type=int, default=None, metavar="N", help="GPUs to request (docker)")
@ma.argument("--network", default=None, choices=NETWORKS,
             help="container network: none or bridge")
def step(line: str, cell: str = "") -> None:
    """Declare a pipeline step: `%%step NAME [--inputs X ...] [--outputs X ...] [options]`."""


@ma.magic_arguments()
@ma.argument("--requirements", default=None, metavar="FILE",
             help="a requirements file the step image must install")
@ma.argument("--pip", nargs="+", default=[], metavar="PKG",
             help="packages the step image must install")
def pipeline_setup(line: str, cell: str = "") -> None:
    """Code prepended to every step: `%%pipeline_setup [--requirements FILE] [--pip PKG ...]`."""


# No abbreviations (argparse would take `--out` for `--outputs`): a saved notebook must mean the
# same thing after an upgrade adds an option (`--output-dir` would make `--out` ambiguous, and
# the notebook an error); a misspelt or shortened option gets a suggestion instead.
step.parser.allow_abbrev = False
pipeline_setup.parser.allow_abbrev = False


def split_line(line: str) -> list[str]:
    """The words of a magic's line by the shell's quoting rules (shlex, POSIX): `"my file.csv"`
    and `my\\ file.csv` are one word without the quotes or backslash; `K="a b"` is `K=a b`.
    `#` is part of a word, not a comment. Unbalanced quotes: ValueError."""
    return shlex.split(line, comments=False, posix=True)


def _parse(func, magic: str, line: str):
    try:
        return func.parser.parse_args(split_line(line))
    except IPythonUsageError as err:
        unknown = _unknown_option(str(err))
        if unknown is not None:
            raise UsageError(_unknown_message(func, magic, line, unknown), option=unknown) \
                from None
        raise UsageError(f"{magic} {line.strip()}: {err}", option=magic) from None
    except ValueError as err:  # unbalanced quotes from the shell-like splitter
        raise UsageError(f"{magic} {line.strip()}: {err}", option=magic) from None


def _unknown_option(message: str) -> str | None:
    """The first option-like word of argparse's `unrecognized arguments: ...`, if any."""
    prefix = "unrecognized arguments: "
    if not message.startswith(prefix):
        return None
    for word in message[len(prefix):].split():
        if word.startswith("-") and len(word) > 1 and not _NUMBER.match(word):
            return word.partition("=")[0]
    return None


def _unknown_message(func, magic: str, line: str, option: str) -> str:
    from .checks import did_you_mean

    options = [o for action in func.parser._actions for o in action.option_strings]
    words = split_line(line)  # it parsed, so it splits
    name = f" {words[0]}" if magic == "%%step" and words and not words[0].startswith("-") else ""
    hint = did_you_mean(option, options, quote="") or f" (options: {', '.join(options)})"
    return f"{magic}{name}: unknown option {option}{hint}"


_NUMBER = re.compile(r"-\d")


def check_artifact(item: str, *, option: str, step: str | None = None) -> str:
    """A variable name, or a relative path that stays inside the step's working directory."""
    where = f"step `{step}` {option}" if step else option
    if is_variable(item):
        return item
    if not item or item.strip() != item or "\x00" in item or "\\" in item:
        raise UsageError(f"{where}: `{item}` is not a valid artifact name", step=step,
                         option=option)
    if item.startswith("/") or re.match(r"[A-Za-z]:", item):
        raise UsageError(f"{where}: `{item}` is an absolute path; artifacts are paths relative "
                         "to the step's working directory", step=step, option=option)
    norm = posixpath.normpath(item)
    if norm == "." or norm == ".." or norm.startswith("../") or ".." in item.split("/"):
        raise UsageError(f"{where}: `{item}` escapes the step's working directory", step=step,
                         option=option)
    if norm.split("/")[0] == ".mlpipe":
        raise UsageError(f"{where}: `{item}` is inside .mlpipe/, which mlpipe owns", step=step,
                         option=option)
    return item


def parse_step_line(line: str) -> StepOptions:
    args = _parse(step, "%%step", line)
    name = args.name
    if not STEP_NAME.match(name):
        raise UsageError(f"%%step: invalid step name `{name}`: use letters, digits, `_` and `-`, "
                         "not starting with a digit or `-`", step=name, option="NAME")
    inputs = None if args.inputs is None else tuple(
        check_artifact(i, option="--inputs", step=name) for i in args.inputs)
    outputs = tuple(check_artifact(o, option="--outputs", step=name) for o in args.outputs)
    for opt, items in (("--inputs", inputs or ()), ("--outputs", outputs)):
        dup = {i for i in items if items.count(i) > 1}
        if dup:
            raise UsageError(f"step `{name}` {opt}: `{sorted(dup)[0]}` is listed twice",
                             step=name, option=opt)
    for after in args.after:
        if not STEP_NAME.match(after):
            raise UsageError(f"step `{name}` --after: `{after}` is not a step name", step=name,
                             option="--after")
    env = []
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not ENV_KEY.match(key):
            raise UsageError(f"step `{name}` --env: `{item}` is not KEY=VALUE", step=name,
                             option="--env")
        env.append((key, value))
    if args.retries < 0:
        raise UsageError(f"step `{name}` --retries: must be 0 or more, got {args.retries}",
                         step=name, option="--retries")
    if args.timeout is not None and not 0 < args.timeout <= threading.TIMEOUT_MAX:
        # inf, nan and more than ~292 years: a timer cannot wait that long (leave it out)
        raise UsageError(f"step `{name}` --timeout: must be a positive number of seconds, at "
                         f"most {threading.TIMEOUT_MAX:.0f} (leave it out for no timeout), got "
                         f"{args.timeout:g}", step=name, option="--timeout")
    if args.cpus is not None and not (args.cpus > 0 and math.isfinite(args.cpus)):
        raise UsageError(f"step `{name}` --cpus: must be a positive number, got {args.cpus:g}",
                         step=name, option="--cpus")
    if args.memory is not None:
        parse_memory(args.memory, step=name)
    if args.gpus is not None and args.gpus < 1:
        raise UsageError(f"step `{name}` --gpus: must be 1 or more, got {args.gpus}",
                         step=name, option="--gpus")
    if args.image is not None and (not args.image.strip() or " " in args.image):
        raise UsageError(f"step `{name}` --image: `{args.image}` is not an image name",
                         step=name, option="--image")
    return StepOptions(
        name=name, inputs=inputs, outputs=outputs, after=tuple(args.after),
        env=tuple(sorted(dict(env).items())), retries=args.retries, timeout=args.timeout,
        no_cache=args.no_cache, no_run=args.no_run, image=args.image, cpus=args.cpus,
        memory=args.memory, gpus=args.gpus, network=args.network,
    )


def parse_memory(text: str, *, step: str | None = None) -> int:
    """`512m`, `1g`, `1.5g`, `1048576` -> bytes."""
    match = MEMORY.match(text.strip())
    if not match or not 0 < float(match.group(1)) < 2 ** 63:
        where = f"step `{step}` --memory" if step else "--memory"
        raise UsageError(f"{where}: `{text}` is not a size such as 512m or 2g", step=step,
                         option="--memory")
    unit = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]
    return int(float(match.group(1)) * unit)


def parse_setup_line(line: str) -> SetupOptions:
    args = _parse(pipeline_setup, "%%pipeline_setup", line)
    return SetupOptions(requirements=args.requirements, pip=tuple(args.pip))
