"""Temperature, threshold and input checks: the maths on known cases, tumor-calibrate on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tumorscan.images import load_pixels
from tumorscan.metadata import read_model_spec
from tumorscan.train.calibrate import (
    choose_threshold,
    expected_calibration_error,
    fit_input_checks,
    fit_temperature,
    negative_log_likelihood,
)
from tumorscan.train.calibrate_cli import calibrate_command
from tumorscan.train.keras_file import read_keras_spec
from tumorscan.train.nonscans import non_mri_images
from tumorscan.trust import Trust, apply_temperature, input_statistics


def softmax(logits: np.ndarray) -> np.ndarray:
    scaled = np.exp(logits - logits.max(axis=1, keepdims=True))
    return scaled / scaled.sum(axis=1, keepdims=True)


def test_temperature_recovers_an_overconfident_model() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 4))
    truth = np.array([rng.choice(4, p=row) for row in softmax(logits)])
    overconfident = softmax(logits * 3).astype(np.float32)  # the true temperature is 3
    temperature = fit_temperature(overconfident, truth)
    assert abs(temperature - 3) < 0.3
    after = apply_temperature(overconfident, temperature)
    assert expected_calibration_error(after, truth) < 0.03 < expected_calibration_error(overconfident, truth)
    assert negative_log_likelihood(after, truth) < negative_log_likelihood(overconfident, truth)


def test_ece_of_known_bins() -> None:
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    truth = np.array([0, 1, 0, 0])  # bin 0.9: accuracy 0.5; bin 0.6: accuracy 1
    assert np.isclose(expected_calibration_error(probabilities, truth), (2 * 0.4 + 2 * 0.4) / 4)


def test_threshold_keeps_the_answered_scans_at_the_target() -> None:
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    truth = np.array([0, 0, 0, 1, 0, 1])  # wrong at 0.8 and 0.6
    assert choose_threshold(probabilities, truth, 0.95) == 0.9
    assert choose_threshold(probabilities, truth, 0.75) == 0.7
    assert choose_threshold(probabilities, np.ones(6, dtype=int), 0.95) == 0.99  # nothing reaches it


def test_input_checks_flag_the_non_mri_set(sample_train: Path) -> None:
    images = non_mri_images()
    assert len(images) >= 30 and len({np.asarray(i).tobytes() for i in images.values()}) == len(images)
    training = np.stack([load_pixels(path, (224, 224)) for path in sorted(sample_train.rglob("*.jpg"))])
    checks = fit_input_checks(input_statistics(training))
    trust = Trust(input_checks={name: (low, high) for name, (low, high) in checks.items()})
    foreign = np.stack([load_pixels(image, (224, 224)) for image in images.values()])
    flagged = {name for name, failed in zip(images, trust.out_of_range(foreign), strict=True) if failed}
    must = {name for name in images if name.startswith(("flat_", "colour_", "noise_", "text_page", "chart_"))}
    assert must <= flagged and len(flagged) >= 0.9 * len(images)
    assert not any(trust.out_of_range(training))  # the ranges hold every scan they were fitted on


def test_calibrate_writes_a_model_that_carries_its_trust_entry(
    tiny_keras_model: Path, sample_train: Path, tmp_path: Path
) -> None:
    args = [tiny_keras_model, "--data", sample_train, "--out", tmp_path, "--val-split", "0.5"]
    result = CliRunner().invoke(calibrate_command, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "temperature" in result.output and "validation ECE" in result.output
    spec = read_keras_spec(tmp_path / "model.keras")
    assert spec is not None and spec.trust is not None
    entry = json.loads((tmp_path / "trust.json").read_text(encoding="utf-8"))
    assert spec.trust == entry and entry["temperature"] > 0 and 0 < entry["threshold"] <= 1
    assert entry["validation"]["scans"] == 12 and entry["validation"]["ece_bins"] == 15
    assert set(entry["input_checks"]) == {
        "colour",
        "contrast",
        "brightness",
        "dark_share",
        "roughness",
        "edge",
        "border",
    }
    assert (tmp_path / "reliability.png").stat().st_size > 1000
    assert Trust.from_spec(spec) is not None


def test_trust_report_of_an_exported_model(
    tiny_keras_model: Path, sample_train: Path, sample_test: Path, tmp_path: Path
) -> None:
    from tumorscan.export.exporter import ExportOptions, export_model
    from tumorscan.export.formats import select_targets
    from tumorscan.train.calibrate_cli import trust_command

    run = CliRunner().invoke(
        calibrate_command,
        [str(tiny_keras_model), "--data", str(sample_train), "--out", str(tmp_path), "--val-split", "0.5"],
    )
    assert run.exit_code == 0, run.output
    options = ExportOptions(
        targets=select_targets("tflite", "int8"), out_dir=tmp_path / "export", calibration_root=sample_train
    )
    exported = export_model(tmp_path / "model.keras", options)
    model = Path(exported.files[0].path)
    assert read_model_spec(model).trust == read_keras_spec(tmp_path / "model.keras").trust  # type: ignore[union-attr]
    args = [str(model), "--data", str(sample_test), "--out", str(tmp_path / "report")]
    result = CliRunner().invoke(trust_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "trust_report.json").read_text(encoding="utf-8"))
    table = report["tables"]["test"]
    assert table["scans"] == 8 and 0 <= table["answered"] <= 8 and report["non_mri"]["images"] >= 30
    assert "non-MRI images:" in result.output and (tmp_path / "report" / "risk_coverage.png").is_file()
    assert set(report["calibration"]) == {"validation", "test"}
    assert report["calibration"]["validation"] == {
        k: report["validation"][k] for k in ("ece_before", "ece_after", "nll_before", "nll_after")
    }
    assert "ECE without" in result.output


def test_the_calibration_table_undoes_the_temperature_to_compare() -> None:
    from tumorscan.train.trust_report import Outcome, calibration_effect
    from tumorscan.trust import apply_temperature

    raw = np.array([[0.6, 0.4], [0.7, 0.3], [0.2, 0.8], [0.55, 0.45]], np.float32)
    truth = np.array([0, 1, 1, 0])
    none = np.zeros(4, dtype=bool)
    sharpened = Outcome(apply_temperature(raw, 0.5), truth, none, none)
    effect = calibration_effect(sharpened, 0.5)
    assert effect["nll_before"] == pytest.approx(negative_log_likelihood(raw, truth), abs=1e-3)
    assert (
        effect["nll_after"] > effect["nll_before"]
    )  # sharpening a model that is wrong a quarter of the time


def test_confident_half_accuracy_ranks_by_confidence() -> None:
    from tumorscan.train.trust_report import Outcome, confident_half_accuracy

    confidence = np.array([0.99, 0.9, 0.8, 0.7, 0.6, 0.55])
    probabilities = np.stack([confidence, 1 - confidence], axis=1).astype(np.float32)
    truth = np.array([0, 1, 0, 0, 1, 1])  # wrong at 0.9 (and right at the two least confident)
    none = np.zeros(6, dtype=bool)
    outcome = Outcome(probabilities, truth, none, none)
    assert confident_half_accuracy(outcome) == pytest.approx(2 / 3, abs=1e-4)
