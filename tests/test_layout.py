"""Every module imports through the one `tumorscan` package, and dependencies point one way."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

PACKAGES = ("tumorscan", "tumorscan.train", "tumorscan.export", "tumorscan.calibration")


def test_every_module_imports() -> None:
    names = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}.")]
    assert "tumorscan.train.architectures" in names
    assert "tumorscan.calibration.selection" in names
    for name in names:
        importlib.import_module(name)


REPO = Path(__file__).resolve().parents[1]
FOLDERS = {
    "runtime": "tumorscan",
    "calibration": "tumorscan.calibration",
    "train": "tumorscan.train",
    "export": "tumorscan.export",
}
MAY_IMPORT = {
    "runtime": {"runtime"},
    "calibration": {"runtime", "calibration"},
    "train": {"runtime", "train"},
    "export": {"runtime", "calibration", "train", "export"},
}
"""Dependencies point one way: the runtime imports nothing of the others; export may use them all."""


def layer(module: str) -> str | None:
    """The folder a `tumorscan` module lives in, or None for a module outside the package."""
    if module != "tumorscan" and not module.startswith("tumorscan."):
        return None
    for folder, package in FOLDERS.items():
        if package != "tumorscan" and (module == package or module.startswith(package + ".")):
            return folder
    return "runtime"


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, relative ones resolved, nested ones too."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found += [(node.lineno, base)]
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def wrong_way_imports(folder: str, relative: Path, source: str) -> list[str]:
    """Imports in one source file against the direction of MAY_IMPORT."""
    parts = [FOLDERS[folder], *relative.with_suffix("").parts]
    is_package = parts[-1] == "__init__"
    module = ".".join(parts[:-1] if is_package else parts)
    wrong = []
    for line, name in imported_modules(source, module, is_package):
        target = layer(name)
        if target is not None and target not in MAY_IMPORT[folder]:
            wrong.append(f"{folder}/{relative.as_posix()}:{line}: imports {name} ({target}/)")
    return sorted(set(wrong))


def test_dependencies_point_one_way() -> None:
    wrong = []
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO / folder)
            wrong += wrong_way_imports(folder, relative, path.read_text(encoding="utf-8"))
    assert wrong == []


def test_imports_against_the_direction_are_found() -> None:
    source = "from tumorscan.export.parity import x\nimport tumorscan.calibration\n"
    assert wrong_way_imports("train", Path("trainer.py"), source) == [
        "train/trainer.py:1: imports tumorscan.export.parity (export/)",
        "train/trainer.py:1: imports tumorscan.export.parity.x (export/)",
        "train/trainer.py:2: imports tumorscan.calibration (calibration/)",
    ]
    nested = "def f():\n    from ..train import data\n"
    assert wrong_way_imports("runtime", Path("backends/onnx.py"), nested) == [
        "runtime/backends/onnx.py:2: imports tumorscan.train (train/)",
        "runtime/backends/onnx.py:2: imports tumorscan.train.data (train/)",
    ]
    assert wrong_way_imports("export", Path("bench/run.py"), "from ..parity import x\n") == []
    assert wrong_way_imports("runtime", Path("cli.py"), "from .models import default_model_path\n") == []


def test_mypy_sees_the_installed_layout() -> None:
    """The links under .mypy_paths map each import package onto its folder, as package-dir does."""
    links = REPO / ".mypy_paths"
    seen = {"tumorscan": (links / "package" / "tumorscan").resolve()}
    for folder in ("train", "export", "calibration"):
        seen[f"tumorscan.{folder}"] = (links / "subpackages" / "tumorscan" / folder).resolve()
    assert seen == {package: REPO / folder for folder, package in FOLDERS.items()}
