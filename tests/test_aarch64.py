"""The runtime on emulated Raspberry Pi CPUs (Cortex-A72, Cortex-A76) against x86: scripts/check_aarch64.py.

Selected only with `-m aarch64`: the first run downloads a Debian arm64 root, qemu-user and aarch64 wheels
(under a minute, kept in .cache/aarch64 or $TUMORSCAN_AARCH64_CACHE).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tumorscan.export.exporter import ExportOptions, export_model
from tumorscan.export.formats import select_targets

pytestmark = pytest.mark.aarch64

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "check_aarch64.py"
SCANS = ("tests/data/mri/train", "tests/data/mri/test", "tests/data/dicom")
SCAN_COUNT = "34"
"""32 sample MRI scans, a JPEG Lossless and a JPEG-LS DICOM file."""
RUN_CLI = "from tumorscan.cli import infer_command; infer_command(prog_name='tumor-infer')"
ROW = re.compile(
    r"^\s+(?P<cpu>cortex-a7[26])\s+Raspberry Pi [45]\s+0x\w+\s+(?:yes|no)\s+(?P<scans>\d+)\s+"
    r"(?P<agree>\d+)/\d+\s+\d+/\d+\s+\S+\s+\S+\s+(?P<result>match|MISMATCH)$",
    re.MULTILINE,
)


def check_aarch64(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run the check with this Python as the x86 reference."""
    command = [sys.executable, str(SCRIPT), "--x86-python", sys.executable, *arguments]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=1800)
    print(result.stdout, result.stderr, sep="\n")
    return result


@pytest.fixture(scope="module")
def exported(
    tiny_keras_model: Path, sample_train: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[Path]:
    """The tiny cnn2 as int8 and float32 TFLite and ONNX files."""
    options = ExportOptions(
        targets=select_targets(["tflite", "onnx"], ["int8", "fp32"]),
        out_dir=tmp_path_factory.mktemp("aarch64"),
        calibration_root=sample_train,
    )
    return [Path(file.path) for file in export_model(tiny_keras_model, options).files]


def test_packaged_model_matches_x86_on_both_pi_cpus() -> None:
    result = check_aarch64()

    assert result.returncode == 0
    assert "(packaged)" in result.stdout
    rows = [row.groupdict() for row in ROW.finditer(result.stdout)]
    assert [row["cpu"] for row in rows] == ["cortex-a72", "cortex-a76"]
    assert all(row["agree"] == row["scans"] == SCAN_COUNT and row["result"] == "match" for row in rows)


def test_exported_models_match_x86_on_both_pi_cpus(exported: list[Path]) -> None:
    result = check_aarch64(*(f"--model={path}" for path in exported))

    assert result.returncode == 0
    rows = [row.groupdict() for row in ROW.finditer(result.stdout)]
    assert [row["cpu"] for row in rows] == ["cortex-a72", "cortex-a76"] * len(exported)
    assert all(row["agree"] == row["scans"] == SCAN_COUNT and row["result"] == "match" for row in rows)


def test_a_mismatched_expectation_fails(exported: list[Path], tmp_path: Path) -> None:
    (model,) = [path for path in exported if path.name.endswith("-int8.tflite")]
    native = subprocess.run(
        [sys.executable, "-c", RUN_CLI, "--jsonl", "--model", str(model), *SCANS],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    records = [json.loads(line) for line in native.stdout.splitlines()]
    edited = records[3]
    edited["label"] = next(label for label in edited["probabilities"] if label != edited["label"])
    expectation = tmp_path / "expected.jsonl"
    expectation.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")

    result = check_aarch64(f"--model={model}", f"--expect={expectation}", "--cpu=cortex-a72")

    assert result.returncode == 1
    assert f"{edited['source']}: top-1 " in result.stdout
    assert f"reference {edited['label']}" in result.stdout
    (row,) = [row.groupdict() for row in ROW.finditer(result.stdout)]
    assert row["agree"] == str(int(SCAN_COUNT) - 1) and row["result"] == "MISMATCH"
