"""Calibrated confidence, abstention and input checks, from the `trust` entry of a model's spec.

The entry is written by `tumor-calibrate` (or at the end of `tumor-train`) and travels into every export:

    {"temperature": T, "threshold": t, "input_checks": {name: [low, high]}, ...measurements}

Probabilities are calibrated by temperature scaling on the exported probabilities, softmax(log p / T),
which equals softmax(z / T) on the logits. A scan is answered when its calibrated confidence reaches the
threshold, every input statistic lies in the range seen on the training scans and, for a model exported
with the feature-distance output (`tumorscan.train.distance`), its distance ratio is at most 1; otherwise
the prediction abstains with its reasons. The input checks need only the pixels from `load_pixels`, so they
work for every exported format and backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import MetadataError
from .spec import ModelSpec

DISTANCE_OUTPUT = "training_distance"
"""Name of the optional second output of an exported model: feature distance / threshold (column 0).
Named to sort after "probabilities": TFLite orders a signature's outputs by name."""
LOW_CONFIDENCE = "low_confidence"
OUT_OF_DISTRIBUTION = "out_of_distribution"
PROBABILITY_FLOOR = 1e-6
"""Probabilities (exactly 0 on uint8 outputs) are raised to this before taking logs."""
DARK_LEVEL = 32
"""Grey level below which a pixel counts as background (scans are mostly black around the head)."""


def _border(grey: NDArray[np.float32]) -> NDArray[np.float32]:
    """Mean grey level of the outer eighth of the image on every side."""
    h, w = max(1, grey.shape[1] // 8), max(1, grey.shape[2] // 8)
    inner = grey[:, h:-h, w:-w]
    ring: NDArray[np.float32] = (grey.sum(axis=(1, 2)) - inner.sum(axis=(1, 2))) / (
        grey[0].size - inner[0].size
    )
    return ring


ROW_STRIDE = 2
"""Input statistics read every second row (half the work); steps stay between neighbouring pixels."""

GREY_STATISTICS: dict[str, Callable[[NDArray[np.float32]], NDArray[np.float32]]] = {
    "contrast": lambda grey: grey.std(axis=(1, 2)),
    "brightness": lambda grey: grey.mean(axis=(1, 2)),
    "dark_share": lambda grey: (grey < DARK_LEVEL / 255).mean(axis=(1, 2)),
    "border": _border,
}
"""Cheap statistics of N x H x W grey levels in 0-1, each -> N floats (border: the outer eighth)."""

STEP_STATISTICS: dict[str, Callable[[NDArray[np.float32]], NDArray[np.float32]]] = {
    "roughness": lambda steps: steps.mean(axis=(1, 2)),
    "edge": lambda steps: steps.max(axis=(1, 2)),
}
"""Statistics of the absolute steps between horizontal neighbours: roughness (their mean) is high for
noise and text; edge (the largest) is low for smooth pictures, while a scan shows the sharp outline of a
head."""

INPUT_STATISTICS = ("colour", *GREY_STATISTICS, *STEP_STATISTICS)


def input_statistics(pixels: NDArray[np.uint8]) -> dict[str, NDArray[np.float32]]:
    """Every input statistic of N x H x W x 3 uint8 pixels (every `ROW_STRIDE`-th row).

    colour: the mean spread between channels.
    """
    sampled = pixels[:, ::ROW_STRIDE]
    # One channel at a time: numpy reduces over a short last axis about ten times slower.
    red, green, blue = (sampled[..., channel] for channel in range(3))
    spread = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
    found = {"colour": spread.mean(axis=(1, 2), dtype=np.float32) / 255.0}
    grey: NDArray[np.float32] = (red.astype(np.float32) + green + blue) / np.float32(3 * 255)
    found.update({name: function(grey) for name, function in GREY_STATISTICS.items()})
    steps = np.abs(np.diff(grey, axis=2))
    found.update({name: function(steps) for name, function in STEP_STATISTICS.items()})
    return {name: values.astype(np.float32) for name, values in found.items()}


def apply_temperature(probabilities: NDArray[np.float32], temperature: float) -> NDArray[np.float32]:
    """softmax(log p / T) row by row."""
    logits = np.log(np.maximum(probabilities, PROBABILITY_FLOOR)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    result: NDArray[np.float32] = (scaled / scaled.sum(axis=1, keepdims=True)).astype(np.float32)
    return result


@dataclass(frozen=True)
class Trust:
    """What a model's spec says about calibrating and abstaining."""

    temperature: float = 1.0
    threshold: float | None = None
    """Lowest calibrated confidence that is answered; None: confidence never abstains."""
    input_checks: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """Accepted [low, high] range of each input statistic."""

    @classmethod
    def from_spec(cls, spec: ModelSpec, source: str = "model") -> Trust | None:
        """The spec's trust entry, or None when the model has none (an older or foreign export).

        Raises:
            MetadataError: the entry is malformed.
        """
        entry: Mapping[str, Any] | None = spec.trust
        if not entry:
            return None
        try:
            temperature = float(entry.get("temperature", 1.0))
            threshold = entry.get("threshold")
            checks = {
                str(name): (float(low), float(high))
                for name, (low, high) in (entry.get("input_checks") or {}).items()
                if name in INPUT_STATISTICS
            }
            trust = cls(temperature, None if threshold is None else float(threshold), checks)
        except (TypeError, ValueError, AttributeError) as exc:
            raise MetadataError(f"{source}: the trust entry of its metadata is malformed ({exc}).") from exc
        if not temperature > 0:
            raise MetadataError(
                f"{source}: the trust entry's temperature must be positive, got {temperature}."
            )
        return trust

    def calibrate(self, probabilities: NDArray[np.float32]) -> NDArray[np.float32]:
        """Temperature-scaled probabilities."""
        return (
            probabilities if self.temperature == 1.0 else apply_temperature(probabilities, self.temperature)
        )

    def out_of_range(self, pixels: NDArray[np.uint8]) -> list[list[str]]:
        """For each image, the names of the input statistics outside their accepted range."""
        found: list[list[str]] = [[] for _ in range(len(pixels))]
        if not self.input_checks:
            return found
        for name, values in input_statistics(pixels).items():
            if name not in self.input_checks:
                continue
            low, high = self.input_checks[name]
            for index in np.flatnonzero((values < low) | (values > high)):
                found[index].append(name)
        return found

    def out_of_distribution(
        self, pixels: NDArray[np.uint8], far: NDArray[np.bool_] | None = None
    ) -> NDArray[np.bool_]:
        """Images an input statistic puts out of range, or whose feature distance is beyond its threshold."""
        flagged = np.array([bool(failed) for failed in self.out_of_range(pixels)], dtype=bool)
        return flagged if far is None else flagged | np.asarray(far, dtype=bool).reshape(-1)

    def reasons(
        self,
        probabilities: NDArray[np.float32],
        pixels: NDArray[np.uint8],
        threshold: float | None = None,
        far: NDArray[np.bool_] | None = None,
    ) -> list[tuple[str, ...]]:
        """Why each image is not answered (empty: answered), from calibrated probabilities and its pixels.

        `threshold` overrides the spec's confidence threshold; `far` marks images whose feature distance
        (the exported model's `training_distance` output) is above 1.
        """
        limit = self.threshold if threshold is None else threshold
        confidences = probabilities.max(axis=1)
        results = []
        for confidence, flagged in zip(confidences, self.out_of_distribution(pixels, far), strict=True):
            reasons = [OUT_OF_DISTRIBUTION] if flagged else []
            if limit is not None and confidence < limit:
                reasons.append(LOW_CONFIDENCE)
            results.append(tuple(reasons))
        return results


def unavailable_note(file: str) -> str:
    """The one line saying that a model cannot abstain."""
    return (
        f"abstention unavailable: {file} carries no calibrated threshold or input checks (an older or "
        "foreign export); run tumor-calibrate on its .keras model and export again."
    )
