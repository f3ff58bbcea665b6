"""Images a brain-MRI classifier should refuse, made from its own training scans and from numpy.

They teach the scan check (`tumorscan.train.scan_check`) what is not an upright, whole scan: the scans
rotated a quarter, a half and three quarters turn, zoomed into their centre, cut into shuffled tiles or
with inverted grey levels, and synthetic pictures (smooth and rough noise, stripes and checks, random
ellipses like a phantom, soft blobs like cells or texture). None of the images `tumor-trust` or the tests
use to measure refusals are made here, so what the check refuses there was never shown to it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from PIL import Image

Pixels = NDArray[np.uint8]
"""H x W x 3 uint8."""


def centre_crop(zoom: float) -> Callable[[Image.Image], Image.Image]:
    """The centre 1/zoom of each side: the scan seen `zoom` times closer."""

    def crop(image: Image.Image) -> Image.Image:
        width, height = image.size
        inner_width, inner_height = round(width / zoom), round(height / zoom)
        left, top = (width - inner_width) // 2, (height - inner_height) // 2
        return image.crop((left, top, left + inner_width, top + inner_height))

    return crop


def _zoom(scan: Pixels, factor: float) -> Pixels:
    """The centre 1/factor of `scan`, enlarged back to its size."""
    crop = centre_crop(factor)(Image.fromarray(scan))
    return np.asarray(crop.resize(scan.shape[1::-1], Image.Resampling.BILINEAR))


def _tiles(scan: Pixels, rng: np.random.Generator, count: int = 4) -> Pixels:
    """`scan` cut into count x count tiles, shuffled."""
    height, width = (scan.shape[0] // count) * count, (scan.shape[1] // count) * count
    h, w = height // count, width // count
    tiles = [scan[r * h : (r + 1) * h, c * w : (c + 1) * w] for r in range(count) for c in range(count)]
    order = rng.permutation(len(tiles))
    rows = [np.concatenate([tiles[order[r * count + c]] for c in range(count)], axis=1) for r in range(count)]
    out = scan.copy()
    out[:height, :width] = np.concatenate(rows, axis=0)
    return out


SCAN_TRANSFORMS: dict[str, Callable[[Pixels, np.random.Generator], Pixels]] = {
    "rotated_90": lambda scan, rng: np.ascontiguousarray(np.rot90(scan, 1)),
    "rotated_180": lambda scan, rng: np.ascontiguousarray(np.rot90(scan, 2)),
    "rotated_270": lambda scan, rng: np.ascontiguousarray(np.rot90(scan, 3)),
    "zoomed_1.6": lambda scan, rng: _zoom(scan, 1.6),
    "zoomed_2.4": lambda scan, rng: _zoom(scan, 2.4),
    "tiles": _tiles,
    "inverted": lambda scan, rng: 255 - scan,
}
"""What turns a scan into something the model should not answer."""


def _grey(array: NDArray[np.floating]) -> Pixels:
    """A 0-1 float array (H x W) as H x W x 3 uint8 grey."""
    low, high = float(array.min()), float(array.max())
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
    grey = np.round(scaled * 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _smooth_noise(size: int, rng: np.random.Generator) -> Pixels:
    """Noise blurred at a random scale (clouds, grain, fabric)."""
    cells = int(rng.integers(3, 60))
    coarse = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8))
    smooth = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    return _grey(smooth + rng.normal(0, rng.uniform(0, 40), (size, size)))


def _pattern(size: int, rng: np.random.Generator) -> Pixels:
    """Stripes or checks at a random angle and period (bricks, fabric, grids)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(4, 40)
    along = np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period)
    if rng.random() < 0.5:
        along *= np.sin((-x * np.sin(angle) + y * np.cos(angle)) * 2 * np.pi / period)
    return _grey(np.sign(along) if rng.random() < 0.5 else along)


def _ellipses(size: int, rng: np.random.Generator) -> Pixels:
    """Random filled ellipses of random grey levels on black (a phantom)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    image = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(3, 12))):
        cy, cx = rng.uniform(-0.3, 0.3, 2)
        ry, rx = rng.uniform(0.03, 0.45, 2)
        angle = rng.uniform(0, np.pi)
        u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
        v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
        image[(u / rx) ** 2 + (v / ry) ** 2 <= 1] += rng.uniform(-0.5, 1.0)
    return _grey(image)


def _blobs(size: int, rng: np.random.Generator) -> Pixels:
    """Many soft round blobs (cells, coins, gravel)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.zeros((size, size), np.float32)
    radius = rng.uniform(3, 25)
    for cy, cx in rng.uniform(0, size, (int(rng.integers(10, 120)), 2)):
        image += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius**2))
    return _grey(np.sqrt(image) if rng.random() < 0.5 else image)


SYNTHETIC: dict[str, Callable[[int, np.random.Generator], Pixels]] = {
    "smooth_noise": _smooth_noise,
    "pattern": _pattern,
    "ellipses": _ellipses,
    "blobs": _blobs,
}
"""Pictures made from numpy alone, each drawn at random."""


def transformed_scans(scans: NDArray[np.uint8], seed: int) -> tuple[NDArray[np.uint8], tuple[str, ...]]:
    """Every transform of `SCAN_TRANSFORMS` applied to every scan (N x H x W x 3), with its name.

    Quarter turns are left out for scans that are not square (they would change the shape).
    """
    rng = np.random.default_rng(seed)
    images, names = [], []
    for scan in scans:
        for name, transform in SCAN_TRANSFORMS.items():
            image = transform(scan, rng)
            if image.shape == scan.shape:
                images.append(image)
                names.append(name)
    return np.stack(images), tuple(names)


def synthetic_images(
    count: int, size: tuple[int, int], seed: int
) -> tuple[NDArray[np.uint8], tuple[str, ...]]:
    """`count` synthetic pictures of `size` (height, width), the kinds in turn, with their kind."""
    rng = np.random.default_rng(seed)
    kinds = list(SYNTHETIC)
    names = tuple(kinds[i % len(kinds)] for i in range(count))
    side = max(size)
    images = [SYNTHETIC[name](side, rng)[: size[0], : size[1]] for name in names]
    return np.stack(images), names
