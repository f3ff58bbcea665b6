"""DICOM scans as 8-bit images (the `[dicom]` extra, pydicom 3).

Rules, in order:

1. Frames: a multi-frame file gives its middle frame (only that frame is decoded).
2. Colour (3 samples per pixel): RGB as it is (the top 8 bits of deeper samples); YBR_* is
   converted to RGB by pydicom.
3. Greyscale: the modality rescale (RescaleSlope, RescaleIntercept) is applied, then the first VOI
   window (WindowCenter, WindowWidth; DICOM's linear function) or, without one, the frame's own
   minimum-maximum range maps values to 0-255; MONOCHROME1 (white is low) is inverted.

Compressed syntaxes are decoded by pydicom's plugins: the `[dicom]` extra installs pylibjpeg with its
libjpeg (JPEG baseline, extended, lossless; JPEG-LS), openjpeg (JPEG 2000) and rle plugins.

The result is an 'L' or 'RGB' PIL image for `tumorscan.images` to convert and resize.

Every number read from the file is checked: a value that is not a number is a `DicomAttributeError`
(code `bad_dicom_attribute`); values that are not finite after the rescale, or a flat frame after
windowing, are an `EmptyImageError` (code `empty_image`, through `tumorscan.pixel_limits.check_values`).

Memory: a deflated file must inflate to at most `MAX_INFLATED_BYTES` (counted before pydicom
inflates it), Rows x Columns must stay within `MAX_PIXELS`, and a compressed frame (JPEG, JPEG-LS,
JPEG 2000) must declare the same size in its own codestream header, read before it is decoded; so a
decoder never allocates more than one frame of at most `MAX_PIXELS` pixels x samples. The decoded
frame is then processed in one float64 array, in place.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from .codestream import frame_size
from .errors import (
    DicomAttributeError,
    ImageError,
    ImageTooLargeError,
    MissingDependencyError,
    UnreadableFileError,
)
from .pixel_limits import MAX_PIXELS, check_values

RLE_LOSSLESS = "1.2.840.10008.1.2.5"
DEFLATED_SYNTAX = b"1.2.840.10008.1.2.1.99"
META_START = 144
"""Preamble (128), 'DICM' (4), then the file meta group length element (12 bytes, explicit VR)."""
MAX_META_BYTES = 1 << 20
MAX_INFLATED_BYTES = 8 * MAX_PIXELS
"""Largest deflated dataset read: a 64-megapixel frame of 3 samples of 16 bits, and room for its header."""
CHUNK_BYTES = 1 << 20


def _read(source: Path | bytes, name: str) -> Any:
    try:
        import pydicom
        import pydicom.pixels
    except ImportError as exc:
        raise MissingDependencyError("pydicom", "dicom", "Reading DICOM scans") from exc
    try:
        stream = io.BytesIO(source) if isinstance(source, bytes) else source.open("rb")
    except OSError as exc:
        raise UnreadableFileError(f"{name}: cannot open the file ({exc.strerror or exc}).") from exc
    with stream:
        _check_inflated_size(stream, name)
        stream.seek(0)
        try:
            return pydicom.dcmread(stream)
        except Exception as exc:  # pydicom raises InvalidDicomError, EOFError, struct and value errors
            raise ImageError(f"{name}: not a readable DICOM file ({exc}).") from exc


def _check_inflated_size(stream: IO[bytes], name: str) -> None:
    """Refuse a deflated dataset that inflates to more than MAX_INFLATED_BYTES (counted, never held).

    pydicom inflates a deflated file whole before reading it, so a small file could fill the memory.
    """
    head = stream.read(META_START)
    if len(head) < META_START or head[128:138] != b"DICM\x02\x00\x00\x00UL":
        return  # not a standard file meta header: pydicom reports it
    (length,) = struct.unpack_from("<I", head, 140)
    if length > MAX_META_BYTES or DEFLATED_SYNTAX not in stream.read(length):
        return
    inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    try:
        while chunk := stream.read(CHUNK_BYTES):
            while chunk:
                total += len(inflater.decompress(chunk, CHUNK_BYTES))
                if total > MAX_INFLATED_BYTES:
                    raise ImageTooLargeError(
                        f"{name}: the deflated DICOM data inflates to over {MAX_INFLATED_BYTES:,} bytes; "
                        "refused as unsafe to read."
                    )
                chunk = inflater.unconsumed_tail
    except zlib.error:
        return  # corrupt deflate data: pydicom reports it


def _number(dataset: Any, keyword: str, default: float, name: str) -> float:
    """A numeric attribute (the first of several values), `default` when absent or empty."""
    try:
        value = dataset.get(keyword)
        if value is None or value == "":
            return float(default)
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0]
        return float(value)
    except Exception as exc:  # pydicom raises ValueError/TypeError/... on malformed values
        raise DicomAttributeError(
            f"{name}: the DICOM attribute {keyword} is not a number ({_shown(dataset, keyword)}); "
            "fix the file's header."
        ) from exc


def _shown(dataset: Any, keyword: str) -> str:
    try:
        return repr(str(dataset[keyword].value))[:40]
    except Exception:  # the value itself may not even be readable
        return "unreadable value"


def _count(dataset: Any, keyword: str, default: int, name: str) -> int:
    """A non-negative integer attribute such as Rows or NumberOfFrames."""
    value = _number(dataset, keyword, default, name)
    if not value.is_integer() or not 0 <= value < 2**32:
        raise DicomAttributeError(f"{name}: the DICOM attribute {keyword} is not a count ({value:g}).")
    return int(value)


def _check_codestream(dataset: Any, index: int, frames: int, rows: int, columns: int, name: str) -> None:
    """Refuse a compressed frame whose own header declares another or a too large size."""
    from pydicom.encaps import get_frame

    try:
        data = get_frame(dataset.PixelData, index, number_of_frames=frames)
    except Exception as exc:  # a broken item structure
        raise ImageError(f"{name}: the compressed pixel data is malformed ({exc}).") from exc
    size = frame_size(data[:65536])
    if size is None:
        raise ImageError(f"{name}: cannot read the image size from the compressed frame's header.")
    if size.rows * size.columns > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{name}: the compressed frame declares {size.columns}x{size.rows} pixels, over the limit of "
            f"{MAX_PIXELS:,}; the file is malformed or the scan must be downscaled first."
        )
    if (size.rows, size.columns) != (rows, columns) or size.components > 4:
        raise ImageError(
            f"{name}: the compressed frame is {size.columns}x{size.rows} ({size.components} components) "
            f"but the header says {columns}x{rows}; the file is malformed."
        )


def _frame(dataset: Any, name: str) -> NDArray[Any]:
    from pydicom.pixels.utils import pixel_array

    if "PixelData" not in dataset:
        raise ImageError(f"{name}: the DICOM file holds no image (no PixelData element).")
    rows, columns = _count(dataset, "Rows", 0, name), _count(dataset, "Columns", 0, name)
    if rows * columns > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{name}: {columns}x{rows} pixels exceeds the limit of {MAX_PIXELS:,}; downscale the scan first."
        )
    frames = max(_count(dataset, "NumberOfFrames", 1, name), 1)
    index = frames // 2
    syntax = getattr(dataset, "file_meta", {}).get("TransferSyntaxUID")
    if syntax is not None and syntax.is_encapsulated and syntax != RLE_LOSSLESS:
        _check_codestream(dataset, index, frames, rows, columns, name)
    try:
        return pixel_array(dataset, index=index if frames > 1 else None)
    except Exception as exc:  # no decoder for the transfer syntax, or corrupt pixel data
        described = f"{syntax.name} ({syntax})" if syntax else "unknown"
        reason = " ".join(str(exc).split())
        raise ImageError(
            f"{name}: cannot decode the pixel data (transfer syntax {described}; {reason}). "
            "Convert the scan to uncompressed DICOM; if the file is valid, check that the decoders "
            "pip install 'tumorscan[dicom]' brings (pylibjpeg and its plugins) are installed."
        ) from exc


def _window(values: NDArray[np.float64], dataset: Any, name: str) -> bool:
    """Apply DICOM's linear VOI window to 0-1 in place; False (values untouched) without a usable one."""
    if "WindowCenter" not in dataset or "WindowWidth" not in dataset:
        return False
    center = _number(dataset, "WindowCenter", np.nan, name)
    width = _number(dataset, "WindowWidth", np.nan, name)
    if width < 1:  # NaN passes on: the values become NaN and `check_values` refuses them
        return False
    with np.errstate(over="ignore", invalid="ignore"):
        values -= center - 0.5
        values /= width - 1
        values += 0.5
    np.clip(values, 0.0, 1.0, out=values)
    return True


def _to_grey(values: NDArray[np.float64], dataset: Any, name: str) -> NDArray[np.uint8]:
    """Rescale, window (or stretch) and round to 8 bits; works in place on `values` to bound memory."""
    slope = _number(dataset, "RescaleSlope", 1, name) or 1
    intercept = _number(dataset, "RescaleIntercept", 0, name)
    with np.errstate(over="ignore", invalid="ignore"):
        values *= slope
        values += intercept
    low, high = check_values(values, name, "after the rescale")
    if _window(values, dataset, name):
        check_values(values, name, "after windowing")
    else:
        values -= low
        values /= high - low
    values *= 255.0
    grey = np.rint(values, out=values).astype(np.uint8)
    return 255 - grey if dataset.get("PhotometricInterpretation") == "MONOCHROME1" else grey


def dicom_to_image(source: Path | bytes, name: str) -> Image.Image:
    """Decode a DICOM file (path or bytes) into an 8-bit 'L' or 'RGB' PIL image by the rules above.

    Raises:
        MissingDependencyError: pydicom is not installed.
        ImageError: (or ImageTooLargeError) unreadable file, no or undecodable pixel data, unknown layout.
    """
    dataset = _read(source, name)
    pixels = _frame(dataset, name)
    samples = _count(dataset, "SamplesPerPixel", 1, name) or 1
    if samples == 3 and pixels.ndim == 3 and pixels.shape[2] == 3:
        if pixels.dtype != np.uint8:  # keep the top 8 of the stored bits
            shift = min(max(_count(dataset, "BitsStored", 8, name) - 8, 0), 56)
            pixels = (pixels >> shift).astype(np.uint8)
        return Image.fromarray(pixels)
    if samples == 1 and pixels.ndim == 2:
        return Image.fromarray(_to_grey(pixels.astype(np.float64), dataset, name))
    raise ImageError(
        f"{name}: unsupported DICOM pixel layout ({samples} samples per pixel, frame shape {pixels.shape})."
    )
