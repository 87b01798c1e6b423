"""The package's shape (issue 11): subpackages by purpose, at most 8 modules at the top level,
no module over 450 lines, every subpackage saying what it is for."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mlpipe_jupyter"
SUBPACKAGES = {"model", "run", "step", "kernels", "executors", "ui", "server", "service"}


def modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "labextension" not in p.parts]


def test_at_most_eight_modules_at_the_top_level():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == SUBPACKAGES


def test_no_module_is_over_450_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in modules()
            if (n := len(p.read_text().splitlines())) > 450}
    assert not long


def test_every_subpackage_says_what_it_is_for():
    for name in SUBPACKAGES:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and len(doc.split()) >= 8, name
