"""Every module imports through the one `tumorscan` package."""

from __future__ import annotations

import importlib
import pkgutil

import tumorscan


def test_every_module_imports() -> None:
    names = [m.name for m in pkgutil.walk_packages(tumorscan.__path__, prefix="tumorscan.")]
    assert "tumorscan.train.architectures" in names
    for name in names:
        importlib.import_module(name)
