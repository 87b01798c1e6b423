"""The one parser of `%%step` and `%%pipeline_setup` lines, shared by the magics and the
notebook reader, so that a notebook means the same thing in a kernel and on disk.

Plain argparse (no IPython), built from the options the spec's fields declare (rules.option):
a line parses straight into a StepSpec or PipelineSpec, each value through its field's rule.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, NoReturn

from ..errors import UsageError
from .checks import did_you_mean
from .rules import Option
from .spec import PipelineSpec, StepSpec

STEP_DOC = ("Declare a pipeline step: "
            "`%%step NAME [--inputs X ...] [--outputs X ...] [options]`.")
SETUP_DOC = ("Code prepended to every step: "
             "`%%pipeline_setup [--requirements FILE] [--pip PKG ...]`.")
# the magic's own: whether the cell runs in the kernel now is nothing the pipeline keeps
NO_RUN = Option("--no-run", "register the step without running the cell", switch=True)


@dataclass(frozen=True)
class StepLine:
    """A parsed `%%step` line: the step it declares (without its code; `inputs_inferred` when
    --inputs was left out) and the magic-only --no-run."""

    spec: StepSpec
    no_run: bool = False


class _LineError(Exception):
    """argparse's complaint about a line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own prints usage and exits
        raise _LineError(message)


Declared = Sequence[tuple[str, Option]]


def declared(cls: type) -> list[tuple[str, Option]]:
    """(field name, Option) for each field of a spec class that a magic's line sets."""
    return [(f.name, f.metadata["option"]) for f in fields(cls) if "option" in f.metadata]


def _parser(prog: str, doc: str, options: Declared) -> _Parser:
    # No abbreviations (argparse would take `--out` for `--outputs`): a saved notebook must mean
    # the same thing after an upgrade adds an option (`--output-dir` would make `--out`
    # ambiguous, and the notebook an error); a misspelt or shortened option gets a suggestion.
    parser = _Parser(prog=prog, description=doc, add_help=False, allow_abbrev=False)
    for dest, opt in options:
        if opt.switch:
            parser.add_argument(opt.flag, dest=dest, action="store_true", help=opt.help)
            continue
        how: dict[str, Any] = {"nargs": opt.nargs, "type": opt.type, "choices": opt.choices,
                               "metavar": opt.metavar, "help": opt.help}
        if opt.flag.startswith("-"):
            parser.add_argument(opt.flag, dest=dest, **how)
        else:  # positional: argparse names its value after the word itself
            parser.add_argument(dest, **how)
    return parser


_STEP_OPTIONS = declared(StepSpec)
_SETUP_OPTIONS = declared(PipelineSpec)
_AT = [dest for dest, _ in _STEP_OPTIONS].index("no_cache") + 1  # where --no-run always was
_STEP = _parser("%%step", STEP_DOC,
                [*_STEP_OPTIONS[:_AT], ("no_run", NO_RUN), *_STEP_OPTIONS[_AT:]])
_SETUP = _parser("%%pipeline_setup", SETUP_DOC, _SETUP_OPTIONS)


def step_help() -> str:
    """`%%step`'s help: what `%%step?` shows in a kernel."""
    return _STEP.format_help()


def setup_help() -> str:
    return _SETUP.format_help()


def split_line(line: str) -> list[str]:
    """The words of a magic's line by the shell's quoting rules (shlex, POSIX): `"my file.csv"`
    and `my\\ file.csv` are one word without the quotes or backslash; `K="a b"` is `K=a b`.
    `#` is part of a word, not a comment. Unbalanced quotes: ValueError."""
    return shlex.split(line, comments=False, posix=True)


def _parse(parser: _Parser, magic: str, line: str) -> argparse.Namespace:
    try:
        return parser.parse_args(split_line(line))
    except _LineError as err:
        unknown = _unknown_option(str(err))
        if unknown is not None:
            raise UsageError(_unknown_message(parser, magic, line, unknown), option=unknown) \
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


def _unknown_message(parser: _Parser, magic: str, line: str, option: str) -> str:
    options = [o for action in parser._actions for o in action.option_strings]
    words = split_line(line)  # it parsed, so it splits
    name = f" {words[0]}" if magic == "%%step" and words and not words[0].startswith("-") else ""
    hint = did_you_mean(option, options, quote="") or f" (options: {', '.join(options)})"
    return f"{magic}{name}: unknown option {option}{hint}"


_NUMBER = re.compile(r"-\d")


def _values(options: Declared, args: argparse.Namespace, step: str | None) -> dict[str, Any]:
    """Each given option's value through its field's rule; one left out keeps the default."""
    values = {}
    for dest, opt in options:
        value = getattr(args, dest)
        if value is None:
            continue
        if isinstance(value, list):
            value = tuple(value)
        values[dest] = opt.rule(value, step, opt.flag) if opt.rule else value
    return values


def read_step_line(line: str) -> StepLine:
    args = _parse(_STEP, "%%step", line)
    values = _values(_STEP_OPTIONS, args, args.name)  # the name's rule comes first
    return StepLine(StepSpec(code="", inputs_inferred=args.inputs is None, **values),
                    no_run=args.no_run)


def parse_step_line(line: str) -> StepSpec:
    """The step a `%%step` line declares, without its code."""
    return read_step_line(line).spec


def parse_setup_line(line: str) -> PipelineSpec:
    """A PipelineSpec with only the fields a `%%pipeline_setup` line sets."""
    return PipelineSpec(**_values(_SETUP_OPTIONS, _parse(_SETUP, "%%pipeline_setup", line), None))
