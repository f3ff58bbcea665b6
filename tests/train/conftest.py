"""Helpers for training tests: copies of the sample scans that tests may break."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def scans_copy(sample_train: Path, tmp_path: Path) -> Path:
    """A writable copy of the sample training scans."""
    target = tmp_path / "data"
    shutil.copytree(sample_train, target)
    return target
