"""Functions stay short: a long one becomes a short orchestrator of named stages."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("runtime", "train", "export", "calibration")
MAX_LINES = 60
"""From the `def` line to the function's last line, docstring included (decorators not)."""
ALLOWED: dict[str, str] = {}
"""Functions that may stay longer, as "folder/module.py:qualified.name", each with the reason."""


def function_lengths(source: str) -> dict[str, int]:
    """Lines of every function and method in `source`, nested ones too, by qualified name."""
    lengths = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    lengths[name] = int(child.end_lineno or child.lineno) - child.lineno + 1
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return lengths


def all_lengths() -> dict[str, int]:
    return {
        f"{path.relative_to(REPO).as_posix()}:{name}": lines
        for folder in FOLDERS
        for path in sorted((REPO / folder).rglob("*.py"))
        for name, lines in function_lengths(path.read_text(encoding="utf-8")).items()
    }


def test_no_function_is_longer_than_the_limit() -> None:
    lengths = all_lengths()
    assert len(lengths) > 500  # every package was read
    offenders = [
        f"{name}: {lines} lines"
        for name, lines in lengths.items()
        if lines > MAX_LINES and name not in ALLOWED
    ]
    assert not offenders, (
        f"functions over {MAX_LINES} lines; split them into named stages (or add them to ALLOWED "
        "with the reason): " + "; ".join(offenders)
    )


def test_allowed_functions_exist_and_are_still_long() -> None:
    lengths = all_lengths()
    stale = [name for name in ALLOWED if lengths.get(name, 0) <= MAX_LINES]
    assert not stale, f"remove from ALLOWED (gone or short now): {stale}"


def test_lengths_count_every_line_of_nested_and_method_bodies() -> None:
    source = "class A:\n    def f(self):\n        def g():\n            pass\n\n        return g\n"
    assert function_lengths(source) == {"A.f": 5, "A.f.g": 2}
