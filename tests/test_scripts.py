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


def test_measure_shift_explains_itself() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "measure_shift.py"), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "false alarms" in result.stdout and "--audit AUDIT" in result.stdout


def test_dicom_testdata_explains_itself() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "dicom_testdata.py"), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "pydicom's own test data" in result.stdout


def test_study_scripts_explain_themselves() -> None:
    for script, says in (("bench_studies.py", "--studies"), ("show_sr.py", "Structured Report")):
        result = subprocess.run(
            [sys.executable, str(SCRIPTS / script), "--help"], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert says in result.stdout


def test_check_listen_explains_itself() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "check_listen.py"), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "--kill-after N" in result.stdout


def test_bench_ray_explains_itself() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_ray.py"), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "--engine ray" in result.stdout and "--count" in result.stdout


def test_measure_report_explains_itself() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "measure_report.py"), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "headless Chromium" in result.stdout and "--screenshot SCREENSHOT" in result.stdout
