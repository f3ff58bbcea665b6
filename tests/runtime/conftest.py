"""Tiny deployable models for runtime tests: TFLite fp32, int8 (uint8 in/out) and ONNX, spec embedded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tumorscan.folders import scan_dataset
from tumorscan.images import load_pixels
from tumorscan.metadata import embed_tflite_metadata
from tumorscan.sections import QuantizationSpec
from tumorscan.spec import METADATA_KEY, ModelSpec


def _keras(path: Path) -> tuple[Any, ModelSpec]:
    from tumorscan.train.keras_file import load_keras, read_keras_spec

    spec = read_keras_spec(path)
    assert spec is not None
    return load_keras(path), spec


def _convert(model: Any, io_type: str | None = None, calibration: list[np.ndarray] | None = None) -> bytes:
    """fp32 TFLite, or full-integer int8 with `io_type` ("uint8" or "int8") inputs and outputs."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if io_type is not None:
        assert calibration is not None
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([p[None].astype(np.float32)] for p in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = getattr(tf, io_type)
    return bytes(converter.convert())


@pytest.fixture(scope="session")
def tiny_spec(tiny_keras_model: Path) -> ModelSpec:
    """The spec stored with the tiny Keras model."""
    return _keras(tiny_keras_model)[1]


@pytest.fixture(scope="session")
def tflite_fp32(tiny_keras_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as float32 TFLite (float 0-255 input) with its spec embedded."""
    model, spec = _keras(tiny_keras_model)
    spec = spec.with_updates(quantization=QuantizationSpec("fp32"))
    path = tmp_path_factory.mktemp("tflite") / "tiny_fp32.tflite"
    path.write_bytes(embed_tflite_metadata(_convert(model), spec))
    return path


def _int8(keras_path: Path, sample_train: Path, folder: Path, io_type: str) -> Path:
    model, spec = _keras(keras_path)
    calibration = [load_pixels(s.path, spec.input.size) for s in scan_dataset(sample_train)[::2]]
    calibration.append(np.linspace(0, 255, 32 * 32 * 3).reshape(32, 32, 3))  # full 0-255 range: input scale 1
    spec = spec.with_updates(quantization=QuantizationSpec("int8"))
    path = folder / f"tiny_int8_{io_type}.tflite"
    path.write_bytes(embed_tflite_metadata(_convert(model, io_type, calibration), spec))
    return path


@pytest.fixture(scope="session")
def tflite_int8(tiny_keras_model: Path, sample_train: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as full-integer int8 TFLite with uint8 input and output, spec embedded."""
    return _int8(tiny_keras_model, sample_train, tmp_path_factory.mktemp("tflite"), "uint8")


@pytest.fixture(scope="session")
def tflite_int8_signed(
    tiny_keras_model: Path, sample_train: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny model as full-integer int8 TFLite with int8 input and output (zero point -128)."""
    return _int8(tiny_keras_model, sample_train, tmp_path_factory.mktemp("tflite"), "int8")


def _onnx_model(tiny_keras_model: Path) -> tuple[Any, ModelSpec]:
    import tensorflow as tf
    import tf2onnx

    model, spec = _keras(tiny_keras_model)
    height, width = spec.input.size
    signature = [tf.TensorSpec((None, height, width, 3), tf.float32, name="pixels")]
    proto, _ = tf2onnx.convert.from_function(
        tf.function(lambda x: model(x, training=False)), input_signature=signature, opset=17
    )
    return proto, spec


@pytest.fixture(scope="session")
def onnx_plain(tiny_keras_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as ONNX (float 0-255 input, dynamic batch) without tumorscan metadata."""
    proto, _ = _onnx_model(tiny_keras_model)
    path = tmp_path_factory.mktemp("onnx") / "tiny_plain.onnx"
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.fixture(scope="session")
def onnx_model(onnx_plain: Path, tiny_spec: ModelSpec) -> Path:
    """The tiny model as ONNX with its spec in metadata_props."""
    import onnx

    proto = onnx.load(str(onnx_plain))
    entry = proto.metadata_props.add()
    spec = tiny_spec.with_updates(quantization=QuantizationSpec("fp32"))
    entry.key, entry.value = METADATA_KEY, spec.to_json()
    path = onnx_plain.with_name("tiny.onnx")
    path.write_bytes(proto.SerializeToString())
    return path
