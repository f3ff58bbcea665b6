"""Every registered architecture, built small, survives export: int8 TFLite and fp32 ONNX, spec inside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tumorscan.classifier import Classifier
from tumorscan.export.exporter import ExportOptions, export_model
from tumorscan.export.formats import TARGETS
from tumorscan.folders import scan_dataset
from tumorscan.images import load_pixels
from tumorscan.spec import DEFAULT_LABELS as LABELS
from tumorscan.spec import InputSpec, ModelSpec
from tumorscan.train.architectures import ARCHITECTURES, build_model
from tumorscan.train.keras_file import save_keras

SMALL = (32, 32)
ROUND_TRIP = ("tflite-int8", "onnx-fp32")
TOLERANCE = {"tflite-int8": 0.05, "onnx-fp32": 1e-4}
"""int8: a few output steps (1/256) of quantization noise; fp32: kernel summation order."""
SLOW = {"vgg16"}
"""Its fully connected layers hold 19M parameters even at 32x32: about two minutes of conversion here."""


NAMES = [pytest.param(name, marks=[pytest.mark.slow] * (name in SLOW)) for name in sorted(ARCHITECTURES)]


@pytest.mark.parametrize("name", NAMES)
def test_every_architecture_round_trips_through_int8_tflite_and_fp32_onnx(
    name: str, sample_train: Path, sample_test: Path, tmp_path: Path
) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = build_model(name, input_size=SMALL, num_classes=len(LABELS))
    normalization = ARCHITECTURES[name].normalization
    original = tmp_path / f"{name}.keras"
    spec = ModelSpec(labels=LABELS, input=InputSpec(*SMALL, normalization=normalization), architecture=name)
    save_keras(model, original, spec)
    targets = tuple(target for target in TARGETS if target.name in ROUND_TRIP)
    options = ExportOptions(targets, tmp_path / "export", calibration_root=sample_train, calibration_count=24)
    report = export_model(original, options)

    pixels = np.stack([load_pixels(scan.path, SMALL) for scan in scan_dataset(sample_test)])
    expected = np.asarray(model(pixels.astype(np.float32), training=False))
    assert [Path(file.path).name for file in report.files] == [f"{name}-int8.tflite", f"{name}-fp32.onnx"]
    for file, target in zip(report.files, targets, strict=True):
        classifier = Classifier.load(file.path)
        read = classifier.spec
        assert (read.architecture, read.input.normalization, read.labels) == (name, normalization, LABELS)
        np.testing.assert_allclose(classifier.probabilities(pixels), expected, atol=TOLERANCE[target.name])
