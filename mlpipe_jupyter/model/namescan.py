"""The scope-aware name scan behind the pre-run checks (checks.py). Pure: stdlib only.

codeinfo.free_names is deliberately coarse (a whole statement reads before it binds; function
bodies read at `def` time); good enough to infer inputs. Warning a user needs fewer false
alarms: flow order inside compound statements, function bodies resolved against everything
the cell binds, and line numbers.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import lru_cache

from .codeinfo import _BUILTINS, _COMPS, _SCOPES, _bound_by, parse_python

_DYNAMIC_CALLS = frozenset({"exec", "globals", "vars", "locals"})
# line magics that bind names the code does not show (`%run script.py`, `%store -r x`, `%pylab`)
_DYNAMIC_MAGICS = frozenset({"run", "store", "pylab"})
_CATCH_NAMEERROR = frozenset({"NameError", "Exception", "BaseException"})


@dataclass(frozen=True)
class NameScan:
    """What running a cell's code at module level needs, and what it leaves defined."""

    unbound: tuple[tuple[str, int], ...]  # (name, line): may be read before anything binds it
    assigned: frozenset[str]  # names given a value in module scope, anywhere in the code
    dynamic: bool  # star import, exec(), globals(), %run ...: it may bind names not in the code


@lru_cache(maxsize=1024)
def scan_names(code: str) -> NameScan:
    """Names the code reads that nothing bound before (builtins excluded), and what it binds.

    Optimistic where flow is unknowable, since a wrong warning costs trust: a name bound in
    either branch of an `if` counts as bound after it, a loop's bindings count inside the loop
    (an earlier iteration ran), a read under `try: ... except NameError` is not reported.
    """
    tree = parse_python(code)
    scanner = _Scanner()
    # a function with `global x` assigns module x when called; when is unknowable, so from
    # the start (nobody writes `global x` only to read x)
    declared = {name for node in ast.walk(tree) if isinstance(node, ast.Global)
                for name in node.names}
    scanner.assigned |= declared
    scanner.block(tree.body, set(declared), module=True)
    unbound = dict(scanner.unbound)
    for name, line in scanner.deferred:  # function bodies run later, after the whole cell
        if name not in scanner.assigned:
            unbound.setdefault(name, line)
    return NameScan(
        unbound=tuple(sorted(unbound.items(), key=lambda item: item[1])),
        assigned=frozenset(scanner.assigned),
        dynamic=any(_is_dynamic(node) for node in ast.walk(tree)),
    )


def _is_dynamic(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return any(alias.name == "*" for alias in node.names)
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):
        # vars(obj) only reads; vars() and locals() at module level are globals()
        return func.id in ("exec", "globals") or (func.id in _DYNAMIC_CALLS and not node.args)
    return (isinstance(func, ast.Attribute) and func.attr == "run_line_magic" and bool(node.args)
            and isinstance(node.args[0], ast.Constant) and node.args[0].value in _DYNAMIC_MAGICS)


def _names_in(target: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


def _walrus_targets(nodes: list[ast.AST]) -> set[str]:
    """`:=` inside a comprehension binds in the enclosing scope."""
    return {n.target.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.NamedExpr)}


class _Scanner:
    """Walks module-level code in flow order; `bound` is what is (possibly) defined so far."""

    def __init__(self) -> None:
        self.unbound: dict[str, int] = {}
        self.assigned: set[str] = set()
        self.deferred: list[tuple[str, int]] = []  # reads in function bodies: resolved at end
        self.guarded = 0  # inside `try:` whose handler catches NameError
        # bound by a later line of an enclosing loop: an earlier pass may have run it
        self.carried: set[str] = set()

    # -- module and class bodies: run now, in order -----------------------------------------
    def read(self, node: ast.Name, bound: set[str]) -> None:
        if node.id not in bound and node.id not in _BUILTINS and not self.guarded:
            self.unbound.setdefault(node.id, node.lineno)

    def bind(self, name: str, bound: set[str], module: bool) -> None:
        bound.add(name)
        if module:
            self.assigned.add(name)

    def block(self, stmts: list[ast.stmt], bound: set[str], *, module: bool) -> None:
        for stmt in stmts:
            self.stmt(stmt, bound, module)

    def stmt(self, s: ast.stmt, bound: set[str], module: bool) -> None:
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in [*s.decorator_list, *([s.returns] if s.returns else [])]:
                self.expr(node, bound, module)
            self.arguments(s.args, bound, module)
            self.bind(s.name, bound, module)
            self.function(s, [])
        elif isinstance(s, ast.ClassDef):
            for node in [*s.decorator_list, *s.bases, *(k.value for k in s.keywords)]:
                self.expr(node, bound, module)
            self.block(s.body, set(bound), module=False)  # class scope: its names stay inside
            self.bind(s.name, bound, module)
        elif isinstance(s, ast.Assign):
            self.expr(s.value, bound, module)
            for target in s.targets:
                self.target(target, bound, module)
        elif isinstance(s, ast.AugAssign):
            self.expr(s.value, bound, module)
            if isinstance(s.target, ast.Name):  # `x += 1` reads x first
                self.read(s.target, bound)
            self.target(s.target, bound, module)
        elif isinstance(s, ast.AnnAssign):
            if s.value is not None:
                self.expr(s.value, bound, module)
            self.expr(s.annotation, bound, module)
            if s.value is not None:
                self.target(s.target, bound, module)
            elif not isinstance(s.target, ast.Name):  # a bare `x: int` binds nothing
                self.expr(s.target, bound, module)
        elif isinstance(s, ast.Delete):
            for target in s.targets:
                for node in ast.walk(target):
                    if isinstance(node, ast.Name):  # `del x` needs x
                        self.read(node, bound)
                        bound.discard(node.id)
                    elif isinstance(node, (ast.Attribute, ast.Subscript)):
                        self.expr(node, bound, module)
                        break
        elif isinstance(s, (ast.Import, ast.ImportFrom)):
            for alias in s.names:
                if alias.name != "*":
                    self.bind((alias.asname or alias.name).split(".")[0], bound, module)
        elif isinstance(s, ast.If):
            self.expr(s.test, bound, module)
            self.branches([s.body, s.orelse], bound, module)
        elif isinstance(s, (ast.For, ast.AsyncFor, ast.While)):
            if isinstance(s, ast.While):
                self.expr(s.test, bound, module)
            else:
                self.expr(s.iter, bound, module)
            # the body's top level runs unconditionally on the first pass, so `total += x`
            # without `total = 0` is reported; a branch inside may be skipped on that pass, so
            # there what a later line of the loop binds counts as bound (see `carried`)
            carried = self.carried
            self.carried = carried | self.binds(s.body)
            loop = set(bound)
            if not isinstance(s, ast.While):
                self.target(s.target, loop, module)
            self.block(s.body, loop, module=module)
            self.carried = carried
            self.block(s.orelse, loop, module=module)
            bound |= loop
        elif isinstance(s, (ast.With, ast.AsyncWith)):
            for item in s.items:
                self.expr(item.context_expr, bound, module)
                if item.optional_vars is not None:
                    self.target(item.optional_vars, bound, module)
            self.block(s.body, bound, module=module)
        elif isinstance(s, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            self.try_(s, bound, module)
        elif isinstance(s, ast.Match):
            self.expr(s.subject, bound, module)
            after = set(bound)  # no case may match
            for case in s.cases:
                inner = bound | self.carried
                self.pattern(case.pattern, inner, module)
                if case.guard is not None:
                    self.expr(case.guard, inner, module)
                self.block(case.body, inner, module=module)
                after |= inner
            bound |= after
        elif isinstance(s, (ast.Global, ast.Nonlocal)):
            pass
        else:  # Expr, Return, Raise, Assert, ...: expressions only
            for child in ast.iter_child_nodes(s):
                self.expr(child, bound, module)

    def branches(self, bodies: list[list[ast.stmt]], bound: set[str], module: bool) -> None:
        after: set[str] = set()
        for body in bodies:
            inner = bound | self.carried
            self.block(body, inner, module=module)
            after |= inner
        bound.clear()
        bound |= after

    def try_(self, s: ast.Try, bound: set[str], module: bool) -> None:
        guarded = any(h.type is None or _names_in(h.type) & _CATCH_NAMEERROR for h in s.handlers)
        body = set(bound)
        self.guarded += guarded
        self.block(s.body, body, module=module)
        self.guarded -= guarded
        after = set(body)
        self.block(s.orelse, after, module=module)
        for handler in s.handlers:
            inner = bound | body | self.carried  # the body may have run partly
            if handler.type is not None:
                self.expr(handler.type, inner, module)
            if handler.name:
                inner.add(handler.name)  # not `assigned`: Python unbinds it after the handler
            self.block(handler.body, inner, module=module)
            inner.discard(handler.name or "")
            after |= inner
        self.block(s.finalbody, after, module=module)
        bound.clear()
        bound |= after

    def pattern(self, p: ast.AST, bound: set[str], module: bool) -> None:
        for node in ast.walk(p):
            if isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
                self.bind(node.name, bound, module)
            elif isinstance(node, ast.MatchMapping):
                for key in node.keys:
                    self.expr(key, bound, module)
                if node.rest:
                    self.bind(node.rest, bound, module)
            elif isinstance(node, ast.MatchValue):
                self.expr(node.value, bound, module)
            elif isinstance(node, ast.MatchClass):
                self.expr(node.cls, bound, module)

    def target(self, t: ast.AST, bound: set[str], module: bool) -> None:
        if isinstance(t, ast.Name):
            self.bind(t.id, bound, module)
        elif isinstance(t, (ast.Tuple, ast.List)):
            for elt in t.elts:
                self.target(elt, bound, module)
        elif isinstance(t, ast.Starred):
            self.target(t.value, bound, module)
        else:  # a.b = ..., a[i] = ...: reads a (and i)
            self.expr(t, bound, module)

    def arguments(self, args: ast.arguments, bound: set[str], module: bool) -> None:
        """Defaults and annotations are evaluated where the function is defined."""
        for node in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.expr(node, bound, module)
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None and arg.annotation is not None:
                self.expr(arg.annotation, bound, module)

    def expr(self, e: ast.AST, bound: set[str], module: bool) -> None:
        if isinstance(e, ast.Name):
            if isinstance(e.ctx, ast.Load):
                self.read(e, bound)
        elif isinstance(e, ast.NamedExpr):
            self.expr(e.value, bound, module)
            self.bind(e.target.id, bound, module)
        elif isinstance(e, ast.Lambda):
            self.arguments(e.args, bound, module)
            self.function(e, [])
        elif isinstance(e, _COMPS):
            local = set(bound)
            for index, gen in enumerate(e.generators):
                # the first iterable is evaluated outside the comprehension's own scope
                self.expr(gen.iter, bound if index == 0 else local, module)
                local |= _names_in(gen.target)
                for cond in gen.ifs:
                    self.expr(cond, local, module)
            for elt in ([e.key, e.value] if isinstance(e, ast.DictComp) else [e.elt]):
                self.expr(elt, local, module)
            for name in _walrus_targets([e]):
                self.bind(name, bound, module)
        else:
            for child in ast.iter_child_nodes(e):
                self.expr(child, bound, module)

    def binds(self, stmts: list[ast.stmt]) -> set[str]:
        """Names a block binds in its own scope (for loop-carried names)."""
        out: set[str] = set()
        for stmt in stmts:
            out |= _bound_by(stmt)
        return out | _walrus_targets(stmts)

    # -- function bodies: run later, so resolved against everything the cell binds ----------
    def function(self, node: ast.AST, enclosing: list[set[str]]) -> None:
        args = node.args
        local = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs,
                                 *(a for a in (args.vararg, args.kwarg) if a is not None)]}
        body = node.body if isinstance(node.body, list) else [node.body]
        if isinstance(node.body, list):
            local |= self.binds(body)
        declared = {name for stmt in body for n in _own_scope(stmt)
                    if isinstance(n, (ast.Global, ast.Nonlocal)) for name in n.names}
        scopes = [local - declared, *enclosing]
        for stmt in body:
            self.later(stmt, scopes)

    def later(self, node: ast.AST, scopes: list[set[str]], class_scope: bool = False) -> None:
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load) and not any(node.id in s for s in scopes):
                self.deferred.append((node.id, node.lineno))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            outer = [*getattr(node, "decorator_list", []), *node.args.defaults,
                     *(d for d in node.args.kw_defaults if d is not None)]
            for child in outer:
                self.later(child, scopes)
            # a method does not see its class's names
            self.function(node, scopes[1:] if class_scope else scopes)
        elif isinstance(node, ast.ClassDef):
            for child in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
                self.later(child, scopes)
            inner = [self.binds(node.body), *scopes]
            for stmt in node.body:
                self.later(stmt, inner, class_scope=True)
        elif isinstance(node, _COMPS):
            local = {n for gen in node.generators for n in _names_in(gen.target)}
            for child in ast.iter_child_nodes(node):
                self.later(child, [local, *scopes])
        elif isinstance(node, ast.comprehension):
            for child in [node.iter, *node.ifs]:
                self.later(child, scopes)
        else:
            for child in ast.iter_child_nodes(node):
                self.later(child, scopes, class_scope and isinstance(node, ast.stmt)
                           and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))


def _own_scope(node: ast.AST):
    """Nodes of a statement that belong to its scope (not to functions or classes inside)."""
    stack = [node]
    while stack:
        cur = stack.pop()
        yield cur
        if not isinstance(cur, (*_SCOPES, *_COMPS)):
            stack.extend(ast.iter_child_nodes(cur))
