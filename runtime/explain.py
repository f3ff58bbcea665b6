"""Where a model looks: occlusion sensitivity on the exported file, without gradients or TensorFlow.

A black square (the scans' background) slides over the scan; every occluded copy goes through the model in
batches, and each pixel gets the mean drop of the explained class's score over the squares covering it.
Scores are the backend's dequantized outputs, and every pixel averages several overlapping squares, so maps
from uint8 models step finer than 1/256 (tests check they are not flat).
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from .files import atomic_write_bytes

PATCH_SHARE = 7
"""The square's side is the input size divided by this (32 px at 224)."""
BATCH = 32
"""Occluded copies per forward pass."""

Scores = Callable[[NDArray[np.uint8]], NDArray[np.float32]]
"""N x H x W x 3 uint8 pixels -> N x K scores."""


def _starts(length: int, patch: int, stride: int) -> list[int]:
    """Square positions along one axis, the last flush with the edge."""
    starts = list(range(0, length - patch + 1, stride))
    return starts if starts[-1] == length - patch else [*starts, length - patch]


def occlusion_map(scores: Scores, pixels: NDArray[np.uint8], target: int) -> NDArray[np.float32]:
    """H x W mean drop of score `target` when a square covering each pixel is blacked out.

    Args:
        scores: the model (batch of pixels -> scores).
        pixels: one H x W x 3 uint8 scan at the model's input size.
        target: the class index explained.
    """
    height, width = pixels.shape[:2]
    patch = max(2, min(height, width) // PATCH_SHARE)
    stride = max(1, patch // 2)
    squares = [(y, x) for y in _starts(height, patch, stride) for x in _starts(width, patch, stride)]
    base = float(scores(pixels[np.newaxis])[0, target])
    total = np.zeros((height, width), dtype=np.float32)
    count = np.zeros((height, width), dtype=np.float32)
    for first in range(0, len(squares), BATCH):
        chunk = squares[first : first + BATCH]
        batch = np.repeat(pixels[np.newaxis], len(chunk), axis=0)
        for image, (y, x) in zip(batch, chunk, strict=True):
            image[y : y + patch, x : x + patch] = 0
        drops = base - scores(batch)[:, target]
        for drop, (y, x) in zip(drops, chunk, strict=True):
            total[y : y + patch, x : x + patch] += drop
            count[y : y + patch, x : x + patch] += 1
    heat: NDArray[np.float32] = (total / np.maximum(count, 1)).astype(np.float32)
    return heat


def overlay_png(pixels: NDArray[np.uint8], heat: NDArray[np.float32]) -> bytes:
    """`overlay_image` as PNG bytes."""
    buffer = BytesIO()
    Image.fromarray(overlay_image(pixels, heat)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def overlay_image(pixels: NDArray[np.uint8], heat: NDArray[np.float32]) -> NDArray[np.uint8]:
    """The scan beside itself with the positive part of `heat` in red-yellow on top (RGB, twice as wide)."""
    peak = float(heat.max())
    weight = np.clip(heat / peak if peak > 0 else 0 * heat, 0, 1)[..., np.newaxis]
    colour = np.stack([np.ones_like(heat), np.clip(weight[..., 0] * 1.5 - 0.5, 0, 1), np.zeros_like(heat)], 2)
    blended = pixels * (1 - 0.6 * weight) + 255 * colour * 0.6 * weight
    side_by_side: NDArray[np.uint8] = np.concatenate([pixels, blended.astype(np.uint8)], axis=1)
    return side_by_side


def write_overlay(path: Path, pixels: NDArray[np.uint8], heat: NDArray[np.float32]) -> None:
    """Write `overlay_png` to `path` atomically."""
    atomic_write_bytes(path, overlay_png(pixels, heat))
