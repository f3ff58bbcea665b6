"""Normalisation done by the runtime, for files made elsewhere and sealed with `tumor-seal`.

tumorscan's own exports carry their normalisation inside the graph (`InputSpec.normalized_by` "graph"):
the runtime feeds them RGB 0-255. A sealed file says `normalized_by: runtime`: its pixels are mapped here,
with the same arithmetic as the training-side layers (`tumorscan.train.normalization`), and turned to
NCHW when the model takes that layout.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .spec import InputSpec

IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
"""ImageNet ("caffe") channel means in BGR order (the same as the training side's)."""


def normalize_pixels(pixels: NDArray[np.uint8], normalization: str) -> NDArray[np.float32]:
    """N x H x W x 3 RGB 0-255 -> float32 as a network with `normalization` expects."""
    values = pixels.astype(np.float32)
    if normalization == "rescale":
        return values / np.float32(255.0)
    if normalization == "symmetric":
        return values / np.float32(127.5) - np.float32(1.0)
    if normalization == "caffe":
        flipped: NDArray[np.float32] = values[..., ::-1] - np.asarray(IMAGENET_BGR_MEAN, dtype=np.float32)
        return flipped
    return values


def model_input(pixels: NDArray[np.uint8], spec: InputSpec) -> NDArray[np.generic]:
    """What the backend gets: the pixels themselves, or normalised (and transposed) for a sealed file."""
    fed: NDArray[np.generic] = pixels
    if spec.normalized_by == "runtime":
        fed = normalize_pixels(pixels, spec.normalization)
    if spec.layout == "NCHW":
        fed = np.ascontiguousarray(fed.transpose(0, 3, 1, 2))
    return fed
