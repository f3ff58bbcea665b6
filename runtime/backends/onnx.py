"""ONNX models through onnxruntime (the `[onnx]` extra).

Thread-safety: an onnxruntime InferenceSession may be run from several threads at once, so one
session is shared.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ModelError
from ..metadata import onnx_session
from ..spec import METADATA_KEY
from . import TensorInfo, out_of_distribution_ratios, split_outputs, to_model_input, to_scores

ONNX_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
}


def _tensor_info(node: Any, source: str) -> TensorInfo:
    if node.type not in ONNX_TYPES:
        raise ModelError(f"{source}: tensor {node.name!r} has unsupported type {node.type}.")
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in node.shape)
    return TensorInfo(shape, np.dtype(ONNX_TYPES[node.type]))


class OnnxBackend:
    """An ONNX model in one shared onnxruntime session."""

    def __init__(self, name: str, content: bytes, source: str, num_threads: int | None) -> None:
        self.name = name
        self._source = source
        self._session = onnx_session(content, source, num_threads=num_threads)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1:
            raise ModelError(f"{source}: expected one input tensor, found {len(inputs)}.")
        scores, distance = split_outputs([node.name for node in outputs], source)
        self._input_name, self.input = inputs[0].name, _tensor_info(inputs[0], source)
        self._output_names = [outputs[scores].name] + ([] if distance is None else [outputs[distance].name])
        self.output = _tensor_info(outputs[scores], source)
        self.distance = None if distance is None else _tensor_info(outputs[distance], source)

    def metadata(self) -> str | None:
        """The embedded tumorscan spec JSON."""
        value: str | None = self._session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        return value

    def run(self, pixels: NDArray[np.generic]) -> NDArray[np.float32]:
        """Class scores; see `run_with_distance`."""
        return self.run_with_distance(pixels)[0]

    def run_with_distance(
        self, pixels: NDArray[np.generic]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
        """Run the whole batch at once, or image by image when the model's batch size is fixed at 1."""
        model_input = to_model_input(pixels, self.input, self._source)
        batches = [model_input] if self.input.shape[0] != 1 else [image[np.newaxis] for image in model_input]
        try:
            raw = [self._session.run(self._output_names, {self._input_name: batch}) for batch in batches]
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"{self._source}: inference failed ({exc}).") from exc
        scores = to_scores(np.concatenate([outputs[0] for outputs in raw]), self.output)
        if self.distance is None:
            return scores, None
        columns = to_scores(np.concatenate([outputs[1] for outputs in raw]), self.distance)
        return scores, out_of_distribution_ratios(columns)


def open_backend(name: str, content: bytes, source: str, num_threads: int | None) -> OnnxBackend:
    """Load an ONNX model from its bytes."""
    return OnnxBackend(name, content, source, num_threads)
