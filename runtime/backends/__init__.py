"""Inference backends: one module per runtime, chosen by the model's file type and what is installed.

Every backend turns N x H x W x 3 uint8 pixels (or what `tumorscan.normalize.model_input` makes of them
for a sealed file: normalised floats, NCHW) into N x K float class scores, and, for a model exported
with the feature-distance head (`tumorscan.trust`), N out-of-distribution ratios (above 1: out).
Quantized tensors are converted by `to_model_input` and `to_scores`, from each tensor's own scale and
zero point.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ..errors import MissingDependencyError, ModelError, TumorscanError
from ..trust import DISTANCE_OUTPUT


class UnknownBackendError(TumorscanError):
    """No backend is registered under the requested name."""

    code = "unknown_backend"


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: shape (-1 for a dynamic dimension), dtype and quantization."""

    shape: tuple[int, ...]
    dtype: np.dtype[np.generic]
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        """True for an integer tensor with a scale (real = scale * (q - zero_point))."""
        return self.scale > 0 and np.issubdtype(self.dtype, np.integer)


class Backend(Protocol):
    """A loaded model, ready to run."""

    name: str
    input: TensorInfo
    output: TensorInfo
    distance: TensorInfo | None
    """The optional second output, (N, 1) feature-distance ratios."""

    def metadata(self) -> str | bytes | None:
        """The embedded tumorscan spec JSON, or None when the file has none."""

    def run(self, pixels: NDArray[np.generic]) -> NDArray[np.float32]:
        """N x H x W x 3 uint8 pixels -> N x K float scores (dequantized)."""

    def run_with_distance(
        self, pixels: NDArray[np.generic]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
        """Scores and, when the model has that output, N distance ratios (dequantized)."""


@dataclass(frozen=True)
class BackendEntry:
    """How to find and open one backend."""

    module: str
    """Module in this package with `open_backend(name, content, source, num_threads)`."""
    suffix: str
    """The model file type it runs."""
    package: str
    """Top-level import name that must be installed."""
    pip_name: str
    extra: str | None
    """The tumorscan extra that installs it (None: none does; the hint names the package)."""


BACKENDS: dict[str, BackendEntry] = {
    "litert": BackendEntry("tflite", ".tflite", "ai_edge_litert", "ai-edge-litert", "litert"),
    "tflite-runtime": BackendEntry("tflite", ".tflite", "tflite_runtime", "tflite-runtime", None),
    "onnxruntime": BackendEntry("onnx", ".onnx", "onnxruntime", "onnxruntime", "onnx"),
}
"""Backends by name, in order of preference for their file type."""


def is_installed(name: str) -> bool:
    """True when the backend's package can be imported (checked without importing it)."""
    return importlib.util.find_spec(BACKENDS[name].package) is not None


def choose_backend(suffix: str, requested: str | None = None) -> str:
    """The backend to run a model file of type `suffix`: `requested`, or the first installed one.

    Raises:
        UnknownBackendError: `requested` is not a backend name.
        ModelError: `requested` does not run this file type, or no backend does.
        MissingDependencyError: the backend's package is not installed.
    """
    if requested is not None:
        if requested not in BACKENDS:
            raise UnknownBackendError(f"unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}.")
        entry = BACKENDS[requested]
        if entry.suffix != suffix:
            raise ModelError(
                f"the {requested} backend runs {entry.suffix} models, not {suffix or 'this'} files."
            )
        if not is_installed(requested):
            raise MissingDependencyError(entry.pip_name, entry.extra, f"The {requested} backend")
        return requested
    candidates = [name for name, entry in BACKENDS.items() if entry.suffix == suffix]
    if not candidates:
        suffixes = sorted({entry.suffix for entry in BACKENDS.values()})
        raise ModelError(
            f"no backend runs {suffix or 'suffix-less'} files; pass a {' or '.join(suffixes)} model."
        )
    for name in candidates:
        if is_installed(name):
            return name
    first = BACKENDS[candidates[0]]
    raise MissingDependencyError(first.pip_name, first.extra, f"Running {suffix} models")


def open_backend(name: str, content: bytes, source: str, num_threads: int | None = None) -> Backend:
    """Load model bytes into the named backend (its module is imported only now)."""
    module = importlib.import_module(f"{__name__}.{BACKENDS[name].module}")
    backend: Backend = module.open_backend(name, content, source, num_threads)
    return backend


def to_model_input(pixels: NDArray[np.generic], tensor: TensorInfo, source: str) -> NDArray[np.generic]:
    """Convert pixels (0-255, or normalised floats) to what the input tensor takes (float, or quantized)."""
    if tensor.quantized:
        info = np.iinfo(tensor.dtype)  # type: ignore[type-var]
        values = np.rint(pixels.astype(np.float32) / tensor.scale) + tensor.zero_point
        quantized: NDArray[np.generic] = np.clip(values, info.min, info.max).astype(tensor.dtype)
        return quantized
    if np.issubdtype(tensor.dtype, np.floating) or tensor.dtype == np.uint8:
        return pixels.astype(tensor.dtype)
    raise ModelError(f"{source}: input type {tensor.dtype} without quantization parameters is not supported.")


def split_outputs(names: list[str], source: str) -> tuple[int, int | None]:
    """Positions of the class scores and of the optional distance output among a model's outputs.

    The distance output is the one named `training_distance`, else the second one.
    """
    if not 1 <= len(names) <= 2:
        raise ModelError(
            f"{source}: expected class scores and at most one distance output, found {len(names)} outputs."
        )
    if len(names) == 1:
        return 0, None
    distance = names.index(DISTANCE_OUTPUT) if DISTANCE_OUTPUT in names else 1
    return 1 - distance, distance


def out_of_distribution_ratios(columns: NDArray[np.float32]) -> NDArray[np.float32]:
    """N ratios from the distance output's columns: the distance ratio (column 0), or the larger of it and
    the scan check's ratio (column 2) where the model has one. Column 1 is a constant."""
    if columns.shape[1] > 2:
        return np.maximum(columns[:, 0], columns[:, 2])
    return columns[:, 0]


def to_scores(raw: NDArray[np.generic], tensor: TensorInfo) -> NDArray[np.float32]:
    """Dequantize raw outputs to float scores."""
    if tensor.quantized:
        return ((raw.astype(np.float32) - tensor.zero_point) * tensor.scale).astype(np.float32)
    return raw.astype(np.float32)
