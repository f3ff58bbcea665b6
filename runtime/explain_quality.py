"""How faithful a heatmap is, without knowing where the tumour is: deletion and insertion curves.

As in RISE (Petsiuk et al. 2018): the scan's pixels are changed hottest first, in STEPS equal steps, and the
explained class's probability is read after each step. Deletion replaces them (by black, as in the paper,
or by the blurred scan); insertion starts from the blurred scan and puts them back. The area under each
curve (fraction of pixels from 0 to 1) is low after deletion and high after insertion for a map that finds
what the model uses. Each substrate favours maps made by occluding with it, so all three are reported.
Ties between equally hot pixels are broken at random (seeded), so a blocky map gets no order it lacks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from .explain import blurred

STEPS = 56
"""Steps of a curve (896 pixels each at 224 x 224)."""
SUBSTRATE_BLUR = 5 / 224
"""Gaussian radius of the blurred scan the curves use, as a share of the shorter side (5 px at 224, as in
RISE's evaluation), finer than the occlusion's fill (`tumorscan.explain.BLUR_SHARE`)."""
CURVES = ("deletion", "deletion_blur", "insertion")

Probability = Callable[[NDArray[np.uint8]], NDArray[np.float64]]
"""N x H x W x 3 uint8 pixels -> N probabilities of the explained class."""


def hottest_first(heat: NDArray[np.floating], seed: int = 0) -> NDArray[np.intp]:
    """Flat pixel indices from the hottest to the coldest, ties in a seeded random order."""
    tie_break = np.random.default_rng(seed).random(heat.size)
    order: NDArray[np.intp] = np.lexsort((tie_break, -heat.ravel()))
    return order


def curve(
    probability: Probability,
    start: NDArray[np.uint8],
    finish: NDArray[np.uint8],
    order: NDArray[np.intp],
    steps: int = STEPS,
) -> NDArray[np.float64]:
    """The probability on `start` and after each step of copying `finish`'s pixels in `order` (steps + 1)."""
    height, width, channels = start.shape
    per_step = -(-order.size // steps)
    current, target = start.reshape(-1, channels).copy(), finish.reshape(-1, channels)
    frames = [current.copy()]
    for step in range(steps):
        chosen = order[step * per_step : (step + 1) * per_step]
        current[chosen] = target[chosen]
        frames.append(current.copy())
    return np.asarray(probability(np.stack(frames).reshape(-1, height, width, channels)), dtype=np.float64)


def area(values: NDArray[np.float64]) -> float:
    """Area under a curve sampled evenly from 0 to 1 (trapezoids)."""
    return float((values[:-1] + values[1:]).sum() / 2 / (len(values) - 1))


def curve_areas(
    probability: Probability, pixels: NDArray[np.uint8], heat: NDArray[np.floating], seed: int = 0
) -> dict[str, float]:
    """Areas under the deletion (to black, to blurred) and insertion curves of one map (keys: CURVES)."""
    order, smooth = hottest_first(heat, seed), blurred(pixels, SUBSTRATE_BLUR)
    pairs = {
        "deletion": (pixels, np.zeros_like(pixels)),
        "deletion_blur": (pixels, smooth),
        "insertion": (smooth, pixels),
    }
    return {name: area(curve(probability, start, finish, order)) for name, (start, finish) in pairs.items()}
