"""Mistakes caught before anything runs: a `-p` value of the wrong type, a notebook without
steps, a name no step defines, an output never assigned, a misspelt option.

Pure (no IPython, Docker or Jupyter imports): the CLI, the magics and the runner share these
rules. Errors are one-line UsageError/NotebookError; warnings are one-line strings the caller
prints with a `warning: ` prefix.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import PurePath
from typing import Any

from ..errors import NotebookError, SpecError, UsageError
from .namescan import NameScan, scan_names
from .spec import PipelineSpec, StepSpec, is_variable

# what a parameter's default says about the values `-p` may give it (params are JSON values)
_KINDS: dict[type, str] = {bool: "a bool", int: "an int", float: "a float", str: "a string",
                           list: "a list", dict: "a dict"}
# names every step kernel has that no builtin module lists: IPython's own, and the two the step
# notebook defines before the step's code (stepbook: the parameters and inputs cells)
_KERNEL_NAMES = frozenset({"display", "get_ipython", "In", "Out", "exit", "quit", "_ih", "_oh",
                           "_dh", "_i", "_ii", "_iii", "_", "__", "___", "_mlpipe_io",
                           "_mlpipe_runtime"})
_HISTORY = re.compile(r"_i?\d+\Z")  # IPython's _12, _i12


def suggest(word: str, choices: Iterable[str]) -> list[str]:
    """The choices `word` most likely meant: those it abbreviates, else the closest spelling."""
    choices = sorted(set(choices))
    prefixed = [c for c in choices if c.startswith(word) and c != word]
    if prefixed and len(word) > 2:  # `--o` is too short to mean anything
        return prefixed[:3]
    return difflib.get_close_matches(word, choices, n=1, cutoff=0.6)


def did_you_mean(word: str, choices: Iterable[str], quote: str = "`") -> str:
    """` (did you mean `x`?)`, or "" when nothing is close."""
    found = suggest(word, choices)
    if not found:
        return ""
    return f" (did you mean {_either(found, quote)}?)"


def _either(words: list[str], quote: str = "`") -> str:
    return " or ".join(f"{quote}{w}{quote}" for w in words)


# -- parameters -------------------------------------------------------------------------------
def check_params(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The run's parameter values: the defaults with `overrides` applied, each checked against
    its default's type. An unknown name or a wrong type is a one-line UsageError."""
    values = dict(defaults)
    for name, value in overrides.items():
        if name not in defaults:
            known = ", ".join(defaults) or "none declared"
            found = suggest(name, defaults)
            hint = f", did you mean {_either(found)}?" if found else ""
            raise UsageError(f"-p {name}: unknown parameter{hint} (pipeline parameters: "
                             f"{known})", option=name)
        values[name] = check_param(name, value, defaults[name])
    return values


def check_param(name: str, value: Any, default: Any) -> Any:
    """`value` as the run uses it, or a UsageError naming the type the default has.

    A default of None accepts any JSON value; an int is fine for a float (made a float, so that
    `-p lr=1` and `-p lr=1.0` are one cache key); a bool is not an int; a tuple (`-p
    sizes=1,2`) is fine for a list, and becomes one. Whatever is accepted is a JSON value
    (see `json_problem`), so the step receives exactly what its cache key was computed from.
    """
    kind = type(default)
    typed = value if isinstance(value, str) else _short(value)
    if default is None or kind not in _KINDS or type(value) is kind:
        pass
    elif kind is float and type(value) is int:
        try:
            value = float(value)
        except OverflowError:
            raise UsageError(f"-p {name}={typed}: too large for a float (default "
                             f"{_short(default)})", option=name) from None
    elif kind is list and type(value) is tuple:
        value = list(value)
    else:
        hint = ""
        if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
            hint = f" (write {value.capitalize()})"
        elif kind is bool and type(value) is int and value in (0, 1):
            hint = f" (write {bool(value)})"
        elif kind is str:
            hint = f" (to pass it as text, quote it: -p {name}=\"'{typed}'\")"
        raise UsageError(f"-p {name}={typed}: expected {_KINDS[kind]} (default "
                         f"{_short(default)}), got {_describe(value)}{hint}", option=name)
    problem = json_problem(value)
    if problem is not None:
        raise UsageError(f"-p {name}={typed}: {problem}", option=name)
    return value


def check_default(name: str, value: Any) -> Any:
    """A `%%pipeline_params` default: a JSON value, or a one-line UsageError naming it."""
    problem = json_problem(value)
    if problem is not None:
        raise UsageError(f"%%pipeline_params: `{name} = {_short(value)}`: {problem}",
                         option=name)
    return value


# Parameters are JSON values, and only those: papermill writes a JSON value into the step's
# parameters cell as itself but anything else as its str() (a tuple arrives as "(1, 2)", a dict
# key 1 as "1"); the cache key, the run history (`mlpipe runs --json`) and the widget carry
# them as JSON too, where (1, 2) and [1, 2] are one value and NaN or Infinity is no JSON at all.
_JSON_TYPES = "None, bool, number, string, list, dict with string keys"


def json_problem(value: Any) -> str | None:
    """Why `value` cannot be a parameter, in words, or None when it is a JSON value."""
    found = _not_json(value)
    if found is None:
        return None
    part, noun, fix = found
    if noun is None:  # a dict key
        what = f"the dict key {_short(part)} is not a string"
    elif part is value:
        what = f"{noun} is not a JSON value"
    else:
        what = f"{_short(part)} inside it is {noun}, not a JSON value"
    return f"{what}; parameters are JSON values ({_JSON_TYPES}){'; ' + fix if fix else ''}"


def _not_json(value: Any) -> tuple[Any, str | None, str | None] | None:
    """(the offending part, what it is, how to write it instead) for the first part of `value`
    that is no JSON value (what: None for a dict key that is not a string); None when all of
    it is."""
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return None
    if kind is float:
        if value == value and abs(value) != float("inf"):
            return None
        if value != value:
            return value, "NaN", None
        return value, "infinity", "for no limit, use None"
    if kind is list:
        return next(filter(None, map(_not_json, value)), None)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return key, None, f"quote it: {str(key)!r}"
            found = _not_json(item)
            if found is not None:
                return found
        return None
    if kind in (tuple, set, frozenset):
        items = list(value)
        if kind is not tuple:
            with contextlib.suppress(TypeError):
                items = sorted(items)
        return value, "a tuple" if kind is tuple else "a set", f"write a list: {_short(items)}"
    if kind is bytes:
        fix = None
        with contextlib.suppress(UnicodeDecodeError):
            fix = f"write a string: {value.decode('ascii')!r}"
        return value, "a bytes value", fix
    return value, f"a {kind.__name__}", None


def _describe(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, str):
        return f"the string {_short(value)}" + ("" if value.strip() else " (empty)")
    kind = _KINDS.get(type(value), f"a {type(value).__name__}")
    return f"{kind} ({_short(value)})"


def _short(value: Any, limit: int = 40) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# -- the notebook -----------------------------------------------------------------------------
def require_steps(spec: PipelineSpec, *, notebook: str | PurePath | None = None) -> None:
    """A pipeline needs a step; said before anything starts (no executor, no image build).
    `notebook`: the file read (the CLI), or None for the kernel's registry (%pipeline)."""
    if spec.steps:
        return
    if notebook is not None:
        raise NotebookError(f"{PurePath(notebook).name}: no %%step cells, so there is no "
                            "pipeline (a step is a code cell that starts with `%%step NAME`)",
                            file=str(notebook))
    raise SpecError("no %%step cells have run in this kernel, so there is no pipeline: run the "
                    "cells that declare the steps first (a `%%step NAME --no-run` cell only "
                    "registers its step)")


# -- warnings ---------------------------------------------------------------------------------
def pre_run_warnings(spec: PipelineSpec, params: Mapping[str, Any] | None = None,
                     kernel_names: Collection[str] | None = None,
                     cells: Mapping[str, int | str] | None = None) -> list[str]:
    """One line per likely mistake that static analysis of the steps can see:
    a name a step reads that nothing in its step notebook defines (a NameError when it runs),
    and a declared variable output its code never assigns.

    `kernel_names`: the user's kernel namespace (%pipeline), to say a name is defined only there.
    `cells`: step name -> notebook cell number, for the messages (the CLI).
    A step or setup code that may bind names invisibly (star import, exec, globals(), %run)
    gets no warnings about names or outputs: silence beats a wrong alarm.
    """
    params = {**spec.param_defaults, **(params or {})}
    setup = scan_names(spec.setup) if spec.setup else NameScan((), frozenset(), False)
    producers: dict[str, str] = {}
    for step in spec.steps:
        for out in step.variable_outputs:
            producers.setdefault(out, step.name)
    out: list[str] = []
    for step in spec.steps:
        where = f"step `{step.name}`" + (f" (cell {cells[step.name]})"
                                         if cells and step.name in cells else "")
        try:  # code of a step with --inputs was not parsed when it was registered
            scan = scan_names(step.code)
        except UsageError as err:
            out.append(f"{where} has a syntax error ({err}): the step will fail")
            continue
        if scan.dynamic or setup.dynamic:
            continue
        defined = set(params) | setup.assigned | {i for i in step.inputs if is_variable(i)}
        for name, line in scan.unbound:
            if name in defined or name in _KERNEL_NAMES or _HISTORY.match(name) or (
                    name.startswith("__") and name.endswith("__")):
                continue  # dunders are the interpreter's (__file__, __name__): not a typo
            out.append(_undefined(step, where, name, line, producers, scan,
                                  defined | set(producers), kernel_names))
        for name in step.variable_outputs:
            if name in scan.assigned or name in setup.assigned or name in params:
                continue
            hint = did_you_mean(name, scan.assigned)
            tail = hint or ": the step will fail when its outputs are saved"
            out.append(f"{where} declares output `{name}` but never assigns it{tail}")
    return out


def _undefined(step: StepSpec, where: str, name: str, line: int, producers: Mapping[str, str],
               scan: NameScan, visible: set[str], kernel_names: Collection[str] | None) -> str:
    # the source line too: step code counts lines from the one after `%%step` (as the step's
    # failure messages do), the cell from `%%step` itself; the text settles which
    lines = step.code.splitlines()
    text = " ".join(lines[line - 1].split()) if 0 < line <= len(lines) else ""
    text = text if len(text) <= 50 else text[:47] + "..."
    at = f"`{name}` (line {line}: `{text}`)" if text else f"`{name}` (line {line})"
    fails = "the step will fail with NameError"
    producer = producers.get(name)
    if producer == step.name:
        return f"{where} reads {at} before assigning it, and no other step outputs it: {fails}"
    if producer is not None:
        return (f"{where} reads {at}, an output of step `{producer}` that is not among its "
                f"--inputs: {fails} (add `{name}` to --inputs)")
    if kernel_names is not None and name in kernel_names:
        return (f"{where} reads {at}, which is defined only in your kernel (no step outputs "
                f"it, no parameter or setup code defines it): {fails}; define it in "
                "%%pipeline_setup or output it from a step")
    nor = ", setup code or your kernel" if kernel_names is not None else " or setup code"
    hint = did_you_mean(name, visible | scan.assigned - {name})
    return (f"{where} reads {at}, which no step outputs and no parameter{nor} defines: "
            f"{fails}{hint}")
