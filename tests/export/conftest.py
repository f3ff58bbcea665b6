"""Exports of the tiny model in every format and mode, and small foreign Keras models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tumorscan.export.exporter import ExportOptions, ExportReport, export_model
from tumorscan.export.formats import TARGETS


@pytest.fixture(scope="session")
def exported(
    tiny_keras_model: Path, sample_train: Path, tmp_path_factory: pytest.TempPathFactory
) -> ExportReport:
    """The tiny cnn2 exported to every format and mode, calibrated on the sample training scans."""
    options = ExportOptions(
        targets=TARGETS, out_dir=tmp_path_factory.mktemp("export"), calibration_root=sample_train
    )
    return export_model(tiny_keras_model, options)


@pytest.fixture(scope="session")
def exported_files(exported: ExportReport) -> dict[str, Path]:
    """Exported file per target name ("tflite-int8", ...)."""
    return {file.target: Path(file.path) for file in exported.files}


RunModel = Callable[[Path, np.ndarray], np.ndarray]


def _run_model_file(path: Path, pixels: np.ndarray) -> np.ndarray:
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, {session.get_inputs()[0].name: pixels.astype(np.float32)})[0])
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    rows = []
    for image in pixels:
        scale, zero_point = source["quantization"]
        value = image.astype(np.float32)
        if scale:
            value = np.round(value / scale + zero_point)
        interpreter.set_tensor(source["index"], value[np.newaxis].astype(source["dtype"]))
        interpreter.invoke()
        raw = interpreter.get_tensor(target["index"]).astype(np.float32)
        scale, zero_point = target["quantization"]
        rows.append((raw - zero_point) * scale if scale else raw)
    return np.concatenate(rows)


@pytest.fixture(scope="session")
def run_model() -> RunModel:
    """A function: probabilities of a .tflite (LiteRT) or .onnx (onnxruntime) file for N x H x W x 3 uint8."""
    return _run_model_file


@pytest.fixture(scope="session")
def foreign_logits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Sequential without normalisation layers whose last Dense outputs logits (3 classes)."""
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ],
        name="foreign",
    )
    path = tmp_path_factory.mktemp("foreign") / "foreign.keras"
    model.save(path)
    return path
