"""TFLite models through LiteRT (`ai-edge-litert`) or the older `tflite-runtime`.

Thread-safety: a TFLite interpreter must not be used by two threads at once, so each thread gets its
own interpreter (`threading.local`), created from the same verified model bytes on first use.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ModelError
from ..metadata import tflite_metadata_entry
from ..quiet import native_stderr_muted
from ..spec import METADATA_KEY
from . import TensorInfo, out_of_distribution_ratios, split_outputs, to_model_input, to_scores

INTERPRETER_MODULES = {"litert": "ai_edge_litert.interpreter", "tflite-runtime": "tflite_runtime.interpreter"}


def _tensor_info(detail: dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    shape = tuple(int(d) for d in detail["shape"])
    return TensorInfo(shape, np.dtype(detail["dtype"]), float(scale), int(zero_point))


class TFLiteBackend:
    """A TFLite model with one interpreter per thread."""

    def __init__(self, name: str, content: bytes, source: str, num_threads: int | None) -> None:
        self.name = name
        self._interpreter_class = importlib.import_module(INTERPRETER_MODULES[name]).Interpreter
        self._content, self._source, self._num_threads = content, source, num_threads
        self._local = threading.local()
        interpreter = self._interpreter()
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        if len(inputs) != 1:
            raise ModelError(f"{source}: expected one input tensor, found {len(inputs)}.")
        scores, distance = split_outputs([str(detail["name"]) for detail in outputs], source)
        self._input_index, self._output_index = inputs[0]["index"], outputs[scores]["index"]
        self.input, self.output = _tensor_info(inputs[0]), _tensor_info(outputs[scores])
        self._distance_index = None if distance is None else outputs[distance]["index"]
        self.distance = None if distance is None else _tensor_info(outputs[distance])

    def _interpreter(self) -> Any:
        interpreter = getattr(self._local, "interpreter", None)
        if interpreter is None:
            try:  # from model_content, the flatbuffer is verified before use
                with native_stderr_muted():  # LiteRT's "Created ... XNNPACK delegate" notice
                    interpreter = self._interpreter_class(
                        model_content=self._content, num_threads=self._num_threads
                    )
                    interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"{self._source}: not a valid TFLite model ({exc}); re-export it.") from exc
            self._local.interpreter = interpreter
        return interpreter

    def metadata(self) -> bytes | None:
        """The embedded tumorscan spec JSON."""
        return tflite_metadata_entry(self._content, METADATA_KEY, self._source)

    def run(self, pixels: NDArray[np.generic]) -> NDArray[np.float32]:
        """Class scores; see `run_with_distance`."""
        return self.run_with_distance(pixels)[0]

    def run_with_distance(
        self, pixels: NDArray[np.generic]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
        """Run each image through this thread's interpreter (its input holds one image)."""
        interpreter = self._interpreter()
        model_input = to_model_input(pixels, self.input, self._source)
        raw, distances = [], []
        for image in model_input:
            try:
                interpreter.set_tensor(self._input_index, image[np.newaxis])
                interpreter.invoke()
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"{self._source}: inference failed ({exc}).") from exc
            raw.append(interpreter.get_tensor(self._output_index))
            if self._distance_index is not None:
                distances.append(interpreter.get_tensor(self._distance_index))
        scores = to_scores(np.concatenate(raw), self.output)
        if self.distance is None:
            return scores, None
        return scores, out_of_distribution_ratios(to_scores(np.concatenate(distances), self.distance))


def open_backend(name: str, content: bytes, source: str, num_threads: int | None) -> TFLiteBackend:
    """Load a TFLite model from its bytes."""
    return TFLiteBackend(name, content, source, num_threads)
