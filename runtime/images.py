"""The one preprocessing path: scan file -> RGB uint8 array at the model's input size.

Training, calibration, parity checks and inference all call `load_pixels`, so a model sees the
same pixels everywhere. Rules, in order:

1. Decode. Accepted: PNG, JPEG, BMP, TIFF (by extension, checked against the content) and DICOM
   (`.dcm`, with the `[dicom]` extra). Dimensions are checked before pixels are decoded.
2. Orientation. The EXIF orientation tag, if any, is applied.
3. Colour. Every Pillow mode becomes RGB uint8:
   - L, 1, P, CMYK, YCbCr, LAB, HSV, RGB: Pillow's own conversion to RGB;
   - RGBA, LA, PA and P with transparency: composited over black (the background of an MRI);
   - I;16, I, F (16/32-bit and float): linearly stretched from the image's own minimum and
     maximum to 0-255 (a flat image becomes 0), then grey to RGB.
4. Resize. The whole image to the model's width x height with Pillow's bilinear filter
   (antialiased when shrinking); the aspect ratio is not kept, as in the seed's generator.
   A JPEG at least twice the target size is first decoded at half scale in the DCT domain
   (Pillow's `draft`), which costs a fraction of a full decode; smaller reductions are not used,
   so the filter above still does the final, antialiased step.

Normalisation is not done here: it lives inside the model graph.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import NDArray
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, ImageTooLargeError, UnsupportedFormatError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_EXTENSIONS = (".dcm", ".dicom")
SCAN_EXTENSIONS = IMAGE_EXTENSIONS + DICOM_EXTENSIONS
PILLOW_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "TIFF")
MAX_PIXELS = 64_000_000
"""Largest scan accepted (width x height), checked from the header before decoding."""

RESIZE_FILTER = Image.Resampling.BILINEAR
TRANSPOSED_ORIENTATIONS = range(2, 9)
"""EXIF orientations that `ImageOps.exif_transpose` turns or flips (1 is upright)."""

ImageSource = str | Path | bytes | Image.Image | NDArray[np.generic]


def is_scan_file(path: Path) -> bool:
    """True when the file name has an accepted scan extension."""
    return path.suffix.lower() in SCAN_EXTENSIONS


def describe_source(source: ImageSource) -> str:
    """How messages and results name a scan: its path, or a short description of in-memory data."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def _is_dicom_bytes(data: bytes) -> bool:
    return len(data) > 132 and data[128:132] == b"DICM"


def _open_pillow(stream: IO[bytes], name: str, target: tuple[int, int] | None = None) -> Image.Image:
    try:
        image = Image.open(stream)
    except UnidentifiedImageError as exc:
        raise UnsupportedFormatError(
            f"{name}: not a readable image (PNG, JPEG, BMP, TIFF or DICOM)."
        ) from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: image is too large to decode safely ({exc}).") from exc
    except Exception as exc:  # Pillow's plugins raise many exception types on malformed headers
        raise ImageError(f"{name}: cannot read the image header ({exc}).") from exc
    if image.format not in PILLOW_FORMATS:
        raise UnsupportedFormatError(
            f"{name}: {image.format} images are not accepted; use PNG, JPEG, BMP or TIFF."
        )
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} pixels exceeds the limit of {MAX_PIXELS:,}; downscale the scan first."
        )
    try:
        if target is not None and image.format in ("JPEG", "MPO"):
            image.draft(image.mode, (max(target[1], (width + 1) // 2), max(target[0], (height + 1) // 2)))
        image.load()
    except Exception as exc:  # likewise for malformed pixel data
        raise ImageError(f"{name}: the image data is corrupt or truncated ({exc}).") from exc
    return image


def decode_scan(source: ImageSource, target: tuple[int, int] | None = None) -> Image.Image:
    """Decode a file path, encoded bytes or PIL image into a PIL image (not yet converted).

    With a `target` (height, width), a large JPEG is decoded at reduced scale (see rule 4).
    """
    name = describe_source(source)
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return array_to_image(source, name)
    if isinstance(source, bytes):
        if _is_dicom_bytes(source):
            from .dicom import dicom_to_image

            return dicom_to_image(source, name)
        return _open_pillow(io.BytesIO(source), name, target)
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix not in SCAN_EXTENSIONS:
        raise UnsupportedFormatError(
            f"{name}: unknown extension {suffix or '(none)'!r}; accepted: {', '.join(SCAN_EXTENSIONS)}."
        )
    if not path.is_file():
        raise ImageError(f"{name}: no such file.")
    if suffix in DICOM_EXTENSIONS:
        from .dicom import dicom_to_image

        return dicom_to_image(path, name)
    with path.open("rb") as stream:
        return _open_pillow(stream, name, target)


def array_to_image(array: NDArray[np.generic], name: str = "<array>") -> Image.Image:
    """Wrap an HxW or HxWxC (C in 1, 3, 4) array as a PIL image."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"{name}: expected an HxW or HxWx3/4 array, got shape {array.shape}.")
    if array.dtype == np.uint8:
        return Image.fromarray(array)
    if array.ndim == 2:
        return Image.fromarray(array.astype(np.float32), mode="F")
    return Image.fromarray(_stretch_to_uint8(array.astype(np.float32)))


def _stretch_to_uint8(values: NDArray[np.floating]) -> NDArray[np.uint8]:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    stretched: NDArray[np.uint8] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return stretched


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any Pillow mode to RGB by the rules in this module.

    An upright RGB image comes back as it is (the same pixels without two copies).
    """
    if image.getexif().get(ExifTags.Base.Orientation, 1) in TRANSPOSED_ORIENTATIONS:
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("I", "F") or mode.startswith("I;"):
        grey = _stretch_to_uint8(np.asarray(image, dtype=np.float32))
        return Image.fromarray(grey).convert("RGB")
    return image.convert("RGB")


def resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize to (height, width) with the one documented filter."""
    height, width = size
    if image.size == (width, height):
        return image
    return image.resize((width, height), RESIZE_FILTER)


def load_pixels(source: ImageSource, size: tuple[int, int]) -> NDArray[np.uint8]:
    """Decode, orient, convert and resize a scan: an HxWx3 uint8 RGB array.

    Args:
        source: a file path, encoded bytes, a PIL image or an array.
        size: (height, width) of the model input.

    Raises:
        ImageError: (or a subclass) naming the source and what is wrong.
    """
    name = describe_source(source)
    image = decode_scan(source, size)
    try:
        rgb = resize(to_rgb(image), size)
        pixels = np.asarray(rgb, dtype=np.uint8)
    except Exception as exc:  # EXIF data is untrusted too
        raise ImageError(f"{name}: cannot convert the image to RGB ({exc}).") from exc
    return pixels


@dataclass(frozen=True)
class ScanFile:
    """A scan file read for a dataset: its sha256, and its pixels or why they could not be had."""

    sha256: str
    pixels: NDArray[np.uint8] | None
    error: str | None


def read_scan_file(path: Path, size: tuple[int, int]) -> ScanFile:
    """Hash a scan file's bytes and decode it with `load_pixels`; never raises for a bad file."""
    try:
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return ScanFile("", None, f"{path}: cannot read the file ({exc.strerror}).")
    try:
        return ScanFile(sha256, load_pixels(path, size), None)
    except ImageError as exc:
        return ScanFile(sha256, None, str(exc))
