"""Where a model looks: occlusion sensitivity on the exported file, without gradients or TensorFlow.

A square slides over the scan in overlapping steps (14 x 14 positions of a 24 px square at 224 px); under it
the scan is replaced by a blurred copy of itself, which removes the detail there but keeps the local
intensity, so the model sees a smoothed scan rather than a black hole with sharp edges that no training
scan had. Every occluded copy goes through the model (in parallel threads when there are cores for them),
and each square's drop of the explained class's log-odds (its weight of evidence, floored at the model's
output resolution so that a saturated probability still moves) is put at the square's centre; the map is
bilinear between centres. `Occlusion` holds these choices; `scripts/measure_heatmaps.py` compares them by
deletion and insertion curves.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

BATCH = 32
"""Occluded copies per call of the model."""
BLUR_SHARE = 10 / 224
"""The blur fill's Gaussian radius as a share of the input's shorter side (10 px at 224)."""
MIN_PROBABILITY = float(np.finfo(np.float32).tiny)
"""Log-odds floor for float outputs (the smallest normal float32): a probability that rounds to 1 still
moves, because the other classes' sum keeps its digits."""
MAX_WORKERS = 2
"""Threads running occluded copies at once (each TFLite thread has its own interpreter)."""

Scores = Callable[[NDArray[np.uint8]], NDArray[np.float32]]
"""N x H x W x 3 uint8 pixels -> N x K scores."""


def blurred(pixels: NDArray[np.uint8], share: float = BLUR_SHARE) -> NDArray[np.uint8]:
    """The scan under a Gaussian blur of radius `share` of its shorter side."""
    radius = share * min(pixels.shape[:2])
    return np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(radius)), dtype=np.uint8)


def _mean(pixels: NDArray[np.uint8]) -> NDArray[np.uint8]:
    return np.broadcast_to(np.rint(pixels.mean(axis=(0, 1))).astype(np.uint8), pixels.shape)


FILLS: dict[str, Callable[[NDArray[np.uint8]], NDArray[np.uint8]]] = {
    "blur": blurred,
    "black": np.zeros_like,
    "mean": _mean,
}
"""What replaces the pixels under the square: the scan blurred, black, or its mean colour."""


def _probability(scores: NDArray[np.float32], target: int, floor: float) -> NDArray[np.float64]:
    return scores[:, target].astype(np.float64)


def _log_odds(scores: NDArray[np.float32], target: int, floor: float) -> NDArray[np.float64]:
    """log p(target) - log p(any other), from the other classes' sum (precise when p(target) rounds to 1)."""
    probabilities = np.clip(scores.astype(np.float64), 0, None)
    others = probabilities.sum(axis=1) - probabilities[:, target]
    odds: NDArray[np.float64] = np.log(np.maximum(probabilities[:, target], floor)) - np.log(
        np.maximum(others, floor)
    )
    return odds


SCORES = {"log-odds": _log_odds, "probability": _probability}
"""What a square's drop is measured on."""


@dataclass(frozen=True)
class Occlusion:
    """One occlusion method: square size and step as shares of the input's shorter side, fill, score, map."""

    patch: float = 3 / 28
    """Square side (24 px at 224)."""
    stride: float = 1 / 14
    """Step between squares (16 px at 224)."""
    fill: str = "blur"
    """A key of FILLS."""
    score: str = "log-odds"
    """A key of SCORES."""
    smooth: bool = True
    """Bilinear between square centres; False: each pixel averages the squares that cover it (blocks)."""

    def __post_init__(self) -> None:
        if self.fill not in FILLS or self.score not in SCORES:
            raise ValueError(
                f"fill {self.fill!r} or score {self.score!r} unknown; fills: {', '.join(FILLS)}; "
                f"scores: {', '.join(SCORES)}."
            )

    def squares(self, height: int, width: int) -> tuple[int, list[int], list[int]]:
        """The square's side in pixels and its top and left positions (the last flush with the edge)."""
        side = min(height, width)
        patch, stride = max(2, round(side * self.patch)), max(1, round(side * self.stride))
        return patch, _starts(height, patch, stride), _starts(width, patch, stride)

    def passes(self, height: int, width: int) -> int:
        """Forward passes per map: one per square, and the scan itself."""
        _, tops, lefts = self.squares(height, width)
        return len(tops) * len(lefts) + 1


DEFAULT_OCCLUSION = Occlusion()


def _starts(length: int, patch: int, stride: int) -> list[int]:
    """Square positions along one axis, the last flush with the edge."""
    starts = list(range(0, length - patch + 1, stride))
    return starts if starts[-1] == length - patch else [*starts, length - patch]


def _workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(MAX_WORKERS, cores)


def square_drops(
    scores: Scores, pixels: NDArray[np.uint8], target: int, method: Occlusion, floor: float
) -> NDArray[np.float64]:
    """Tops x lefts: the drop of the target's score when each square is filled (`method.fill`)."""
    patch, tops, lefts = method.squares(*pixels.shape[:2])
    filled, evidence = FILLS[method.fill](pixels), SCORES[method.score]
    squares = [(y, x) for y in tops for x in lefts]

    def run(first: int) -> NDArray[np.float64]:
        chunk = squares[first : first + BATCH]
        batch = np.repeat(pixels[np.newaxis], len(chunk), axis=0)
        for image, (y, x) in zip(batch, chunk, strict=True):
            image[y : y + patch, x : x + patch] = filled[y : y + patch, x : x + patch]
        return evidence(scores(batch), target, floor)

    base = evidence(scores(pixels[np.newaxis]), target, floor)[0]
    with ThreadPoolExecutor(_workers()) as pool:
        after = np.concatenate(list(pool.map(run, range(0, len(squares), BATCH))))
    drops: NDArray[np.float64] = (base - after).reshape(len(tops), len(lefts))
    return drops


def _bilinear(
    drops: NDArray[np.float64], tops: list[int], lefts: list[int], patch: int
) -> NDArray[np.float64]:
    """H x W map through the squares' centres, constant beyond the outermost ones."""
    height, width = tops[-1] + patch, lefts[-1] + patch
    rows_at, columns_at = np.add(tops, (patch - 1) / 2), np.add(lefts, (patch - 1) / 2)
    rows = np.stack([np.interp(np.arange(width), columns_at, row) for row in drops])
    return np.stack([np.interp(np.arange(height), rows_at, column) for column in rows.T], axis=1)


def _blocks(drops: NDArray[np.float64], tops: list[int], lefts: list[int], patch: int) -> NDArray[np.float64]:
    """H x W map: each pixel the mean drop of the squares covering it."""
    total = np.zeros((tops[-1] + patch, lefts[-1] + patch))
    count = np.zeros_like(total)
    for row, y in zip(drops, tops, strict=True):
        for drop, x in zip(row, lefts, strict=True):
            total[y : y + patch, x : x + patch] += drop
            count[y : y + patch, x : x + patch] += 1
    return total / np.maximum(count, 1)


def occlusion_map(
    scores: Scores,
    pixels: NDArray[np.uint8],
    target: int,
    method: Occlusion = DEFAULT_OCCLUSION,
    resolution: float = 0.0,
) -> NDArray[np.float32]:
    """H x W drop of score `target` when the scan around each pixel is occluded (positive: evidence for it).

    Args:
        scores: the model (batch of pixels -> probabilities).
        pixels: one H x W x 3 uint8 scan at the model's input size.
        target: the class index explained.
        method: square size, step, fill, score and map (`Occlusion`).
        resolution: the step of the model's quantized outputs (0 for float outputs): log-odds are floored
            at half of it, so that a probability stuck at 0 or 1 by quantization does not explode.
    """
    patch, tops, lefts = method.squares(*pixels.shape[:2])
    drops = square_drops(scores, pixels, target, method, max(MIN_PROBABILITY, resolution / 2))
    heat = (_bilinear if method.smooth else _blocks)(drops, tops, lefts, patch)
    return heat.astype(np.float32)


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
