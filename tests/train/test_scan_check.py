"""The scan check: negatives made from scans and numpy, the layers it reads, its fit and its storage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tumorscan.errors import ModelError
from tumorscan.train.distance import DistanceStats, read_distance
from tumorscan.train.keras_file import read_keras_spec
from tumorscan.train.negatives import SCAN_TRANSFORMS, synthetic_images, transformed_scans
from tumorscan.train.scan_check import (
    SCAN_SHARE,
    ScanCheck,
    fit_scan_check,
    pooled_layers,
    scan_features_model,
)


def test_every_transform_changes_the_scan_and_keeps_its_shape() -> None:
    scan = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    images, kinds = transformed_scans(scan[None], seed=0)
    assert kinds == tuple(SCAN_TRANSFORMS)
    assert all(image.shape == scan.shape and not np.array_equal(image, scan) for image in images)
    assert np.array_equal(images[kinds.index("rotated_180")], scan[::-1, ::-1])


def test_quarter_turns_are_left_out_for_scans_that_are_not_square() -> None:
    _, kinds = transformed_scans(np.zeros((1, 20, 30, 3), np.uint8), seed=0)
    assert "rotated_90" not in kinds and "rotated_180" in kinds


def test_synthetic_images_are_seeded_grey_and_of_every_kind() -> None:
    images, kinds = synthetic_images(8, (20, 30), seed=1)
    again, _ = synthetic_images(8, (20, 30), seed=1)
    assert images.shape == (8, 20, 30, 3) and np.array_equal(images, again)
    assert len(set(kinds)) == 4
    assert np.array_equal(images[..., 0], images[..., 2])  # grey
    assert all(np.ptp(image) > 100 for image in images)  # full range, not flat


def test_pooled_layers_are_the_last_at_each_resolution_of_a_stranger_model() -> None:
    import keras

    model = keras.applications.MobileNetV3Small(
        input_shape=(64, 64, 3), weights=None, classes=4, include_preprocessing=True, include_top=True
    )
    with pytest.raises(ModelError, match="Dense"):
        scan_features_model(model, pooled_layers(model))  # ends in an Activation, not a Dense layer
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    base = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, include_top=False)
    x = keras.layers.GlobalAveragePooling2D()(base(x))
    nested = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    conv, pool = nested.layers[1].name, nested.layers[2].name
    assert pooled_layers(nested) == (conv, pool)  # the nested model's inner layers are not in the outer graph
    features = scan_features_model(nested, pooled_layers(nested))
    assert features.output.shape[-1] == 576 + 3 + 3 + 3 * 6 * 6  # penultimate, two means, a 6 x 6 grid
    assert scan_features_model(nested, ()).output.shape[-1] == 576  # without layers: the penultimate only


def test_the_fit_flags_its_share_of_validation_and_measures_held_out_negatives(
    tiny_keras_model: Path, sample_train: Path, tmp_path: Path
) -> None:
    from tumorscan.train.data import load_dataset
    from tumorscan.train.keras_file import load_keras

    model = load_keras(tiny_keras_model)
    scans = load_dataset(sample_train, (32, 32), tmp_path, progress=False)
    rows = np.arange(len(scans))
    fit = fit_scan_check(model, scans.pixels, rows[rows % 3 != 0], rows[rows % 3 == 0])
    assert fit is not None
    assert fit.check.layers == pooled_layers(model)
    assert (fit.validation_ratios > 1).mean() <= SCAN_SHARE + 1 / len(fit.validation_ratios)
    assert set(fit.entry["held_out_flagged"]) == {*SCAN_TRANSFORMS, "synthetic"}
    features = scan_features_model(model, fit.check.layers)(
        np.asarray(scans.pixels[rows % 3 == 0], np.float32)
    )
    assert np.allclose(fit.check.ratios(np.asarray(features)), fit.validation_ratios, atol=1e-4)


def test_the_check_travels_with_the_distance_statistics(calibrated: Path) -> None:
    stats = read_distance(calibrated)
    assert stats is not None and stats.scan is not None
    again = DistanceStats.from_bytes(stats.to_bytes())
    assert isinstance(again.scan, ScanCheck)
    assert again.scan.layers == stats.scan.layers and np.array_equal(again.scan.weights, stats.scan.weights)
    assert DistanceStats.from_bytes(DistanceStats(stats.means, stats.whitening, 1.0).to_bytes()).scan is None
    spec = read_keras_spec(calibrated)
    assert spec is not None and spec.trust is not None
    assert spec.trust["scan_check"]["layers"] == list(stats.scan.layers)
