"""Notebooks only orchestrate: no definitions, and no code cell longer than MAX_CODE_LINES.

Every function, class and multi-step computation a notebook needs lives in the package, where it
is tested and linted; a notebook cell calls it. The rule is checked on the parsed code (``ast``),
so a ``def`` in a string or a comment does not count and one hidden behind an ``if`` does.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_CODE_LINES = 15
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def code_cells(path: Path) -> list[tuple[int, str]]:
    """(cell number, source) of each code cell; IPython magics and shell lines are blanked."""
    nb = json.loads(path.read_text())
    out = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            src = "".join(cell["source"])
            out.append((i, "\n".join("" if line.lstrip()[:1] in "%!" else line for line in src.splitlines())))
    return out


def code_lines(source: str) -> int:
    """Lines that hold code: neither blank nor a comment alone."""
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))


def definitions(source: str) -> list[str]:
    """``def NAME`` / ``class NAME`` / ``lambda`` found in the parsed source, with their line."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, DEFINITIONS):
            kind = "lambda" if isinstance(node, ast.Lambda) else type(node).__name__.replace("Def", "").lower()
            found.append(f"{kind} {getattr(node, 'name', '')} (line {node.lineno})".replace("  ", " "))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_has_no_definitions(path):
    bad = [f"cell {i}: {d}" for i, src in code_cells(path) for d in definitions(src)]
    assert not bad, f"{path.name} defines code (move it to the package): {bad}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_cells_are_short(path):
    long = [(i, n) for i, src in code_cells(path) if (n := code_lines(src)) > MAX_CODE_LINES]
    assert not long, f"{path.name}: code cells over {MAX_CODE_LINES} code lines (cell, lines): {long}"


def test_the_checks_catch_what_they_should():
    src = "if True:\n    def f():\n        pass\n# def not_this()\nx = 'class Nope: pass'\ny = lambda: 1\n"
    assert definitions(src) == ["function f (line 2)", "lambda (line 6)"]
    assert code_lines("a = 1\n\n# note\n  b = 2\n") == 2
