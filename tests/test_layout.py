"""Every module imports through the one `tumorscan` package."""

from __future__ import annotations

import importlib
import pkgutil

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
