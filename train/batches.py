"""A batch function, or a Keras model, called on many scans' pixels a batch at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

BATCH_SIZE = 32


def in_batches(
    call: Callable[[NDArray[np.uint8]], Any],
    pixels: NDArray[np.uint8],
    rows: NDArray[np.int64] | None = None,
    batch_size: int = BATCH_SIZE,
) -> NDArray[np.float32]:
    """`call` on consecutive batches of `pixels[rows]` (every row by default), results stacked as float32.

    Only one batch of `pixels` is read at a time, so `pixels` may be a memory-mapped cache.
    """
    rows = np.arange(len(pixels)) if rows is None else rows
    parts = [
        np.asarray(call(np.asarray(pixels[rows[start : start + batch_size]])))
        for start in range(0, len(rows), batch_size)
    ]
    return np.concatenate(parts).astype(np.float32)


def keras_outputs(
    model: Any,
    pixels: NDArray[np.uint8],
    rows: NDArray[np.int64] | None = None,
    batch_size: int = BATCH_SIZE,
) -> NDArray[np.float32]:
    """A Keras model called directly on pixel batches (float32 0-255, as the graph expects).

    Its probabilities, or its features for a features model.
    """
    return in_batches(lambda batch: model(batch.astype(np.float32), training=False), pixels, rows, batch_size)
