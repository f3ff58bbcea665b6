"""ONNX writers: fp32 through tf2onnx, int8 through onnxruntime's static QDQ quantization.

Both take float32 RGB 0-255 (N, H, W, 3) with a dynamic batch dimension and return probabilities.
The int8 file holds QuantizeLinear/DequantizeLinear pairs around int8 weights (per channel) and
int8 activation ranges calibrated on the calibration scans. The spec is the metadata_props entry
"tumorscan"; every file passes onnx.checker before it is written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tumorscan.errors import ModelError
from tumorscan.files import atomic_write_bytes
from tumorscan.integrity import onnx_integrity
from tumorscan.spec import METADATA_KEY, ModelSpec
from tumorscan.train.distance import named_outputs

from .formats import ExportJob, import_optional

OPSET = 17
INPUT_NAME = "pixels"
BATCH_DIMENSION = "batch"


def _fp32_proto(job: ExportJob) -> Any:
    """The job's model as an ONNX ModelProto (float32, dynamic batch)."""
    tf = import_optional("tensorflow", "Exporting ONNX models")
    tf2onnx = import_optional("tf2onnx", "Exporting ONNX models")
    model = job.model
    signature = [tf.TensorSpec((None, *job.spec.input.size, 3), tf.float32, name=INPUT_NAME)]
    function = tf.function(lambda pixels: named_outputs(model, pixels), input_signature=signature)
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=OPSET)
    except Exception as exc:  # tf2onnx raises assorted errors for unsupported ops
        raise ModelError(f"{job.path.name}: ONNX conversion failed ({exc}).") from exc
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIMENSION
    return proto


def _set_spec(proto: Any, spec: ModelSpec) -> None:
    """Store the spec as the model's metadata_props entry, replacing an older one, sealed with the hash
    of the rest of the model (`tumorscan.integrity`)."""
    kept = [entry for entry in proto.metadata_props if entry.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    sealed = spec.with_updates(integrity=onnx_integrity(proto.SerializeToString()))
    proto.metadata_props.add(key=METADATA_KEY, value=sealed.to_json())


def write_spec(path: Path, spec: ModelSpec) -> None:
    """Replace the spec stored in an exported ONNX file (atomically)."""
    onnx = import_optional("onnx", "Updating ONNX metadata")
    proto = onnx.load_from_string(path.read_bytes())
    _set_spec(proto, spec)
    atomic_write_bytes(path, proto.SerializeToString())


def _save(job: ExportJob, proto: Any, **quantization: Any) -> Path:
    """Embed the spec, check the model and write it atomically."""
    onnx = import_optional("onnx", "Exporting ONNX models")
    spec = job.file_spec(opset=OPSET, input_dtype="float32", output_dtype="float32", **quantization)
    _set_spec(proto, spec)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"{job.path.name}: the exported ONNX model fails onnx.checker ({exc}).") from exc
    atomic_write_bytes(job.path, proto.SerializeToString())
    return job.path


def write_fp32(job: ExportJob) -> Path:
    """Float32 weights and kernels."""
    return _save(job, _fp32_proto(job), weights="float32", activations="float32")


def write_int8(job: ExportJob) -> Path:
    """Static QDQ int8: per-channel int8 weights, int8 activations calibrated on the calibration scans."""
    from tumorscan.calibration import OnnxCalibrationReader

    onnx = import_optional("onnx", "Exporting ONNX models")
    quantization = import_optional("onnxruntime.quantization", "Quantizing ONNX models")
    shape_inference = import_optional("onnxruntime.quantization.shape_inference", "Quantizing ONNX models")
    methods = {
        "minmax": quantization.CalibrationMethod.MinMax,
        "entropy": quantization.CalibrationMethod.Entropy,
        "percentile": quantization.CalibrationMethod.Percentile,
    }
    reader = OnnxCalibrationReader(job.require_calibration(), INPUT_NAME)
    with tempfile.TemporaryDirectory(prefix="tumorscan-onnx-") as folder:
        fp32, prepared, quantized = (Path(folder) / f"{name}.onnx" for name in ("fp32", "prepared", "int8"))
        onnx.save(_fp32_proto(job), fp32)
        # ONNX's own shape inference covers image classifiers; the symbolic pass needs sympy.
        shape_inference.quant_pre_process(fp32, prepared, skip_symbolic_shape=True)
        try:
            quantization.quantize_static(
                prepared,
                quantized,
                reader,
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=True,
                activation_type=quantization.QuantType.QInt8,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=methods[job.calibration_method],
            )
        except Exception as exc:  # onnxruntime raises its own error types
            raise ModelError(f"{job.path.name}: ONNX int8 quantization failed ({exc}).") from exc
        proto = onnx.load(quantized)
    return _save(
        job,
        proto,
        weights="int8",
        activations="int8",
        format="QDQ",
        per_channel=True,
        calibration_method=job.calibration_method,
    )
