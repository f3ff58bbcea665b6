"""The maintenance scripts start and explain themselves (their logic is tested through the package)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def test_check_aarch64_explains_itself() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "check_aarch64.py"), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "emulated Raspberry Pi CPUs" in result.stdout and "--expect FILE" in result.stdout


def test_bench_ray_explains_itself() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_ray.py"), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "--engine ray" in result.stdout and "--count" in result.stdout
