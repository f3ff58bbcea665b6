"""Calibration feeds for the two quantizers, both drawn from `CalibrationSet.iter_pixels`.

The models take RGB values 0-255 and normalise inside the graph, so the feeds pass the pixels
unchanged, only cast to the input dtype the float model expects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from numpy.typing import DTypeLike, NDArray

from tumorscan.calibration.selection import CalibrationSet


def tflite_representative_dataset(
    calibration: CalibrationSet, dtype: DTypeLike = np.float32
) -> Callable[[], Iterator[list[NDArray[np.generic]]]]:
    """The `representative_dataset` callable of a TFLite/LiteRT converter: yields [1 x H x W x 3] per scan."""

    def representative_dataset() -> Iterator[list[NDArray[np.generic]]]:
        for pixels in calibration.iter_pixels():
            yield [pixels[np.newaxis].astype(dtype)]

    return representative_dataset


class OnnxCalibrationReader:
    """ONNX Runtime calibration data reader: `get_next()` gives {input_name: batch} until None.

    ONNX Runtime's `CalibrationDataReader` counts any class with a `get_next` method as a subclass
    (`issubclass` and `isinstance` hold), so this reader needs no onnxruntime import. It also supports
    `len()` and `set_range()`, which quantize_static uses for strided calibration.

    Args:
        calibration: the calibration set.
        input_name: the ONNX model's input name.
        dtype: the model input's dtype.
        batch_size: scans per batch; the last batch may be smaller.
    """

    def __init__(
        self, calibration: CalibrationSet, input_name: str, dtype: DTypeLike = np.float32, batch_size: int = 1
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.input_name = input_name
        self.dtype = np.dtype(dtype)
        self.batch_size = batch_size
        self._images = tuple(calibration.iter_pixels())
        self._start, self._stop = 0, len(self)
        self._position = 0

    def __len__(self) -> int:
        """Number of batches."""
        return -(-len(self._images) // self.batch_size)

    def get_next(self) -> dict[str, NDArray[np.generic]] | None:
        """The next batch as {input_name: N x H x W x 3 array}, or None when the range is exhausted."""
        if self._position >= self._stop:
            return None
        first = self._position * self.batch_size
        batch = np.stack(self._images[first : first + self.batch_size]).astype(self.dtype)
        self._position += 1
        return {self.input_name: batch}

    def rewind(self) -> None:
        """Start again from the first batch of the current range."""
        self._position = self._start

    def set_range(self, start_index: int, end_index: int) -> None:
        """Limit reading to batches [start_index, end_index) and rewind."""
        self._start, self._stop = max(0, start_index), min(len(self), end_index)
        self.rewind()
