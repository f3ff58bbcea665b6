"""Calibrated confidence and abstention in the runtime; older files without a trust entry still work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tumorscan import Classifier
from tumorscan.cli import infer_command
from tumorscan.errors import MetadataError
from tumorscan.metadata import embed_tflite_metadata, read_model_spec
from tumorscan.spec import ModelSpec
from tumorscan.trust import LOW_CONFIDENCE, OUT_OF_DISTRIBUTION, Trust, apply_temperature

GREY_SCAN_CHECKS = {"colour": [0.0, 0.02], "contrast": [0.03, 0.5], "brightness": [0.01, 0.6]}


def with_trust(model: Path, folder: Path, **entry: object) -> Path:
    """A copy of a TFLite model whose spec carries `entry` as its trust entry."""
    spec = read_model_spec(model).with_updates(trust=dict(entry))
    path = folder / "trusted.tflite"
    path.write_bytes(embed_tflite_metadata(model.read_bytes(), spec))
    return path


def run_infer(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(infer_command, [str(arg) for arg in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_an_older_file_predicts_and_says_once_that_it_cannot_abstain(
    tflite_int8: Path, sample_test: Path
) -> None:
    classifier = Classifier.load(tflite_int8)
    assert classifier.trust is None and "abstention unavailable" in str(classifier.abstention_unavailable)
    predictions = classifier.predict_many(sorted(sample_test.rglob("*.jpg")))
    assert all(p.abstain is None and p.reasons == () for p in predictions)  # type: ignore[union-attr]
    code, stdout, stderr = run_infer("--model", tflite_int8, "--jsonl", sample_test)
    assert code == 0 and stderr.count("abstention unavailable") == 1
    assert all(json.loads(line)["abstain"] is None for line in stdout.splitlines())


def test_temperature_is_applied_to_the_exported_probabilities(tflite_fp32: Path, tmp_path: Path) -> None:
    scan = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    raw = Classifier.load(tflite_fp32).predict(scan)
    calibrated = Classifier.load(with_trust(tflite_fp32, tmp_path, temperature=2.5)).predict(scan)
    expected = apply_temperature(np.array([list(raw.probabilities.values())], dtype=np.float32), 2.5)[0]
    assert np.allclose(list(calibrated.probabilities.values()), expected, atol=1e-6)
    assert calibrated.label == raw.label and calibrated.confidence < raw.confidence
    assert calibrated.abstain is False  # a trust entry without threshold or checks never abstains


def test_low_confidence_abstains_and_the_threshold_can_be_overridden(
    tflite_int8: Path, sample_test: Path, tmp_path: Path
) -> None:
    model = with_trust(tflite_int8, tmp_path, temperature=1.0, threshold=0.999)
    code, stdout, stderr = run_infer("--model", model, sample_test)
    assert code == 0  # abstaining is an answer, not an error
    assert stdout.count(f"ABSTAIN ({LOW_CONFIDENCE})") == 8 and "8 abstained" in stdout + stderr
    code, stdout, _ = run_infer("--model", model, "--abstain-threshold", "0", "--jsonl", sample_test)
    records = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0 and all(r["abstain"] is False and "reasons" not in r for r in records)


def test_input_checks_flag_what_is_not_a_grey_scan(
    tflite_int8: Path, sample_test: Path, tmp_path: Path
) -> None:
    classifier = Classifier.load(with_trust(tflite_int8, tmp_path, input_checks=GREY_SCAN_CHECKS))
    flat = np.full((64, 64, 3), 255, dtype=np.uint8)
    red = np.zeros((64, 64, 3), dtype=np.uint8)
    red[..., 0] = np.arange(64)[:, None] * 4
    for image in (flat, red):
        prediction = classifier.predict(image)
        assert prediction.abstain is True and prediction.reasons == (OUT_OF_DISTRIBUTION,)
        assert prediction.to_dict()["reasons"] == [OUT_OF_DISTRIBUTION]
    scans = classifier.predict_many(sorted(sample_test.rglob("*.jpg")))
    assert not any(p.abstain for p in scans)  # type: ignore[union-attr]


def test_a_threshold_alone_enables_abstention_on_an_older_file(tflite_fp32: Path) -> None:
    classifier = Classifier.load(tflite_fp32)
    classifier.abstain_threshold = 1.0
    assert classifier.abstention_unavailable is None
    prediction = classifier.predict(np.zeros((32, 32, 3), dtype=np.uint8))
    assert prediction.abstain is True and prediction.reasons == (LOW_CONFIDENCE,)


def test_specs_without_the_field_load_and_a_malformed_entry_is_refused(tiny_spec: ModelSpec) -> None:
    document = json.loads(tiny_spec.to_json())
    del document["trust"]
    assert ModelSpec.from_json(json.dumps(document)).trust is None
    broken = tiny_spec.with_updates(trust={"temperature": -1})
    with pytest.raises(MetadataError, match="temperature must be positive"):
        Trust.from_spec(broken)
    with pytest.raises(MetadataError, match="trust entry"):
        Trust.from_spec(tiny_spec.with_updates(trust={"input_checks": {"colour": 3}}))
