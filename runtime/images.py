"""The one preprocessing path: scan file -> RGB uint8 array at the model's input size.

Training, calibration, parity checks and inference all call `load_pixels`, so a model sees the
same pixels everywhere. Rules, in order:

1. Decode. Accepted: PNG, JPEG, BMP, TIFF (by extension, checked against the content) and DICOM
   (`.dcm`, `.dicom`, or any other name whose content starts with DICOM's preamble and 'DICM' marker;
   with the `[dicom]` extra). A path must name a regular file (`tumorscan.paths` gives
   missing files, dangling links, link loops and FIFOs their own errors). Dimensions are checked
   before pixels are decoded.
2. Orientation. The EXIF orientation tag, if any, is applied.
3. Colour. Every Pillow mode becomes RGB uint8:
   - L, 1, P, CMYK, YCbCr, LAB, HSV, RGB: Pillow's own conversion to RGB;
   - RGBA, LA, PA and P with transparency: composited over black (the background of an MRI);
   - I;16, I, F (16/32-bit and float): linearly stretched from the image's own minimum and
     maximum to 0-255, then grey to RGB.
   Degenerate pixels are refused (`EmptyImageError`, code `empty_image`) by `check_values`, the one
   check every stretched or windowed value goes through: an empty image, non-finite values (NaN,
   infinity), or a DICOM frame that is flat (one value everywhere) after its rescale or window. Plain
   8-bit images are taken as they are; a flat image of any other type (a float or 16-bit array or
   file) has no range to stretch and becomes black: flat images of every type are classified alike,
   and the model's input checks flag them.
4. Resize. The whole image to the model's width x height with Pillow's bilinear filter
   (antialiased when shrinking); the aspect ratio is not kept, as in the seed's generator.
   A JPEG at least twice the target size is first decoded at half scale in the DCT domain
   (Pillow's `draft`), which costs a fraction of a full decode; smaller reductions are not used,
   so the filter above still does the final, antialiased step. An RGB image whose three channels
   are equal (how most scans are stored) is resized as one grey channel and then copied into three:
   the same pixels for a third of the work, because the filter treats every channel alike.

Normalisation is not done here: it lives inside the model graph.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import NDArray
from PIL import ExifTags, Image, ImageChops, ImageOps, UnidentifiedImageError

from .errors import (
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    UnreadableFileError,
    UnsupportedFormatError,
)
from .paths import check_scan_path
from .pixel_limits import MAX_PIXELS as MAX_PIXELS  # re-exported; their home is `tumorscan.pixel_limits`
from .pixel_limits import PEAK_BYTES_PER_PIXEL as PEAK_BYTES_PER_PIXEL
from .pixel_limits import check_values as check_values

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_EXTENSIONS = (".dcm", ".dicom")
SCAN_EXTENSIONS = IMAGE_EXTENSIONS + DICOM_EXTENSIONS
DICOM_HEAD = 132
"""A DICOM file's preamble (128 bytes) and its 'DICM' marker."""
PILLOW_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "TIFF")
RESIZE_FILTER = Image.Resampling.BILINEAR
TRANSPOSED_ORIENTATIONS = range(2, 9)
"""EXIF orientations that `ImageOps.exif_transpose` turns or flips (1 is upright)."""

ImageSource = str | Path | bytes | Image.Image | NDArray[np.generic]


def is_scan_file(path: Path) -> bool:
    """True when the file name has an accepted scan extension, or the file is DICOM (`is_dicom_file`)."""
    return path.suffix.lower() in SCAN_EXTENSIONS or is_dicom_file(path)


def is_dicom_file(path: Path) -> bool:
    """True for a regular file with DICOM's 'DICM' marker after its 128-byte preamble, whatever its name
    (PACS exports and DICOMDIR folders often name files without an extension, or by their UID). A file
    named DICOMDIR is an index, not a scan: False. False when it cannot be read."""
    if path.name.upper() == "DICOMDIR":
        return False
    try:
        if not os.path.isfile(path):  # never open a FIFO or device to look
            return False
        with open(path, "rb") as stream:
            return _is_dicom_bytes(stream.read(DICOM_HEAD))
    except (OSError, ValueError):
        return False


def describe_source(source: ImageSource) -> str:
    """How messages and results name a scan: its path, or a short description of in-memory data.

    Bytes of a file name that are not UTF-8 are shown as \\xNN escapes (tumor-infer's records flag such
    names with `source_not_utf8`, so they are not mistaken for a name holding those characters).
    """
    if isinstance(source, (str, Path)):
        try:
            return os.fsencode(source).decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a lone surrogate that no file name's bytes decode to
            return str(source).encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def _is_dicom_bytes(data: bytes) -> bool:
    return len(data) >= DICOM_HEAD and data[128:DICOM_HEAD] == b"DICM"


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
    if not isinstance(source, (str, Path)):
        raise UnsupportedFormatError(
            f"{name}: cannot read a {type(source).__name__}; pass a path, bytes, a PIL image or an array."
        )
    path = Path(source)
    suffix = path.suffix.lower()
    dicom = suffix in DICOM_EXTENSIONS or (suffix not in IMAGE_EXTENSIONS and is_dicom_file(path))
    if suffix not in SCAN_EXTENSIONS and not dicom:
        raise UnsupportedFormatError(
            f"{name}: unknown extension {suffix or '(none)'!r} and no DICOM header; "
            f"accepted: {', '.join(SCAN_EXTENSIONS)}, or DICOM files of any name."
        )
    check_scan_path(path, name)
    if dicom:
        from .dicom import dicom_to_image

        return dicom_to_image(path, name)
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise UnreadableFileError(f"{name}: cannot open the file ({exc.strerror or exc}).") from exc
    with stream:
        return _open_pillow(stream, name, target)


def array_to_image(array: NDArray[np.generic], name: str = "<array>") -> Image.Image:
    """Wrap an HxW or HxWxC (C in 1, 3, 4) array as a PIL image."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"{name}: expected an HxW or HxWx3/4 array, got shape {array.shape}.")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ImageError(f"{name}: expected an integer or float array, got {array.dtype}.")
    if array.size == 0:
        raise EmptyImageError(f"{name}: the array is empty (shape {array.shape}); pass a real scan.")
    if array.dtype == np.uint8:
        return Image.fromarray(array)
    if array.ndim == 2:
        return Image.fromarray(array.astype(np.float32), mode="F")
    return Image.fromarray(_stretch_to_uint8(array.astype(np.float32), name))


def _stretch_to_uint8(values: NDArray[np.floating], name: str) -> NDArray[np.uint8]:
    """Stretch min-max to 0-255, in place on `values` (a fresh float array) to bound memory.

    A flat image (one value everywhere) has no range to stretch: it becomes black, and is classified like
    a flat 8-bit image (the model's input checks flag it).
    """
    low, high = check_values(values, name, allow_flat=True)
    values -= low
    values *= 255.0 / (high - low) if high > low else 0.0
    np.rint(values, out=values)
    stretched: NDArray[np.uint8] = np.clip(values, 0, 255, out=values).astype(np.uint8)
    return stretched


def upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation tag says (itself when upright or untagged)."""
    if image.getexif().get(ExifTags.Base.Orientation, 1) in TRANSPOSED_ORIENTATIONS:
        return ImageOps.exif_transpose(image)
    return image


def to_rgb(image: Image.Image, name: str = "<image>") -> Image.Image:
    """Apply EXIF orientation and convert any Pillow mode to RGB by the rules in this module.

    An upright RGB image comes back as it is (the same pixels without two copies).
    """
    return _convert_rgb(upright(image), name)


def _convert_rgb(image: Image.Image, name: str) -> Image.Image:
    """Rule 3 on an upright image."""
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
        grey = _stretch_to_uint8(np.array(image, dtype=np.float32), name)
        return Image.fromarray(grey).convert("RGB")
    return image.convert("RGB")


def resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize to (height, width) with the one documented filter."""
    height, width = size
    if image.size == (width, height):
        return image
    return image.resize((width, height), RESIZE_FILTER)


def grey_channel(image: Image.Image) -> Image.Image | None:
    """The one channel of an RGB image whose three channels are equal, else None."""
    if image.mode != "RGB":
        return None
    red, green, blue = image.split()
    if ImageChops.difference(red, green).getbbox() or ImageChops.difference(green, blue).getbbox():
        return None
    return red


def resized_rgb(image: Image.Image, size: tuple[int, int], name: str = "<image>") -> Image.Image:
    """Rules 2 to 4 on a decoded image: upright, RGB, at (height, width).

    Grey content (mode L, or RGB with equal channels) is resized as one channel and copied into three
    afterwards, which gives the same pixels: the filter treats each channel alike.
    """
    image = upright(image)
    grey = image if image.mode == "L" else grey_channel(image)
    if grey is not None:
        return resize(grey, size).convert("RGB")
    return resize(_convert_rgb(image, name), size)


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
    if image.width == 0 or image.height == 0:
        raise EmptyImageError(f"{name}: the image is empty ({image.width}x{image.height}); pass a real scan.")
    try:
        pixels = np.asarray(resized_rgb(image, size, name), dtype=np.uint8)
    except ImageError:
        raise
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
