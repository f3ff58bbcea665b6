"""Scans as they come (bit depths, colour modes, formats); bad scans are typed errors naming the file."""

from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tumorscan.errors import ImageError, ImageTooLargeError, UnsupportedFormatError
from tumorscan.images import MAX_PIXELS, load_pixels

SIZE = (32, 32)


def _gradient(height: int = 48, width: int = 40) -> np.ndarray:
    return np.add.outer(np.arange(height), np.arange(width)).astype(np.float64) / (height + width - 2)


def _save(image: Image.Image, path: Path, **options: object) -> Path:
    image.save(path, **options)
    return path


def _scan_kinds(folder: Path) -> dict[str, Path]:
    unit = _gradient()
    grey8 = Image.fromarray((unit * 255).astype(np.uint8))
    rgb = Image.merge("RGB", [grey8, grey8.transpose(Image.Transpose.FLIP_LEFT_RIGHT), grey8])
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(np.full(unit.shape, 128, dtype=np.uint8)))
    palette_transparent = rgb.convert("P")
    palette_transparent.info["transparency"] = 0
    return {
        "png_grey8": _save(grey8, folder / "grey8.png"),
        "png_grey16": _save(Image.fromarray((unit * 65535).astype(np.uint16)), folder / "grey16.png"),
        "png_rgb": _save(rgb, folder / "rgb.png"),
        "png_rgba": _save(rgba, folder / "rgba.png"),
        "png_palette": _save(rgb.convert("P"), folder / "palette.png"),
        "png_palette_transparent": _save(palette_transparent, folder / "palette_t.png"),
        "png_1bit": _save(grey8.convert("1"), folder / "bits.png"),
        "jpeg_grey": _save(grey8, folder / "grey.jpg", quality=95),
        "jpeg_rgb": _save(rgb, folder / "rgb.JPEG", quality=95),
        "tiff_grey16": _save(Image.fromarray((unit * 4000).astype(np.uint16)), folder / "grey16.tif"),
        "bmp": _save(rgb, folder / "rgb.bmp"),
    }


def test_every_scan_kind_becomes_rgb_uint8(tmp_path: Path) -> None:
    for kind, path in _scan_kinds(tmp_path).items():
        pixels = load_pixels(path, SIZE)
        assert pixels.shape == (*SIZE, 3) and pixels.dtype == np.uint8, kind
        assert pixels.max() > 0, kind


def test_sixteen_bit_greys_use_their_full_range(tmp_path: Path) -> None:
    kinds = _scan_kinds(tmp_path)
    eight, sixteen = load_pixels(kinds["png_grey8"], SIZE), load_pixels(kinds["png_grey16"], SIZE)
    assert sixteen.max() >= 250
    assert np.abs(eight.astype(int) - sixteen.astype(int)).max() <= 2
    assert load_pixels(kinds["tiff_grey16"], SIZE).max() >= 250  # stretched from its own maximum (4000)


def test_rgba_is_composited_over_black(tmp_path: Path) -> None:
    kinds = _scan_kinds(tmp_path)
    opaque, half = load_pixels(kinds["png_rgb"], SIZE), load_pixels(kinds["png_rgba"], SIZE)
    np.testing.assert_allclose(half, opaque * (128 / 255), atol=2)


def test_every_scan_kind_can_be_classified(tflite_int8: Path, tmp_path: Path) -> None:
    from tumorscan import Classifier, Prediction

    results = Classifier.load(tflite_int8).predict_many(list(_scan_kinds(tmp_path).values()))
    assert all(isinstance(r, Prediction) for r in results)


def _png_bytes() -> bytes:
    stream = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)).save(stream, "PNG")
    return stream.getvalue()


def _png_header(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + ihdr + iend


@pytest.mark.parametrize("side", [9_000, 100_000])
def test_huge_dimensions_are_refused_from_the_header(tmp_path: Path, side: int) -> None:
    assert side * side > MAX_PIXELS
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header(side, side))
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLargeError, match=r"huge\.png"):
        load_pixels(path, SIZE)
    assert before == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize(
    ("name", "content", "error", "says"),
    [
        ("empty.png", b"", UnsupportedFormatError, "not a readable image"),
        ("text.jpg", b"patient notes, not a scan\n" * 10, UnsupportedFormatError, "not a readable image"),
        ("half.png", _png_bytes()[:300], ImageError, "corrupt or truncated"),
        ("scan.gif", b"GIF89a" + b"\x00" * 40, UnsupportedFormatError, "unknown extension '.gif'"),
        ("scan", b"\x00" * 40, UnsupportedFormatError, "unknown extension '(none)'"),
    ],
)
def test_bad_files_are_typed_errors_naming_the_file(
    tmp_path: Path, name: str, content: bytes, error: type[Exception], says: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(error, match=rf"{path.name}: .*{re.escape(says)}"):
        load_pixels(path, SIZE)


def test_truncated_and_mislabelled_real_scans(sample_test: Path, tmp_path: Path) -> None:
    original = sorted(sample_test.rglob("*.jpg"))[0].read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(original[: len(original) // 3])
    with pytest.raises(ImageError, match=r"truncated\.jpg: the image data is corrupt or truncated"):
        load_pixels(truncated, SIZE)
    mislabelled = tmp_path / "really_a_jpeg.png"
    mislabelled.write_bytes(original)
    assert load_pixels(mislabelled, SIZE).shape == (*SIZE, 3)  # the content decides the decoder


def test_gif_content_behind_an_accepted_extension(tmp_path: Path) -> None:
    path = tmp_path / "animated.png"
    Image.new("P", (10, 10)).save(path, format="GIF")
    with pytest.raises(UnsupportedFormatError, match=r"animated\.png: GIF images are not accepted"):
        load_pixels(path, SIZE)


def test_corrupted_bytes_never_escape_as_untyped_errors(tmp_path: Path) -> None:
    kinds = _scan_kinds(tmp_path)
    rng = np.random.default_rng(0)
    for kind in ("png_rgb", "jpeg_rgb", "tiff_grey16", "bmp"):
        original = kinds[kind].read_bytes()
        for _ in range(40):
            damaged = bytearray(original[: int(rng.integers(1, len(original) + 1))])
            for position in rng.integers(0, len(damaged), 4):
                damaged[position] = int(rng.integers(0, 256))
            try:
                load_pixels(bytes(damaged), SIZE)
            except ImageError as exc:
                assert "bytes>" in str(exc)
