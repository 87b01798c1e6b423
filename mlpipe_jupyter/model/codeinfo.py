"""What a cell's code reads and binds, found with `ast`. Pure: no imports beyond the stdlib.

Used to infer a step's inputs (free names that another step outputs) and the parameters a step
reads (which enter its cache key).
"""

from __future__ import annotations

import ast
import builtins
import json
from functools import lru_cache
from typing import Any

from ..errors import UsageError

# get_ipython is what IPython syntax (`!cmd`, `%magic`) turns into; every kernel has it
_BUILTINS = frozenset(dir(builtins)) | {"get_ipython"}
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_COMPS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def parse_python(code: str) -> ast.Module:
    """Parse cell code; IPython syntax (`!cmd`, `%magic`) is translated first when present."""
    try:
        return ast.parse(code)
    except SyntaxError:
        pass
    from IPython.core.inputtransformer2 import TransformerManager  # only for IPython syntax

    try:
        return ast.parse(TransformerManager().transform_cell(code))
    except SyntaxError as err:
        raise UsageError(f"line {err.lineno}: {err.msg}") from None


def _bound_by(node: ast.AST) -> set[str]:
    """Names a statement binds in the scope it runs in (not inside nested scopes)."""
    out: set[str] = set()
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, ast.Name) and isinstance(cur.ctx, (ast.Store, ast.Del)):
            out.add(cur.id)
        elif isinstance(cur, (ast.Import, ast.ImportFrom)):
            for alias in cur.names:
                out.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(cur, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(cur.name)
            stack.extend(cur.decorator_list)
            continue
        elif isinstance(cur, (ast.Lambda, *_COMPS)):
            continue
        elif isinstance(cur, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and cur.name:
            out.add(cur.name)
        stack.extend(ast.iter_child_nodes(cur))
    return out


def _reads(node: ast.AST) -> list[str]:
    """Names a node reads from its enclosing scope, in source order."""
    if isinstance(node, ast.Name):
        return [node.id] if isinstance(node.ctx, ast.Load) else []
    if isinstance(node, _SCOPES):
        return _scope_reads(node)
    if isinstance(node, _COMPS):
        local: set[str] = set()
        names: list[str] = []
        for gen in node.generators:
            names += [n for n in _reads(gen.iter) if n not in local]
            local |= _bound_by(gen.target)
            for cond in gen.ifs:
                names += [n for n in _reads(cond) if n not in local]
        elts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        for elt in elts:
            names += [n for n in _reads(elt) if n not in local]
        return names
    names = []
    for child in ast.iter_child_nodes(node):
        names += _reads(child)
    return names


def _scope_reads(node: ast.AST) -> list[str]:
    outer: list[str] = []
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        args = node.args
        for default in [*args.defaults, *[d for d in args.kw_defaults if d is not None]]:
            outer += _reads(default)
        params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
        params |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    else:
        params = set()
    if not isinstance(node, ast.Lambda):
        for deco in node.decorator_list:
            outer += _reads(deco)
    if isinstance(node, ast.ClassDef):
        for base in [*node.bases, *(k.value for k in node.keywords)]:
            outer += _reads(base)
    body = node.body if isinstance(node.body, list) else [node.body]
    local = set(params)
    for stmt in body:
        local |= _bound_by(stmt)
    inner = [n for stmt in body for n in _reads(stmt) if n not in local]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        inner += [n for n in _reads(node.args) if n not in params]
    return outer + inner


@lru_cache(maxsize=4096)
def free_names(code: str) -> tuple[str, ...]:
    """Names the code reads before binding them, in order of first use, builtins excluded."""
    bound: set[str] = set()
    seen: dict[str, None] = {}
    for stmt in parse_python(code).body:
        for name in _reads(stmt):
            if name not in bound and name not in _BUILTINS:
                seen.setdefault(name, None)
        bound |= _bound_by(stmt)
    return tuple(seen)


def parse_params(code: str) -> dict[str, object]:
    """`%%pipeline_params` body: plain assignments of JSON-compatible literals, in order."""
    params: dict[str, object] = {}
    for stmt in parse_python(code).body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
            else stmt.target if isinstance(stmt, ast.AnnAssign) and stmt.value else None
        if not isinstance(target, ast.Name):
            raise UsageError(f"%%pipeline_params line {stmt.lineno}: only `NAME = literal` "
                             "assignments are allowed", option="%%pipeline_params")
        try:
            value = ast.literal_eval(stmt.value)
            json.dumps(value, allow_nan=True)
        except (ValueError, TypeError, SyntaxError):
            raise UsageError(f"%%pipeline_params line {stmt.lineno}: `{target.id}` must be a "
                             "JSON-compatible literal (number, string, bool, None, list, dict)",
                             option=target.id) from None
        if isinstance(value, tuple):
            raise UsageError(f"%%pipeline_params line {stmt.lineno}: `{target.id}`: use a list, "
                             "not a tuple", option=target.id)
        params[target.id] = value
    return params


def parse_assignments(items: list[str], option: str = "-p") -> dict[str, Any]:
    """`NAME=VALUE` pairs; values are Python literals, or plain strings when not literals."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.isidentifier():
            raise UsageError(f"{option} {item}: expected NAME=VALUE", option=option)
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name] = text
    return out
