"""The limits every decoder holds a scan to: its size in pixels, and pixel values worth stretching.

Both `tumorscan.images` (Pillow formats) and `tumorscan.dicom` use them; neither imports the other for them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .errors import EmptyImageError

MAX_PIXELS = 64_000_000
"""Largest scan accepted (width x height), checked from the header before decoding."""
PEAK_BYTES_PER_PIXEL = 15
"""Memory bound for one input: peak RSS grows by at most this many bytes per pixel of the scan (under
0.9 GiB at MAX_PIXELS; measured at 64 megapixels: native 16-bit DICOM +794 MiB, 16-bit PNG +611 MiB,
8-bit PNG +367 MiB, JPEG +185 MiB). A compressed DICOM frame is held to MAX_PIXELS through its own
codestream header (`tumorscan.codestream`); a multi-frame DICOM also holds its file's bytes."""


def check_values(
    values: NDArray[np.floating], name: str, stage: str = "", allow_flat: bool = False
) -> tuple[float, float]:
    """(min, max) of pixel values about to be stretched or windowed; refuse degenerate ones.

    Raises:
        EmptyImageError: no values, a NaN or infinity among them, or all of them equal (unless `allow_flat`).
    """
    where = f" {stage}" if stage else ""
    if values.size == 0:
        raise EmptyImageError(f"{name}: the image is empty (shape {values.shape}); pass a real scan.")
    if not np.isfinite(values).all():
        raise EmptyImageError(
            f"{name}: the pixel values{where} are not all finite (NaN or infinity); the scan is unusable."
        )
    low, high = float(values.min()), float(values.max())
    if high <= low and not allow_flat:
        raise EmptyImageError(
            f"{name}: the image{where} is flat (every pixel is {low:g}); nothing to classify."
        )
    return low, high
