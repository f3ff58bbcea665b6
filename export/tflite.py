"""TFLite writers: fp32, fp16, dynamic-range int8 and full-integer int8.

The model is converted from a concrete function with a fixed 1xHxWx3 float32 input (RGB 0-255).
Full-integer int8 keeps only integer kernels (TFLITE_BUILTINS_INT8) and takes uint8 pixels and
returns uint8 probabilities, so a device feeds raw pixels 0-255 (uint8, not int8, output also keeps
the files readable by MediaPipe, which rejects int8 outputs). Each file carries the tumorscan spec,
then the standard image-classifier metadata (`tflite_metadata`), written last because of its archive.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.errors import ModelError
from tumorscan.files import atomic_write_bytes
from tumorscan.metadata import embed_tflite_metadata
from tumorscan.spec import ModelSpec
from tumorscan.trust import DISTANCE_OUTPUT

from .autofloat import Layer, choose_float
from .formats import ExportJob, import_optional
from .graph import serving_function
from .tflite_metadata import with_standard_metadata

INPUT_NAME = "pixels"


def _converter(job: ExportJob) -> Any:
    """A TFLiteConverter for the job's model, traced at batch 1 and the spec's input size."""
    tf = import_optional("tensorflow", "Exporting TFLite models")
    function, module = serving_function(job.model, (1, *job.spec.input.size, 3))
    return tf.lite.TFLiteConverter.from_concrete_functions([function], module)


def _optimized_converter(job: ExportJob) -> Any:
    tf = import_optional("tensorflow", "Exporting TFLite models")
    converter = _converter(job)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter


def _convert(job: ExportJob, converter: Any) -> bytes:
    try:
        model_bytes: bytes = converter.convert()
    except Exception as exc:  # the converter raises ConverterError, RuntimeError, ValueError...
        raise ModelError(f"{job.path.name}: TFLite conversion failed ({exc}).") from exc
    return _probabilities_first(model_bytes)


def _probabilities_first(model_bytes: bytes) -> bytes:
    """Make the class probabilities output 0 of a two-output model (the converter picks its own order).

    MediaPipe's ImageClassifier reads every output as a classification head, in order.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    subgraph, signatures = model.subgraphs[0], model.signatureDefs or []
    named = {o.name.decode(): o.tensorIndex for signature in signatures for o in signature.outputs}
    if len(subgraph.outputs) != 2 or DISTANCE_OUTPUT not in named:
        return model_bytes
    distance = named[DISTANCE_OUTPUT]
    subgraph.outputs = [index for index in subgraph.outputs if index != distance] + [distance]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _with_metadata(model_bytes: bytes, spec: ModelSpec, source: Path) -> bytes:
    """The model with the standard metadata and `spec` (embedded and sealed), the label archive last."""
    return with_standard_metadata(model_bytes, spec, str(source))


def write_spec(path: Path, spec: ModelSpec) -> None:
    """Replace the spec stored in an exported TFLite file (atomically); the standard metadata follows."""
    atomic_write_bytes(path, _with_metadata(path.read_bytes(), spec, path))


def _save(job: ExportJob, model_bytes: bytes, **quantization: Any) -> Path:
    atomic_write_bytes(job.path, _with_metadata(model_bytes, job.file_spec(**quantization), job.path))
    return job.path


def _io_quantization(model_bytes: bytes) -> dict[str, Any]:
    """Input/output dtypes and (scale, zero point), and whether any weights are quantized per channel."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    summary: dict[str, Any] = {}
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    for role, detail in (("input", inputs[0]), ("output", outputs[0])):  # output 0: the probabilities
        summary[f"{role}_dtype"] = detail["dtype"].__name__
        scale, zero_point = detail["quantization"]
        if scale:
            summary.update({f"{role}_scale": scale, f"{role}_zero_point": zero_point})
    summary["per_channel"] = any(
        len(detail["quantization_parameters"]["scales"]) > 1 for detail in interpreter.get_tensor_details()
    )
    return summary


def write_fp32(job: ExportJob) -> Path:
    """Float32 weights and kernels, float32 input and output."""
    model_bytes = _convert(job, _converter(job))
    return _save(job, model_bytes, weights="float32", activations="float32", **_io_quantization(model_bytes))


def write_fp16(job: ExportJob) -> Path:
    """Float16 weights (dequantized on load), float32 kernels, input and output."""
    tf = import_optional("tensorflow", "Exporting TFLite models")
    converter = _optimized_converter(job)
    converter.target_spec.supported_types = [tf.float16]
    model_bytes = _convert(job, converter)
    return _save(job, model_bytes, weights="float16", activations="float32", **_io_quantization(model_bytes))


def write_dynamic(job: ExportJob) -> Path:
    """Dynamic-range quantization: int8 weights, activations quantized on the fly, float32 input/output."""
    model_bytes = _convert(job, _optimized_converter(job))
    return _save(job, model_bytes, weights="int8", activations="float32", **_io_quantization(model_bytes))


def write_int8(job: ExportJob) -> Path:
    """Full-integer int8: integer kernels only, uint8 input (raw pixels) and uint8 output.

    With `job.auto_float`, the layers chosen by `tumorscan.export.autofloat` stay float (their
    kernels are float builtins, and the output is float32).
    """
    from tumorscan.calibration import tflite_representative_dataset

    tf = import_optional("tensorflow", "Exporting TFLite models")
    if job.auto_float is not None:
        quantizer = TFLiteQuantizer(job)
        float_layers, recorded = choose_float(quantizer, ".tflite", job)
        model_bytes = quantizer.quantize(float_layers)
        return _save(
            job,
            model_bytes,
            weights="int8",
            activations="int8",
            kernels="TFLITE_BUILTINS_INT8 and TFLITE_BUILTINS" if float_layers else "TFLITE_BUILTINS_INT8",
            calibration_method=quantizer.method,
            **_io_quantization(model_bytes),
            **recorded,
        )
    converter = _optimized_converter(job)
    converter.representative_dataset = tflite_representative_dataset(job.require_calibration())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    model_bytes = _convert(job, converter)
    return _save(
        job,
        model_bytes,
        weights="int8",
        activations="int8",
        kernels="TFLITE_BUILTINS_INT8",
        calibration_method=TFLiteQuantizer.method,
        **_io_quantization(model_bytes),
    )


class TFLiteQuantizer:
    """LiteRT's quantizer with a choice of float layers (`denylisted_nodes`), calibrated once.

    Input is uint8 (raw pixels), or float32 when the first layer stays float; output is uint8, or
    float32 when some layer stays float.
    """

    speed_ops: tuple[str, ...] = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
    methods: tuple[str, ...] = ("minmax",)
    """Activation-range methods: LiteRT's converter knows min/max only."""
    method = methods[0]

    def __init__(self, job: ExportJob) -> None:
        from tumorscan.calibration import tflite_representative_dataset

        self._job = job
        converter = _optimized_converter(job)
        converter.representative_dataset = tflite_representative_dataset(job.require_calibration())
        converter.experimental_mlir_quantizer = True
        converter._experimental_calibrate_only = True  # the ranges, for every quantize() below
        self._calibrated = _convert(job, converter)

    def _quantize(self, float_layers: Sequence[str], verify: bool = False) -> bytes:
        tf = import_optional("tensorflow", "Exporting TFLite models")
        from tensorflow.lite.python.convert import mlir_quantize
        from tensorflow.lite.python.util import modify_model_io_type

        model_bytes: bytes = mlir_quantize(
            self._calibrated, enable_numeric_verify=verify, denylisted_nodes=list(float_layers) or None
        )
        if verify:  # float input and output, as the debugger feeds and reads them
            return model_bytes
        # With a float layer the output stays float; a float last layer would be requantized otherwise.
        output = tf.float32 if float_layers else tf.uint8
        return bytes(modify_model_io_type(model_bytes, tf.uint8, output))

    def quantize(self, float_layers: Sequence[str]) -> bytes:
        """The int8 model (no spec) with these layers (named by their output tensors) in float."""
        try:
            return self._quantize(float_layers)
        except Exception as exc:  # the quantizer raises assorted errors
            raise ModelError(f"{self._job.path.name}: TFLite int8 quantization failed ({exc}).") from exc

    def layers(self, samples: NDArray[np.uint8]) -> list[Layer]:
        """Every quantized layer, ranked by RMSE / scale of its output (QuantizationDebugger), worst first."""
        from ai_edge_litert.interpreter import Interpreter

        tf = import_optional("tensorflow", "Exporting TFLite models")
        debug_model = self._quantize([], verify=True)
        debugger = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=debug_model,
            debug_dataset=lambda: ([image[np.newaxis].astype(np.float32)] for image in samples),
        )
        names = {d["index"]: d["name"] for d in Interpreter(model_content=debug_model).get_tensor_details()}
        plain = {d["name"] for d in Interpreter(model_content=self.quantize([])).get_tensor_details()}
        debugger.run()
        dump = io.StringIO()
        debugger.layer_statistics_dump(dump)
        layers = []
        for row in csv.DictReader(io.StringIO(dump.getvalue())):
            ratio = math.sqrt(float(row["mean_squared_error"])) / float(row["scale"])
            name = names[int(row["tensor_idx"])]
            if name[:-1] in plain and name not in plain:  # the debug copy of a tensor gets a digit appended
                name = name[:-1]
            layers.append(Layer(name, row["op_name"], ratio, f"RMSE/scale {ratio:.2f}"))
        return sorted(layers, key=lambda layer: -layer.error)

    def write(self, float_layers: Sequence[str], path: Path) -> None:
        """Write the int8 model with these layers in float, the job's spec embedded."""
        atomic_write_bytes(path, embed_tflite_metadata(self.quantize(float_layers), self._job.file_spec()))
