"""Calibration feeds: the TFLite representative dataset and the ONNX Runtime reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tumorscan.calibration import (
    CalibrationSet,
    OnnxCalibrationReader,
    select_calibration,
    tflite_representative_dataset,
)

pytestmark = pytest.mark.filterwarnings("ignore::tumorscan.calibration.selection.CalibrationWarning")

SIZE = (32, 32)


@pytest.fixture(scope="module")
def calibration(sample_train: Path) -> CalibrationSet:
    return select_calibration(sample_train, SIZE, count=8, progress=False)


def test_representative_dataset_yields_one_batch_per_scan(calibration: CalibrationSet) -> None:
    dataset = tflite_representative_dataset(calibration)
    samples = list(dataset())
    assert len(samples) == 8
    for sample, pixels in zip(samples, calibration.iter_pixels(), strict=True):
        assert len(sample) == 1
        assert sample[0].shape == (1, 32, 32, 3) and sample[0].dtype == np.float32
        np.testing.assert_array_equal(sample[0][0], pixels)
    assert len(list(dataset())) == 8
    assert next(iter(tflite_representative_dataset(calibration, np.uint8)()))[0].dtype == np.uint8


def test_onnx_reader_protocol(calibration: CalibrationSet) -> None:
    reader = OnnxCalibrationReader(calibration, "pixels")
    batches = []
    while (batch := reader.get_next()) is not None:
        batches.append(batch)
    assert len(batches) == len(reader) == 8
    assert set(batches[0]) == {"pixels"}
    assert batches[0]["pixels"].shape == (1, 32, 32, 3) and batches[0]["pixels"].dtype == np.float32
    assert reader.get_next() is None
    reader.rewind()
    rewound = reader.get_next()
    assert rewound is not None
    np.testing.assert_array_equal(rewound["pixels"], batches[0]["pixels"])


def test_onnx_reader_batches_and_ranges(calibration: CalibrationSet) -> None:
    reader = OnnxCalibrationReader(calibration, "x", dtype=np.float16, batch_size=3)
    assert len(reader) == 3
    shapes = [reader.get_next()["x"].shape for _ in range(3)]  # type: ignore[index]
    assert shapes == [(3, 32, 32, 3), (3, 32, 32, 3), (2, 32, 32, 3)]
    reader.set_range(1, 2)
    only = reader.get_next()
    assert only is not None and only["x"].dtype == np.float16
    np.testing.assert_array_equal(only["x"][0], list(calibration.iter_pixels())[3])
    assert reader.get_next() is None
    with pytest.raises(ValueError):
        OnnxCalibrationReader(calibration, "x", batch_size=0)


def test_onnx_runtime_quantizes_with_the_reader(calibration: CalibrationSet, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    quantization = pytest.importorskip("onnxruntime.quantization")
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(
        np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32), "w"
    )
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
            helper.make_node("Conv", ["nchw", "w"], ["features"]),
            helper.make_node("GlobalAveragePool", ["features"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["scores"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, 32, 32, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 4])],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    source, target = tmp_path / "tiny.onnx", tmp_path / "tiny_int8.onnx"
    onnx.save(model, str(source))
    reader = OnnxCalibrationReader(calibration, "pixels")
    assert isinstance(reader, quantization.CalibrationDataReader)
    quantization.quantize_static(str(source), str(target), reader, quant_format=quantization.QuantFormat.QDQ)
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(str(target)).graph.node)
