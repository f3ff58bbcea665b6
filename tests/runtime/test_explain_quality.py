"""Deletion and insertion curves: a map of where the model looks beats the same map reversed."""

from __future__ import annotations

import numpy as np
import pytest

from tumorscan.explain_quality import CURVES, area, curve, curve_areas, hottest_first

NOISE = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)


def corner_detail(pixels: np.ndarray) -> np.ndarray:
    """A "model" whose probability is the texture of the top-left 8 x 8 corner."""
    return np.clip(pixels[:, :8, :8].astype(np.float64).std(axis=(1, 2, 3)) / 80, 0.01, 0.99)


def test_a_map_on_the_evidence_beats_its_reverse() -> None:
    rows, columns = np.mgrid[:32, :32]
    on_corner = -np.hypot(rows, columns)
    good, bad = curve_areas(corner_detail, NOISE, on_corner), curve_areas(corner_detail, NOISE, -on_corner)
    assert set(good) == set(CURVES)
    assert good["deletion"] < bad["deletion"] and good["deletion_blur"] < bad["deletion_blur"]
    assert good["insertion"] > bad["insertion"]


def test_curve_runs_from_start_to_finish() -> None:
    values = curve(corner_detail, NOISE, np.zeros_like(NOISE), hottest_first(np.zeros((32, 32))), steps=8)
    assert len(values) == 9 and values[0] == corner_detail(NOISE[np.newaxis])[0] and values[-1] == 0.01


def test_ties_are_broken_at_random_the_hottest_first() -> None:
    heat = np.zeros((4, 4))
    heat[3, 3] = 1
    order = hottest_first(heat, seed=1)
    assert order[0] == 15 and sorted(order) == list(range(16))
    assert list(order) == list(hottest_first(heat, seed=1)) and list(order) != list(
        hottest_first(heat, seed=2)
    )
    assert list(order[1:]) != list(range(15))  # not in pixel order


def test_area_is_the_mean_height_of_the_curve() -> None:
    assert area(np.full(5, 0.3)) == pytest.approx(0.3) and area(np.linspace(0, 1, 11)) == pytest.approx(0.5)
    assert area(np.array([1.0, 0.0, 0.0])) == pytest.approx(0.25)  # trapezoids, not the mean of the points
