"""DICOM scans as 8-bit images (the `[dicom]` extra, pydicom 3).

Rules, in order:

1. Frames: a multi-frame file gives its middle frame (only that frame is decoded).
2. Colour (3 samples per pixel): RGB as it is (the top 8 bits of deeper samples); YBR_* is
   converted to RGB by pydicom.
3. Greyscale: the modality rescale (RescaleSlope, RescaleIntercept) is applied, then the first VOI
   window (WindowCenter, WindowWidth; DICOM's linear function) or, without one, the frame's own
   minimum-maximum range maps values to 0-255; MONOCHROME1 (white is low) is inverted.

The result is an 'L' or 'RGB' PIL image for `tumorscan.images` to convert and resize.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from .errors import ImageError, ImageTooLargeError, MissingDependencyError
from .images import MAX_PIXELS


def _read(source: Path | bytes, name: str) -> Any:
    try:
        import pydicom
        import pydicom.pixels
    except ImportError as exc:
        raise MissingDependencyError("pydicom", "dicom", "Reading DICOM scans") from exc
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        return pydicom.dcmread(stream)
    except Exception as exc:  # pydicom raises InvalidDicomError, EOFError, struct/value errors on bad files
        raise ImageError(f"{name}: not a readable DICOM file ({exc}).") from exc


def _frame(dataset: Any, name: str) -> NDArray[Any]:
    from pydicom.pixels.utils import pixel_array

    if "PixelData" not in dataset:
        raise ImageError(f"{name}: the DICOM file holds no image (no PixelData element).")
    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    if rows * columns > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{name}: {columns}x{rows} pixels exceeds the limit of {MAX_PIXELS:,}; downscale the scan first."
        )
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    syntax = getattr(dataset, "file_meta", {}).get("TransferSyntaxUID")
    try:
        return pixel_array(dataset, index=frames // 2 if frames > 1 else None)
    except Exception as exc:  # no decoder for the transfer syntax, or corrupt pixel data
        described = f"{syntax.name} ({syntax})" if syntax else "unknown"
        reason = " ".join(str(exc).split())
        raise ImageError(
            f"{name}: cannot decode the pixel data (transfer syntax {described}; {reason}). "
            "Convert the scan to uncompressed DICOM, or install a decoder for it "
            "(e.g. pip install pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg)."
        ) from exc


def _first(value: Any) -> float:
    """A DICOM number that may be multi-valued (e.g. several VOI windows): the first one."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _window(values: NDArray[np.float64], dataset: Any) -> NDArray[np.float64] | None:
    """DICOM's linear VOI window to 0-1, or None when the file has no usable window."""
    if "WindowCenter" not in dataset or "WindowWidth" not in dataset:
        return None
    center, width = _first(dataset.WindowCenter), _first(dataset.WindowWidth)
    if width < 1:
        return None
    scaled = ((values - (center - 0.5)) / (width - 1) + 0.5).astype(np.float64)
    return np.clip(scaled, 0.0, 1.0)


def _to_grey(values: NDArray[np.float64], dataset: Any) -> NDArray[np.uint8]:
    slope, intercept = (
        float(dataset.get("RescaleSlope", 1) or 1),
        float(dataset.get("RescaleIntercept", 0) or 0),
    )
    values = values * slope + intercept
    unit = _window(values, dataset)
    if unit is None:
        low, high = float(values.min()), float(values.max())
        unit = (values - low) / (high - low) if high > low else np.zeros_like(values)
    grey = np.rint(unit * 255.0).astype(np.uint8)
    return 255 - grey if dataset.get("PhotometricInterpretation") == "MONOCHROME1" else grey


def dicom_to_image(source: Path | bytes, name: str) -> Image.Image:
    """Decode a DICOM file (path or bytes) into an 8-bit 'L' or 'RGB' PIL image by the rules above.

    Raises:
        MissingDependencyError: pydicom is not installed.
        ImageError: (or ImageTooLargeError) unreadable file, no or undecodable pixel data, unknown layout.
    """
    dataset = _read(source, name)
    pixels = _frame(dataset, name)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if samples == 3 and pixels.ndim == 3 and pixels.shape[2] == 3:
        if pixels.dtype != np.uint8:  # keep the top 8 of the stored bits
            pixels = (pixels >> max(int(dataset.get("BitsStored", 8)) - 8, 0)).astype(np.uint8)
        return Image.fromarray(pixels)
    if samples == 1 and pixels.ndim == 2:
        return Image.fromarray(_to_grey(pixels.astype(np.float64), dataset))
    raise ImageError(
        f"{name}: unsupported DICOM pixel layout ({samples} samples per pixel, frame shape {pixels.shape})."
    )
