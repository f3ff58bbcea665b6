"""The feature-distance output: the maths, the graph head, and the exported files through the runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tumorscan import Classifier
from tumorscan.export.exporter import ExportOptions, ExportReport, export_model
from tumorscan.export.formats import select_targets
from tumorscan.images import load_pixels
from tumorscan.train.distance import (
    RATIO_RANGE,
    DistanceStats,
    fit_distance,
    read_distance,
    with_distance_output,
)
from tumorscan.train.features import features_model
from tumorscan.train.keras_file import load_keras
from tumorscan.train.scan_check import scan_features_model
from tumorscan.trust import OUT_OF_DISTRIBUTION


@pytest.fixture(scope="module")
def exported(
    calibrated: Path, sample_train: Path, sample_test: Path, tmp_path_factory: pytest.TempPathFactory
) -> ExportReport:
    """The calibrated tiny model as int8 TFLite, fp32 and int8 ONNX, with parity on the sample test scans."""
    targets = select_targets(["tflite", "onnx"], ["int8"]) + select_targets("onnx", "fp32")
    out = tmp_path_factory.mktemp("out")
    options = ExportOptions(
        targets=targets, out_dir=out, calibration_root=sample_train, parity_data=sample_test
    )
    return export_model(calibrated, options)


@pytest.fixture(scope="module")
def exports(exported: ExportReport) -> dict[str, Path]:
    """Exported file per target."""
    return {file.target: Path(file.path) for file in exported.files}


def test_parity_compares_what_the_runtime_reports(exported: ExportReport) -> None:
    assert exported.parity is not None
    float_export = next(p for p in exported.parity.exports if p.quantization == "fp32")
    assert float_export.subsets["all"].max_abs_diff < 1e-4  # the temperature is applied on both sides


def test_distance_is_the_mahalanobis_distance_to_the_nearest_class() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    labels = rng.integers(0, 3, 300)
    features += labels[:, None] * 2.0
    stats = fit_distance(features, labels, 3)
    means = np.stack([features[labels == c].mean(axis=0) for c in range(3)])
    centred = features - means[labels]
    covariance = centred.T @ centred / len(features)
    covariance += 0.01 * np.trace(covariance) / 5 * np.eye(5)
    precision = np.linalg.inv(covariance)
    probe = rng.normal(size=(4, 5)) * 3
    expected = [min((x - m) @ precision @ (x - m) for m in means) for x in probe]
    assert np.allclose(stats.distances(probe), expected, rtol=1e-4)
    again = DistanceStats.from_bytes(stats.to_bytes())
    assert np.array_equal(again.whitening, stats.whitening) and again.threshold == stats.threshold


def test_the_graph_head_matches_numpy(calibrated: Path, sample_test: Path) -> None:
    model, stats = load_keras(calibrated), read_distance(calibrated)
    assert stats is not None and stats.threshold > 0
    pixels = np.stack([load_pixels(p, (32, 32)) for p in sorted(sample_test.rglob("*.jpg"))]).astype(
        np.float32
    )
    probabilities, ratio = with_distance_output(model, stats)(pixels)
    assert np.allclose(probabilities, model(pixels), atol=1e-6)
    expected = stats.distances(np.asarray(features_model(model)(pixels))) / stats.threshold
    assert np.allclose(np.asarray(ratio)[:, 0], expected, rtol=1e-3)
    assert np.all(np.asarray(ratio)[:, 1] == RATIO_RANGE)
    assert stats.scan is not None
    scan = stats.scan.ratios(np.asarray(scan_features_model(model, stats.scan.layers)(pixels)))
    assert np.allclose(np.asarray(ratio)[:, 2], scan, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("target", ["tflite-int8", "onnx-fp32", "onnx-int8"])
def test_exports_carry_the_distance_and_the_runtime_flags_by_it(
    target: str, exports: dict[str, Path], calibrated: Path, sample_test: Path
) -> None:
    classifier = Classifier.load(exports[target])
    backend = classifier._backend
    assert backend.distance is not None and backend.distance.shape[-1] == 3
    trust = classifier.spec.trust
    assert trust is not None and "feature_distance" in trust and trust["scan_check"]["column"] == 2
    stats = read_distance(calibrated)
    assert stats is not None and stats.scan is not None
    scans = sorted(sample_test.rglob("*.jpg"))
    noise = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pixels = np.stack([load_pixels(source, (32, 32)) for source in [*scans, noise]])
    _, ratio = backend.run_with_distance(pixels)
    assert ratio is not None
    model, floats = load_keras(calibrated), pixels.astype(np.float32)
    expected = stats.distances(np.asarray(features_model(model)(floats))) / stats.threshold
    scan = stats.scan.ratios(np.asarray(scan_features_model(model, stats.scan.layers)(floats)))
    expected = np.maximum(expected, scan)
    if target == "onnx-fp32":
        assert np.allclose(ratio, expected, rtol=1e-3)
    else:  # int8 activations saturate at the calibration scans' range: far inputs read lower, still above 1
        near = expected < 1.5
        assert np.all(np.abs(ratio[near] - expected[near]) < 0.4)  # the scan check's ratio is the coarser
        clear = np.abs(expected - 1) > 0.4
        assert np.array_equal(ratio[clear] > 1, expected[clear] > 1)
    assert expected[-1] > 1.5 and ratio[-1] > 1  # noise is far from the scans
    for prediction, value in zip(classifier.predict_many(pixels), ratio, strict=True):
        assert (OUT_OF_DISTRIBUTION in prediction.reasons) >= (value > 1)  # type: ignore[union-attr]


def test_probabilities_stay_output_zero_of_the_tflite_file(exports: dict[str, Path]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    outputs = Interpreter(model_path=str(exports["tflite-int8"])).get_output_details()
    assert [list(o["shape"]) for o in outputs] == [[1, 4], [1, 3]]
    assert all(o["dtype"] == np.uint8 for o in outputs)  # MediaPipe refuses int8 outputs, uint8 is accepted


def test_head_layers_are_told_from_the_classifier_s() -> None:
    from tumorscan.train.distance import is_head_layer

    assert is_head_layer("cnn2_distance/scan_ratio_pinned/MatMul;cnn2_distance/scan_ratio_pinned/Relu")
    assert is_head_layer("distance_whiten") and is_head_layer("StatefulPartitionedCall:1;training_distance")
    assert not is_head_layer("cnn2_distance/conv1/Conv2D") and not is_head_layer("dense_1/MatMul")
