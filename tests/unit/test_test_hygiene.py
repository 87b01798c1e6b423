"""The test tree keeps its own rules, checked on its source with ast (issue 11):

- a test module imports its helpers from tests/conftest.py or a kit module (tests/kernelkit.py,
  tests/integration/servicekit.py), never from another test module;
- no literal path in the host's /tmp: a test's files go in its tmp_path;
- no fixed sleep: `time.sleep` is called only in a loop that polls a condition (as
  conftest.wait_for does). A sleep in a string is a step's code, the workload: allowed;
- nothing registered at import time (`executors.register(...)` at module level): a test
  registers what it needs with the register_executor fixture.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
SLEEPS = {("time", "sleep"), ("asyncio", "sleep")}
LOOPS = (ast.For, ast.AsyncFor, ast.While)
TMP = "/" + "tmp/"  # written so that this file holds no such literal itself
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.Module)


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(TESTS.parent).with_suffix("").parts)


def is_test_module(name: str) -> bool:
    return name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_")


def imported(tree: ast.AST, name: str) -> list[tuple[int, str]]:
    """(line, module) of every import in `tree`, relative ones resolved from module `name`;
    `from package import module` gives `package.module` too."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".")[:-node.level]
                base = ".".join([*package, base] if base else package)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def sleeps_outside_loops(tree: ast.AST) -> list[int]:
    """Lines of `time.sleep(...)` / `asyncio.sleep(...)` calls (or a bare `sleep` imported
    from time) not inside a loop of their own function."""
    bare = {alias.asname or alias.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module in ("time", "asyncio")
            for alias in node.names if alias.name == "sleep"}
    lines: list[int] = []

    def is_sleep(node: ast.AST) -> bool:
        if not isinstance(node, ast.Call):
            return False
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            return (func.value.id, func.attr) in SLEEPS
        return isinstance(func, ast.Name) and func.id in bare

    def visit(node: ast.AST, in_loop: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if is_sleep(child) and not in_loop:
                lines.append(child.lineno)
            visit(child, False if isinstance(child, SCOPES) else
                  in_loop or isinstance(child, LOOPS))

    visit(tree, False)
    return lines


def tmp_literals(tree: ast.AST) -> list[int]:
    """Lines of string literals naming a path in /tmp (a file or directory in it), or /tmp
    itself handed to a call (`Path("/tmp")`, `mkdtemp(dir="/tmp")`)."""
    found = [node.lineno for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and TMP in node.value]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            args = [*node.args, *(k.value for k in node.keywords)]
            found += [a.lineno for a in args
                      if isinstance(a, ast.Constant) and a.value == TMP.rstrip("/")]
    return found


def registers_at_import(tree: ast.Module) -> list[int]:
    """Lines of module-level `something.register(...)` calls: an executor (or any plug-in)
    registered for every test that happens to run after this module is imported."""
    return [node.lineno for node in tree.body
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "register"]


def problems(path: Path, source: str) -> list[str]:
    name = module_name(path)
    tree = ast.parse(source, filename=str(path))
    where = path.relative_to(TESTS.parent)
    found = [f"{where}:{line}: imports test module {module}"
             for line, module in imported(tree, name) if is_test_module(module)]
    found += [f"{where}:{line}: a fixed sleep (wait for the condition: conftest.wait_for)"
              for line in sleeps_outside_loops(tree)]
    found += [f"{where}:{line}: a path in /tmp (use tmp_path)"
              for line in tmp_literals(tree)]
    found += [f"{where}:{line}: registers at import time (use the register_executor fixture)"
              for line in registers_at_import(tree)]
    return found


def test_the_test_tree_keeps_its_rules():
    sources = sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)
    assert len(sources) > 40 and Path(__file__) in sources  # the whole tree, this file too
    found = [line for path in sources for line in problems(path, path.read_text())]
    assert found == [], "\n".join(found)


HERE = TESTS / "integration" / "test_example.py"


@pytest.mark.parametrize("source, expected", [
    ("from tests.integration.test_kernelpool import wait_gone",
     "imports test module tests.integration.test_kernelpool"),
    ("from .test_checks_cli import no_run_started",
     "imports test module tests.integration.test_checks_cli"),
    ("from tests.integration import test_store_health",
     "imports test module tests.integration.test_store_health"),
    ("def f():\n    import tests.unit.test_dag", "imports test module tests.unit.test_dag"),
    ("import time\ndef test_x():\n    time.sleep(1)\n    assert True", "a fixed sleep"),
    ("from time import sleep as nap\nnap(0.5)", "a fixed sleep"),
    ("import asyncio\nasync def f():\n    await asyncio.sleep(1)", "a fixed sleep"),
    ("while True:\n    def f():\n        time.sleep(1)", "a fixed sleep"),  # not its loop
    (f"open('{TMP}mlpipe-timeout-pid', 'w')", "a path in /tmp"),
    (f"code = \"open('{TMP}pid', 'w')\"", "a path in /tmp"),
    ("found = Path('/tmp').glob('mlpipe-k*')", "a path in /tmp"),
    ("tempfile.TemporaryDirectory(dir='/tmp')", "a path in /tmp"),
    ("executors.register(InProcess.name, InProcess)", "registers at import time"),
])
def test_each_rule_finds_what_it_forbids(source, expected):
    found = problems(HERE, source)
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize("source", [
    "from tests.conftest import wait_for\nfrom tests.kernelkit import ask",
    "from tests.integration.servicekit import Service\nfrom .servicekit import serving",
    "import time\nwhile not done():\n    time.sleep(0.05)",
    "for i in range(3):\n    time.sleep(0.01)  # pacing a stream of events",
    "CELL = '%%step slow\\nimport time\\ntime.sleep(60)'",  # a step's code: the workload
    "assert env['HOME'] == '/tmp'",  # a path in a container, not on this host
])
def test_what_the_rules_allow(source):
    assert problems(HERE, source) == []


def test_an_executor_registered_for_a_test_is_gone_after_it():
    from mlpipe_jupyter.executors import Executor, executors
    from tests.conftest import registered

    class Probe(Executor):
        name = "hygiene-probe"

    with registered(Probe) as name:
        assert name == "hygiene-probe" and executors.get("hygiene-probe") is Probe
    assert "hygiene-probe" not in executors.names()  # the next test never sees it
