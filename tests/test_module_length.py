"""No module of the four packages is over 450 lines: a long module is split along its stages."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("runtime", "train", "export", "calibration")
LIMIT = 450


def long_modules(root: Path = ROOT, limit: int = LIMIT) -> list[str]:
    """'path: N lines' for each module of the packages over `limit` lines."""
    found = []
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            count = len(path.read_text(encoding="utf-8").splitlines())
            if count > limit:
                found.append(f"{path.relative_to(root)}: {count} lines")
    return found


def test_a_long_module_is_found(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "long.py").write_text("x = 1\n" * 451, encoding="utf-8")
    (tmp_path / "train" / "short.py").write_text("x = 1\n" * 450, encoding="utf-8")
    assert long_modules(tmp_path) == ["train/long.py: 451 lines"]


def test_no_module_is_over_the_limit() -> None:
    assert long_modules() == [], "split these modules along their stages"
