"""Parity gates: every export mode against its original, and a planted preprocessing break."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tumorscan.classifier import Classifier
from tumorscan.export.cli import export_command, parity_command
from tumorscan.export.exporter import ExportReport
from tumorscan.export.parity import (
    ParityError,
    ParityReport,
    compare_probabilities,
    run_parity,
)
from tumorscan.sections import ParityLimits

FP32_TOLERANCE = 1e-4
"""fp32 files run the same float graph; only kernel summation order differs."""


@pytest.fixture(scope="module")
def parity(tiny_keras_model: Path, exported_files: dict[str, Path], sample_train: Path) -> ParityReport:
    return run_parity(tiny_keras_model, list(exported_files.values()), sample_train, progress=False)


def test_every_export_mode_is_checked(parity: ParityReport, exported_files: dict[str, Path]) -> None:
    assert [Path(e.file) for e in parity.exports] == list(exported_files.values())
    for export in parity.exports:
        assert export.subsets["all"].scans == 24


def test_fp32_exports_agree_on_every_scan(parity: ParityReport) -> None:
    fp32 = [e for e in parity.exports if e.quantization == "fp32"]
    assert len(fp32) == 2
    for export in fp32:
        full = export.subsets["all"]
        assert full.agreement == 1.0 and not full.flips
        assert full.max_abs_diff < FP32_TOLERANCE


def test_flips_carry_the_original_margin_and_ties_in_the_export() -> None:
    original = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]], np.float32)
    exported = np.array([[0.1, 0.45, 0.45], [0.7, 0.2, 0.1], [0.1, 0.6, 0.3]], np.float32)
    subset = compare_probabilities(original, exported, np.array([1, 0, 2]), ["a", "b", "c"], ["x", "y", "z"])
    assert subset.agreement == pytest.approx(2 / 3)
    (flip,) = subset.flips
    assert (flip.scan, flip.truth, flip.original, flip.exported) == ("z", "c", "c", "b")
    assert flip.margin == pytest.approx(0.2) and not flip.tie
    original[0] = [0.1, 0.4, 0.5]
    (flip, _) = compare_probabilities(
        original, exported, np.array([1, 0, 2]), ["a", "b", "c"], ["x", "y", "z"]
    ).flips
    assert flip.scan == "x" and flip.tie and flip.margin == pytest.approx(0.1)


def test_quantized_exports_stay_within_the_limits(parity: ParityReport) -> None:
    for export in parity.exports:
        assert export.passed, (export.file, export.failures)
        assert export.subsets["all"].original_recall.keys() == export.subsets["all"].export_recall.keys()


def test_a_different_resize_on_the_device_is_caught(
    tiny_keras_model: Path,
    exported_files: dict[str, Path],
    sample_train: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A device that resizes differently (here: nearest-neighbour from half resolution) fails parity."""
    honest = Classifier.probabilities

    def resized_differently(self: Classifier, pixels: np.ndarray) -> np.ndarray:
        coarse = pixels[:, ::2, ::2].repeat(2, axis=1).repeat(2, axis=2)
        return honest(self, coarse)

    monkeypatch.setattr(Classifier, "probabilities", resized_differently)
    report = run_parity(
        tiny_keras_model,
        [exported_files["tflite-fp32"]],
        sample_train,
        limits=ParityLimits(max_prob_diff=FP32_TOLERANCE),
        progress=False,
    )
    assert not report.passed
    assert report.exports[0].subsets["all"].max_abs_diff > 100 * FP32_TOLERANCE
    assert any("probability differs" in failure for failure in report.exports[0].failures)


def test_clean_subset_and_calibration_exclusion(
    tiny_keras_model: Path,
    exported_files: dict[str, Path],
    exported: ExportReport,
    sample_train: Path,
    sample_test: Path,
    tmp_path: Path,
) -> None:
    """Calibration scans (all of the sample training scans) are left out; the audit adds a clean subset."""
    import shutil

    from tumorscan.train.audit import audit_dataset

    data = tmp_path / "data"
    shutil.copytree(sample_test, data)
    for scan in sample_train.glob("*/*.jpg"):
        shutil.copy(scan, data / scan.parent.name / f"train-{scan.name}")
    shutil.copy(sample_train / "no_tumor" / "1.jpg", data / "no_tumor" / "copy.jpg")
    audit_dataset(data, reference=sample_train, progress=False).write(tmp_path)
    manifest = Path(exported.files[0].path).parent / f"{Path(exported.source).stem}-calibration.json"
    calibrated = len(json.loads(manifest.read_text(encoding="utf-8"))["entries"])

    result = run_parity(
        tiny_keras_model,
        [exported_files["onnx-int8"]],
        data,
        audit=tmp_path / "audit.json",
        exclude_manifest=manifest,
        progress=False,
    )
    subsets = result.exports[0].subsets
    assert result.excluded == calibrated + 1  # the copy has the same bytes as a calibration scan
    assert subsets["all"].scans == 8
    assert subsets["clean"].scans == 8  # the test scans have no twin among the sample training scans


def test_other_source_and_other_labels_are_refused(
    exported_files: dict[str, Path], tmp_path: Path, sample_train: Path, tiny_keras_model: Path
) -> None:
    import shutil
    import zipfile

    other = tmp_path / "other.keras"
    shutil.copy(tiny_keras_model, other)
    with zipfile.ZipFile(other, "a") as archive:
        archive.writestr("extra.txt", "changes the file hash")
    with pytest.raises(ParityError, match="--allow-other-source"):
        run_parity(other, [exported_files["tflite-int8"]], sample_train, progress=False)
    with pytest.warns(UserWarning, match="compared anyway"):
        run_parity(
            other, [exported_files["tflite-int8"]], sample_train, allow_other_source=True, progress=False
        )


def test_parity_command_writes_outputs_and_fails_on_limits(
    tiny_keras_model: Path, exported_files: dict[str, Path], sample_train: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    files = [str(exported_files["tflite-int8"]), str(exported_files["onnx-fp32"])]
    base = [str(tiny_keras_model), *files, "--data", str(sample_train), "--out", str(tmp_path)]
    result = runner.invoke(parity_command, base)
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "FAIL" not in result.output
    saved = json.loads((tmp_path / "parity.json").read_text(encoding="utf-8"))
    assert saved["passed"] is True and len(saved["exports"]) == 2
    assert (tmp_path / "parity_recall.png").read_bytes()[:4] == b"\x89PNG"

    strict = runner.invoke(parity_command, [*base, "--max-prob-diff", "0"])
    assert strict.exit_code == 1
    assert "parity limits failed" in strict.output


def test_parity_command_rejects_unknown_classes(
    tiny_keras_model: Path, exported_files: dict[str, Path], tmp_path: Path, sample_train: Path
) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(sample_train, data)
    shutil.copytree(data / "no_tumor", data / "astrocytoma")
    result = CliRunner().invoke(
        parity_command, [str(tiny_keras_model), str(exported_files["tflite-int8"]), "--data", str(data)]
    )
    assert result.exit_code == 1
    assert "astrocytoma" in result.output and "Traceback" not in result.output


def test_export_with_parity_stores_results_in_metadata(
    tiny_keras_model: Path, sample_train: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        export_command,
        [
            str(tiny_keras_model),
            "--int8",
            "--format",
            "tflite",
            "--calibration",
            str(sample_train),
            "--parity",
            str(sample_train.parent / "test"),
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    spec = Classifier.load(tmp_path / "tiny-int8.tflite").spec
    assert spec.parity is not None
    report = json.loads((tmp_path / "parity.json").read_text(encoding="utf-8"))
    assert spec.parity.scans == 8 and spec.parity.passed is True  # exit status 0: the limits held
    assert spec.parity.agreement == round(report["exports"][0]["subsets"]["all"]["agreement"], 4)
    assert (tmp_path / "parity.json").is_file()
