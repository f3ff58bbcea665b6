"""The maintenance scripts start and explain themselves (their logic is tested through the package)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

SAYS = {
    "check_aarch64.py": ("emulated Raspberry Pi CPUs", "--expect FILE"),
    "measure_shift.py": ("false alarms", "--audit AUDIT"),
    "dicom_testdata.py": ("pydicom's own test data",),
    "bench_studies.py": ("--studies",),
    "show_sr.py": ("Structured Report",),
    "check_listen.py": ("--kill-after N",),
    "bench_ray.py": ("--engine ray", "--count"),
    "measure_report.py": ("headless Chromium", "--screenshot SCREENSHOT"),
    "measure_robustness.py": ("foreign images", "rotated 90, 180 and", "--validation TRAINING", "--mirror"),
    "measure_heatmaps.py": ("deletion and insertion curves", "--count COUNT"),
}
"""What each script's --help must say."""


@pytest.mark.parametrize(("script", "says"), SAYS.items(), ids=list(SAYS))
def test_script_explains_itself(script: str, says: tuple[str, ...]) -> None:
    result = subprocess.run([sys.executable, str(SCRIPTS / script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for words in says:
        assert words in result.stdout
