"""The shift check's statistics: two-sample tests on known distributions, the stored reference, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from tumorscan.errors import MetadataError, SiteError
from tumorscan.shift import (
    MIN_SITE_SCANS,
    SHIFT_ENTRY,
    Observations,
    compare,
    observe,
    reference_of,
)

LABELS = ("a", "b", "c")


def _observations(
    rng: np.random.Generator, count: int, sharpness: float = 2.0, bright: float = 80.0
) -> Observations:
    logits = rng.normal(0, sharpness, (count, len(LABELS)))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pixels = np.clip(rng.normal(bright, 40, (count, 16, 16, 3)), 0, 255).astype(np.uint8)
    distance = rng.gamma(2.0, 0.25, count)
    return observe(LABELS, probabilities.astype(np.float32), pixels, distance, distance > 1)


def test_the_same_distribution_is_rarely_called_shifted() -> None:
    rng = np.random.default_rng(0)
    reference = _observations(rng, 300)
    verdicts = [compare(reference, _observations(rng, 50), LABELS).shifted for _ in range(40)]
    assert sum(verdicts) <= 2  # Bonferroni keeps the family's false alarms at or under 5%


def test_sharper_answers_or_darker_scans_are_called_shifted() -> None:
    rng = np.random.default_rng(1)
    reference = _observations(rng, 300)
    sharper = compare(reference, _observations(rng, 40, sharpness=6.0), LABELS)
    darker = compare(reference, _observations(rng, 40, bright=40.0), LABELS)
    assert sharper.shifted and darker.shifted
    assert min(sharper.tests, key=lambda t: t.corrected).name in {"confidence", "p(a)", "p(b)", "p(c)"}
    report = darker.to_dict()
    assert report["shifted"] is True and report["p_value"] < 0.01
    assert report["correction"] == f"Bonferroni over {len(darker.tests)} tests"
    assert "tumor-adapt" in report["advice"]


def test_every_test_is_bonferroni_corrected() -> None:
    rng = np.random.default_rng(2)
    report = compare(_observations(rng, 100), _observations(rng, 30), LABELS)
    for test in report.tests:
        assert test.corrected == pytest.approx(min(1.0, test.p_value * len(report.tests)))
    names = {test.name for test in report.tests}
    assert {"confidence", "distance_ratio", "predicted classes", "flagged out of distribution"} <= names


def test_too_few_site_scans_get_no_verdict() -> None:
    rng = np.random.default_rng(3)
    with pytest.raises(SiteError, match=f"at least {MIN_SITE_SCANS}"):
        compare(_observations(rng, 100), _observations(rng, MIN_SITE_SCANS - 1), LABELS)


def test_the_reference_survives_the_spec_round_trip() -> None:
    rng = np.random.default_rng(4)
    original = _observations(rng, 30)
    entry = original.to_entry(scans_from="validation")
    again = reference_of({SHIFT_ENTRY: entry}, LABELS, "m.tflite")
    assert np.array_equal(again.predicted, original.predicted)
    assert np.allclose(again.statistics["confidence"], original.statistics["confidence"], atol=1e-4)
    assert entry["scans"] == 30 and entry["scans_from"] == "validation"


@pytest.mark.parametrize(
    "broken",
    [
        {"statistics": {"confidence": [0.5, 0.6]}, "predicted": [0], "flagged": [False]},
        {"statistics": {"confidence": "x"}, "predicted": [0], "flagged": [False]},
        {"statistics": {"confidence": [0.5]}, "predicted": [7], "flagged": [False]},
        {"predicted": [0], "flagged": [False]},
        [],
    ],
)
def test_a_malformed_reference_is_a_metadata_error(broken: object) -> None:
    with pytest.raises(MetadataError, match=r"m\.tflite: the shift reference"):
        reference_of({SHIFT_ENTRY: broken}, LABELS, "m.tflite")


def test_a_model_without_a_reference_says_how_to_get_one() -> None:
    with pytest.raises(MetadataError, match="tumor-calibrate"):
        reference_of({"temperature": 1.0}, LABELS, "m.tflite")
    with pytest.raises(MetadataError, match="no shift reference"):
        reference_of(None, LABELS, "m.tflite")
