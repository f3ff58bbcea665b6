"""The grey shortcut in `load_pixels` gives the pixels of the general path: RGB first, then the resize."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tumorscan.images import grey_channel, load_pixels, resize, to_rgb

SIZE = (40, 48)
SAMPLE = Path(__file__).parent.parent / "data" / "mri"


def general_path(image: Image.Image) -> np.ndarray:
    """What every image went through before the shortcut: convert to RGB, then resize."""
    return np.asarray(resize(to_rgb(image), SIZE))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_grey_images_get_the_general_path_pixels(seed: int, mode: str) -> None:
    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in rng.integers(20, 300, size=2))
    grey = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8))
    image = grey.convert(mode)
    assert np.array_equal(load_pixels(image, SIZE), general_path(image))


def test_colour_images_keep_their_colour() -> None:
    rng = np.random.default_rng(7)
    image = Image.fromarray(rng.integers(0, 256, (90, 70, 3), dtype=np.uint8))
    assert grey_channel(image) is None
    pixels = load_pixels(image, SIZE)
    assert np.array_equal(pixels, general_path(image))
    assert np.ptp(pixels.astype(int), axis=2).max() > 0


def test_one_coloured_pixel_is_enough_to_stay_colour() -> None:
    array = np.full((64, 64, 3), 90, dtype=np.uint8)
    array[10, 20] = (90, 91, 90)
    assert grey_channel(Image.fromarray(array)) is None
    array[10, 20] = (90, 90, 90)
    assert grey_channel(Image.fromarray(array)) is not None


def test_committed_scans_take_the_shortcut_with_unchanged_pixels() -> None:
    scans = sorted(SAMPLE.rglob("*.jpg"))
    assert scans
    for scan in scans:
        with Image.open(scan) as image:
            image.load()
            assert grey_channel(image) is not None, scan
        with Image.open(io.BytesIO(scan.read_bytes())) as image:
            width, height = image.size
            image.draft(image.mode, (max(SIZE[1], (width + 1) // 2), max(SIZE[0], (height + 1) // 2)))
            assert np.array_equal(load_pixels(scan, SIZE), general_path(image)), scan
