"""Exports of the tiny cnn2 in every format and mode: files, integer kernels, probabilities, metadata."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import tumorscan
from tumorscan.export.exporter import REPORT_JSON, REPORT_TEXT, ExportReport
from tumorscan.folders import scan_dataset
from tumorscan.images import load_pixels
from tumorscan.metadata import read_model_spec
from tumorscan.spec import DEFAULT_LABELS as LABELS
from tumorscan.train.keras_file import file_sha256, load_keras

TINY_SIZE = (32, 32)
RunModel = Callable[[Path, np.ndarray], np.ndarray]

ALL_TARGETS = ("tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8", "onnx-fp32", "onnx-int8")


def _test_pixels(sample_test: Path) -> np.ndarray:
    return np.stack([load_pixels(scan.path, TINY_SIZE) for scan in scan_dataset(sample_test)])


def test_every_format_and_mode_is_written_with_its_report(exported: ExportReport) -> None:
    out = Path(exported.files[0].path).parent
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "tiny-fp32.tflite",
            "tiny-fp16.tflite",
            "tiny-dynamic.tflite",
            "tiny-int8.tflite",
            "tiny-fp32.onnx",
            "tiny-int8.onnx",
            "tiny-calibration.json",
            REPORT_JSON,
            REPORT_TEXT,
        ]
    )
    assert tuple(f.target for f in exported.files) == ALL_TARGETS
    written = json.loads((out / REPORT_JSON).read_text(encoding="utf-8"))
    assert [f["size_bytes"] for f in written["files"]] == [
        Path(f.path).stat().st_size for f in exported.files
    ]
    table = (out / REPORT_TEXT).read_text(encoding="utf-8")
    for file in exported.files:
        assert Path(file.path).name in table


def test_quantized_files_are_smaller(exported: ExportReport) -> None:
    sizes = {f.target: f.size_bytes for f in exported.files}
    assert sizes["tflite-fp16"] < 0.6 * sizes["tflite-fp32"]
    assert sizes["tflite-int8"] < 0.35 * sizes["tflite-fp32"]
    assert sizes["onnx-int8"] < 0.35 * sizes["onnx-fp32"]
    assert all(0 < f.size_ratio < 1 and f.seconds > 0 for f in exported.files)


def test_tflite_int8_holds_integer_tensors_and_kernels_only(exported_files: dict[str, Path]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(exported_files["tflite-int8"]))
    tensors = interpreter.get_tensor_details()
    assert {t["dtype"].__name__ for t in tensors} <= {"int8", "uint8", "int32"}
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert interpreter.get_output_details()[0]["dtype"] == np.uint8
    weights = {
        op["op_name"]: tensors[op["inputs"][1]]["dtype"].__name__
        for op in interpreter._get_ops_details()
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")
    }
    assert weights == {"CONV_2D": "int8", "FULLY_CONNECTED": "int8"}


def test_tflite_fp16_and_dynamic_store_smaller_weights(exported_files: dict[str, Path]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    def dtypes(target: str) -> Counter[str]:
        interpreter = Interpreter(model_path=str(exported_files[target]))
        return Counter(t["dtype"].__name__ for t in interpreter.get_tensor_details())

    assert dtypes("tflite-fp16")["float16"] >= 4
    assert dtypes("tflite-dynamic")["int8"] >= 2
    assert "int8" not in dtypes("tflite-fp32") and "float16" not in dtypes("tflite-fp32")


def test_onnx_int8_holds_qdq_nodes_and_int8_weights(exported_files: dict[str, Path]) -> None:
    import onnx

    model = onnx.load(exported_files["onnx-int8"])
    onnx.checker.check_model(model)
    ops = Counter(node.op_type for node in model.graph.node)
    assert ops["QuantizeLinear"] >= 3 and ops["DequantizeLinear"] >= 6
    int8 = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    dequantized = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    weight_inputs = [n.input[1] for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    assert len(weight_inputs) == 4
    assert all(dequantized.get(name) in int8 for name in weight_inputs)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_every_file_returns_probabilities(
    target: str, exported_files: dict[str, Path], sample_test: Path, run_model: RunModel
) -> None:
    probabilities = run_model(exported_files[target], _test_pixels(sample_test))
    assert probabilities.shape == (8, len(LABELS))
    assert probabilities.min() >= 0
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.02)


@pytest.mark.parametrize("target", ["tflite-fp32", "onnx-fp32", "tflite-fp16", "tflite-dynamic"])
def test_float_exports_match_keras(
    target: str,
    exported_files: dict[str, Path],
    tiny_keras_model: Path,
    sample_test: Path,
    run_model: RunModel,
) -> None:
    pixels = _test_pixels(sample_test)
    expected = np.asarray(load_keras(tiny_keras_model)(pixels.astype(np.float32), training=False))
    tolerance = 1e-4 if target.endswith("fp32") else 0.02
    np.testing.assert_allclose(run_model(exported_files[target], pixels), expected, atol=tolerance)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_metadata_round_trips(
    target: str, exported_files: dict[str, Path], exported: ExportReport, tiny_keras_model: Path
) -> None:
    path = exported_files[target]
    spec = read_model_spec(path)
    assert spec.labels == LABELS
    assert spec.input.size == TINY_SIZE and spec.input.normalization == "rescale"
    assert spec.architecture == "cnn2"
    assert spec.source_sha256 == file_sha256(tiny_keras_model)
    assert spec.quantization is not None and spec.quantization.mode == target.split("-")[1]
    assert set(spec.provenance["tools"]) >= {
        "tumorscan",
        "tensorflow",
        "keras",
        "tf2onnx",
        "onnx",
        "onnxruntime",
    }
    assert spec.provenance["tools"]["tumorscan"] == tumorscan.__version__
    assert datetime.fromisoformat(spec.provenance["date_utc"]).tzinfo is not None
    assert [f.spec for f in exported.files if f.target == target] == [spec]


def test_calibrated_files_record_quantization_and_calibration(exported_files: dict[str, Path]) -> None:
    manifest = json.loads((exported_files["tflite-int8"].parent / "tiny-calibration.json").read_text("utf-8"))
    tflite, onnx = (
        read_model_spec(exported_files["tflite-int8"]),
        read_model_spec(exported_files["onnx-int8"]),
    )
    for spec in (tflite, onnx):
        assert spec.calibration is not None
        assert spec.calibration.manifest_sha256 == manifest["manifest_sha256"]
        assert (spec.calibration.count, spec.calibration.seed, spec.calibration.folder) == (24, 0, "train")
    int8, qdq = tflite.quantization, onnx.quantization
    assert int8 is not None and qdq is not None
    assert (int8.mode, int8.input_dtype, int8.output_dtype, int8.per_channel, int8.calibration_method) == (
        "int8",
        "uint8",
        "uint8",
        True,
        "minmax",
    )
    assert int8.input_scale is not None and 0.9 < int8.input_scale <= 1.0 and int8.input_zero_point == 0
    assert (qdq.format, qdq.per_channel, qdq.input_dtype, qdq.calibration_method) == (
        "QDQ",
        True,
        "float32",
        "minmax",
    )
    assert read_model_spec(exported_files["tflite-fp32"]).calibration is None


def test_exported_files_load_in_the_runtime(exported_files: dict[str, Path], sample_test: Path) -> None:
    from tumorscan.classifier import Classifier

    for target in ("tflite-int8", "onnx-int8"):
        prediction = Classifier.load(exported_files[target]).predict(scan_dataset(sample_test)[0].path)
        assert prediction.label in LABELS
