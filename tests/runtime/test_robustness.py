"""The robustness measurements of scripts/measure_robustness.py (`tumorscan.train.robustness`), tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tumorscan import Classifier
from tumorscan.folders import scan_dataset
from tumorscan.train.negatives import centre_crop
from tumorscan.train.robustness import (
    VARIANTS,
    Answers,
    measure,
    summary,
    table,
    validation_scans,
)


def test_the_changes_are_mirrors_rotations_and_centre_crops() -> None:
    pixels = np.arange(6 * 4, dtype=np.uint8).reshape(6, 4)
    image = Image.fromarray(pixels)
    changed = {name: np.asarray(transform(image)) for name, transform in VARIANTS.items()}
    assert np.array_equal(changed["original"], pixels)
    assert np.array_equal(changed["mirrored"], pixels[:, ::-1])
    for turns, name in enumerate(("rotated_90", "rotated_180", "rotated_270"), 1):
        assert np.array_equal(changed[name], np.rot90(pixels, turns))  # counter-clockwise
    assert np.array_equal(changed["zoomed_2x"], pixels[1:4, 1:3])
    assert centre_crop(1.5)(Image.new("L", (300, 200))).size == (200, 133)


def test_a_wrong_answer_is_one_given_and_wrong() -> None:
    found = Answers(
        labels=np.array(["a", "b", "b", "a"]),
        confidence=np.array([0.9, 0.8, 0.7, 0.6]),
        abstained=np.array([False, False, True, True]),
        flagged=np.array([False, False, False, True]),
    )
    reference = Answers(np.array(["a", "a", "b", "b"]), found.confidence, found.abstained, found.flagged)
    row = summary(found, ["a", "a", "a", "a"], reference)
    assert row == {
        "scans": 4,
        "accuracy": 0.5,
        "answered_wrong": 0.25,  # the abstained wrong answer does not count
        "flagged": 0.25,
        "abstained": 0.5,
        "same_label_as_original": 0.5,
    }
    assert "same_label_as_original" not in summary(found, ["a"] * 4)


def test_the_validation_scans_are_the_recorded_split(tflite_fp32: Path, sample_train: Path) -> None:
    classifier = Classifier.load(tflite_fp32)
    scans = validation_scans(classifier, sample_train, None, "random")
    assert len(scans) == 4 and len({scan.path for scan in scans}) == 4  # 15% of 24, one per class
    assert sorted(scan.label for scan in scans) == sorted(classifier.labels)
    assert all(scan.path.parent.name == scan.label for scan in scans)


@pytest.mark.parametrize("mirror", [False, True])
def test_measure_reports_every_set_and_restores_the_mode(
    tflite_fp32: Path, sample_test: Path, sample_train: Path, mirror: bool
) -> None:
    classifier = Classifier.load(tflite_fp32)
    classifier.abstain_threshold = 0.0  # abstain only out of distribution (never, without a trust entry)
    classifier.mirror = mirror
    test = scan_dataset(sample_test, classifier.labels)
    foreign = {"white": Image.new("L", (64, 64), 255), "noise": Image.effect_noise((64, 64), 60)}
    results = measure(classifier, test, scan_dataset(sample_train)[:3], foreign)
    assert classifier.mirror is mirror and results["mirror"] is mirror
    assert list(results["variants"]) == list(VARIANTS)
    assert all(row["scans"] == 8 for row in results["variants"].values())
    assert results["test_files"]["scans"] == 8 and results["validation"]["scans"] == 3
    mirrored = results["variants"]["mirrored"]["same_label_as_original"]
    assert mirrored == 1.0 if mirror else mirrored < 1.0  # the tiny model is not symmetric
    assert results["foreign"]["flagged"] == 0 and len(results["foreign"]["not_flagged"]) == 2
    assert set(results["seconds_per_scan"]) == {"plain", "mirror"}
    text = table(results)
    assert "rotated_180" in text and "not flagged: white:" in text and "with --mirror" in text
