"""No two modules of the four packages import each other, at module level or inside a function.

Imports under `if TYPE_CHECKING:` are for the type checker only and do not count. A package's
`__init__` re-exporting its modules is not a circle either (its modules import their siblings, not it).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "runtime": "tumorscan",
    "train": "tumorscan.train",
    "export": "tumorscan.export",
    "calibration": "tumorscan.calibration",
}


def module_names() -> dict[str, Path]:
    """Dotted name -> file, for every module of the four packages."""
    names = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names[".".join((package, *parts))] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            found += [n for child in node.orelse for n in _import_nodes(ast.Module([child], []))]
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        found += _import_nodes(node)
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that module `name` (file `path`) imports anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            base = package
            for _ in range(node.level - 1 if node.level else 0):
                base = base.rpartition(".")[0]
            module = node.module or ""
            base = (f"{base}.{module}" if module else base) if node.level else module
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        targets.update(candidate for candidate in candidates if candidate in known)
    targets.discard(name)
    return targets


def circles() -> list[str]:
    names = module_names()
    graph = {name: imports_of(name, path, set(names)) for name, path in names.items()}
    found = []
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            if name < target and name in graph.get(target, set()):
                if name == target.rpartition(".")[0] or target == name.rpartition(".")[0]:
                    continue  # a package and its own module (re-exports)
                found.append(f"{name} <-> {target}")
    return found


def test_the_checker_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    module = tmp_path / "a.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nfrom . import b\nif TYPE_CHECKING:\n    from .c import C\n"
        "def f():\n    from ..d import e\n    import tumorscan.x\n",
        encoding="utf-8",
    )
    known = {"tumorscan.p.b", "tumorscan.p.c", "tumorscan.d", "tumorscan.d.e", "tumorscan.x"}
    expected = {"tumorscan.p.b", "tumorscan.d", "tumorscan.d.e", "tumorscan.x"}
    assert imports_of("tumorscan.p.a", module, known) == expected


def test_no_two_modules_import_each_other() -> None:
    assert circles() == []
