"""ONNX writers: fp32 through tf2onnx, int8 through onnxruntime's static QDQ quantization.

Both take float32 RGB 0-255 (N, H, W, 3) with a dynamic batch dimension and return probabilities.
The int8 file holds QuantizeLinear/DequantizeLinear pairs around int8 weights (per channel) and
int8 activation ranges calibrated on the calibration scans. The spec is the metadata_props entry
"tumorscan"; every file passes onnx.checker before it is written.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tumorscan.errors import ModelError
from tumorscan.files import atomic_write_bytes
from tumorscan.integrity import onnx_integrity
from tumorscan.spec import METADATA_KEY, ModelSpec

from .autofloat import Layer, choose_float
from .formats import CALIBRATION_METHODS, ExportJob, import_optional
from .graph import serving_function

OPSET = 17
INPUT_NAME = "pixels"
BATCH_DIMENSION = "batch"
PASS_THROUGH_OPS = ("Relu", "Clip", "MaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Identity")
"""Ops whose int8 output only carries their producer's quantization (ranked as that producer)."""


def _erfc(graph: Any, node: Any, _name: str, _args: Any) -> None:
    """tf2onnx handler of Erfc (exact GELU), which ONNX lacks: erfc(x) = 1 - erf(x)."""
    import numpy as np
    from tf2onnx import utils

    node.type = "Erf"
    one = graph.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=np.float32))
    graph.insert_new_node_on_output("Sub", node.output[0], inputs=[one.output[0], node.output[0]])


def _unconverted_ops(proto: Any) -> list[Any]:
    """Nodes tf2onnx left as TensorFlow ops (no ONNX equivalent)."""
    onnx = import_optional("onnx", "Exporting ONNX models")
    return [node for node in proto.graph.node if not onnx.defs.has(node.op_type, node.domain)]


@contextmanager
def _quiet_converter() -> Iterator[None]:
    """Hold back tf2onnx's log: optimizer tracebacks it recovers from, and errors reported here."""
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _fp32_proto(job: ExportJob) -> Any:
    """The job's model as an ONNX ModelProto (float32, dynamic batch).

    The variables are frozen to constants first: tf2onnx otherwise turns constants that Keras
    layers capture (e.g. Normalization's mean and variance) into extra graph inputs.

    Raises:
        ModelError: a TensorFlow op has no ONNX conversion (one line naming the layer and op).
    """
    import_optional("tensorflow", "Exporting ONNX models")
    tf2onnx = import_optional("tf2onnx", "Exporting ONNX models")
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    function, _ = serving_function(job.model, (None, *job.spec.input.size, 3), named=True)
    frozen = convert_variables_to_constants_v2(function)
    source = frozen.inputs[0].name
    names = sorted(function.structured_outputs)  # a dict flattens by sorted key: the order of `outputs`
    outputs = {tensor.name: name for name, tensor in zip(names, frozen.outputs, strict=True)}
    try:
        with _quiet_converter():
            proto, _ = tf2onnx.convert.from_graph_def(
                frozen.graph.as_graph_def(),
                input_names=[source],
                output_names=list(outputs),
                opset=OPSET,
                tensors_to_rename={source: INPUT_NAME, **outputs},
                custom_op_handlers={"Erfc": (_erfc, [])},
            )
    except Exception as exc:  # tf2onnx raises assorted errors for unsupported ops
        raise ModelError(f"{job.path.name}: ONNX conversion failed ({exc}).") from exc
    unconverted = _unconverted_ops(proto)
    if unconverted:
        node = unconverted[0]
        layer = node.name.rsplit("/", 1)[0]
        raise ModelError(
            f"{job.path.name}: layer {layer} uses TensorFlow op {node.op_type}, which has no ONNX "
            f"conversion ({len(unconverted)} node(s)); export this model with --format tflite, or "
            "replace the layer with stock Keras layers."
        )
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIMENSION
    return proto


def set_spec(proto: Any, spec: ModelSpec) -> None:
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
    set_spec(proto, spec)
    atomic_write_bytes(path, proto.SerializeToString())


def _save(job: ExportJob, proto: Any, **quantization: Any) -> Path:
    """Embed the spec, check the model and write it atomically."""
    onnx = import_optional("onnx", "Exporting ONNX models")
    spec = job.file_spec(opset=OPSET, input_dtype="float32", output_dtype="float32", **quantization)
    set_spec(proto, spec)
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
    """Static QDQ int8: per-channel int8 weights, uint8 activations calibrated on the calibration scans.

    Activations are uint8 (ONNX Runtime's U8S8), the pairing its x86 and Arm kernels fuse: with int8
    activations (S8S8) the dense layer is not fused and its weights are dequantized on every call, which
    made CNN2 fourteen times slower than its fp32 file (39.6 against 2.8 ms of kernel time per scan, ONNX
    Runtime's profiler, 2 threads). Weights use 7 of their 8 bits (`reduce_range`): on x86-64 CPUs with AVX2
    but without VNNI, ONNX Runtime's U8S8 kernels add pairs of products in 16 bits, which full-range
    weights can saturate (ONNX Runtime's quantization guide); the tiny test model's distance output read
    0.77 instead of 1.04 on such a CPU (AMD EPYC) before.

    With `job.auto_float`, the activation-range method and the nodes chosen by
    `tumorscan.export.autofloat` are used (the job's method unless it fails parity).
    """
    onnx = import_optional("onnx", "Exporting ONNX models")
    with tempfile.TemporaryDirectory(prefix="tumorscan-onnx-") as folder:
        quantizer = OnnxQuantizer(job, Path(folder))
        float_nodes, recorded = choose_float(quantizer, ".onnx", job)
        quantized = Path(folder) / "int8.onnx"
        quantizer.quantize(float_nodes, quantized)
        proto = onnx.load(quantized)
    return _save(
        job,
        proto,
        weights="int8",
        activations="uint8",
        format="QDQ",
        per_channel=True,
        calibration_method=quantizer.method,
        **recorded,
    )


class OnnxQuantizer:
    """Static QDQ int8 with a choice of float nodes (`nodes_to_exclude`), calibrated once per method."""

    speed_ops: tuple[str, ...] = ("Conv", "Gemm", "MatMul")

    def __init__(self, job: ExportJob, folder: Path) -> None:
        onnx = import_optional("onnx", "Exporting ONNX models")
        shape_inference = import_optional(
            "onnxruntime.quantization.shape_inference", "Quantizing ONNX models"
        )
        self._job, self._folder = job, folder
        self.method = (
            job.calibration_method
        )  # the activation-range method in use: the job's, then the search's
        self.methods = (self.method, *(m for m in CALIBRATION_METHODS if m != self.method))
        fp32 = folder / "fp32.onnx"
        self._prepared = folder / "prepared.onnx"
        onnx.save(_fp32_proto(job), fp32)
        # ONNX's own shape inference covers image classifiers; the symbolic pass needs sympy.
        shape_inference.quant_pre_process(fp32, self._prepared, skip_symbolic_shape=True)

    def quantize(self, float_nodes: Sequence[str], path: Path) -> None:
        """Write the int8 model (no spec) with `float_nodes` left in float."""
        from tumorscan.calibration import OnnxCalibrationReader

        quantization = import_optional("onnxruntime.quantization", "Quantizing ONNX models")
        methods = {
            "minmax": quantization.CalibrationMethod.MinMax,
            "entropy": quantization.CalibrationMethod.Entropy,
            "percentile": quantization.CalibrationMethod.Percentile,
        }
        cache = self._folder / f"calibration-{self.method}.json"
        reader = (
            None if cache.is_file() else OnnxCalibrationReader(self._job.require_calibration(), INPUT_NAME)
        )
        try:
            # its histogram calibrators print() their settings to stdout, where the command's output goes
            with contextlib.redirect_stdout(io.StringIO()):
                quantization.quantize_static(
                    self._prepared,
                    path,
                    reader,
                    quant_format=quantization.QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=quantization.QuantType.QUInt8,
                    weight_type=quantization.QuantType.QInt8,
                    reduce_range=True,
                    calibrate_method=methods[self.method],
                    nodes_to_exclude=list(float_nodes),
                    calibration_cache_path=cache,
                )
        except Exception as exc:  # onnxruntime raises its own error types
            raise ModelError(f"{self._job.path.name}: ONNX int8 quantization failed ({exc}).") from exc

    def layers(self, samples: Any) -> list[Layer]:
        """Every quantized node, ranked by the SQNR of its output (qdq_loss_debug), lowest first."""
        onnx = import_optional("onnx", "Exporting ONNX models")
        debug = import_optional("onnxruntime.quantization.qdq_loss_debug", "Quantizing ONNX models")
        quantized = self._folder / "all-int8.onnx"
        self.quantize([], quantized)
        feeds = [{INPUT_NAME: image[np.newaxis].astype(np.float32)} for image in samples]
        activations = []
        for model in (quantized, self._prepared):
            augmented = model.with_name(f"{model.stem}-debug.onnx")
            debug.modify_model_output_intermediate_tensors(model, augmented)
            activations.append(debug.collect_activations(str(augmented), feeds))
        errors = debug.compute_activation_error(debug.create_activation_matching(*activations))
        nodes = onnx.load(self._prepared).graph.node
        producers = {out: node for node in nodes for out in node.output}
        worst: dict[str, float] = {}
        for name, error in errors.items():
            node = producers.get(name)
            while (
                node is not None and node.op_type in PASS_THROUGH_OPS
            ):  # Relu, pooling: its producer's error
                node = producers.get(node.input[0])
            if node is not None and np.isfinite(error["qdq_err"]):
                worst[node.name] = min(worst.get(node.name, np.inf), error["qdq_err"])
        ops = {node.name: node.op_type for node in nodes}
        layers = [Layer(name, ops[name], -sqnr, f"SQNR {sqnr:.1f} dB") for name, sqnr in worst.items()]
        return sorted(layers, key=lambda layer: -layer.error)

    def write(self, float_layers: Sequence[str], path: Path) -> None:
        """Write the int8 model with these nodes in float, the job's spec embedded."""
        onnx = import_optional("onnx", "Exporting ONNX models")
        self.quantize(float_layers, path)
        proto = onnx.load(path)
        set_spec(proto, self._job.file_spec())
        atomic_write_bytes(path, proto.SerializeToString())
