"""Occlusion heatmaps: where they look, what they cost, not flat on uint8 outputs, one PNG per scan."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tumorscan import Classifier
from tumorscan.cli import infer_command
from tumorscan.explain import DEFAULT_OCCLUSION, Occlusion, occlusion_map


@pytest.mark.parametrize("fixture", ["tflite_int8", "onnx_model"])
def test_maps_are_not_flat(fixture: str, sample_test: Path, request: pytest.FixtureRequest) -> None:
    classifier = Classifier.load(request.getfixturevalue(fixture))
    scan = sample_test / "pituitary_tumor" / "image(1).jpg"
    heat = classifier.explain(scan)
    assert heat.shape == classifier.spec.input.size and heat.dtype == np.float32
    assert len(np.unique(np.round(heat, 6))) > 20 and float(heat.std()) > 1e-3


def _corner_detail(pixels: np.ndarray) -> np.ndarray:
    """A "model" that only looks at the texture of the top-left 8 x 8 corner (two classes)."""
    detail = np.clip(pixels[:, :8, :8].astype(np.float32).std(axis=(1, 2, 3)) / 80, 0.01, 0.99)
    return np.stack([detail, 1 - detail], axis=1).astype(np.float32)


NOISE = np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.uint8)
BEFORE = Occlusion(patch=1 / 7, stride=1 / 14, fill="black", score="probability", smooth=False)
"""The method before this one: black 32 px squares at 224 px, probability drops, block maps."""


@pytest.mark.parametrize(
    "method", [DEFAULT_OCCLUSION, BEFORE, Occlusion(fill="mean")], ids=["blur", "before", "mean"]
)
def test_the_occluded_region_is_what_the_map_shows(method: Occlusion) -> None:
    heat = occlusion_map(_corner_detail, NOISE, target=0, method=method)
    assert heat.shape == (64, 64) and heat[:8, :8].min() > 0
    assert heat[20:].max() == 0 and heat[:, 20:].max() == 0  # squares off the corner change nothing


def test_the_default_costs_197_passes_at_224_px() -> None:
    patch, tops, lefts = DEFAULT_OCCLUSION.squares(224, 224)
    assert patch == 24 and tops[:3] == [0, 16, 32] and tops[-1] == lefts[-1] == 200
    assert DEFAULT_OCCLUSION.passes(224, 224) == 197 and BEFORE.passes(224, 224) == 170


def test_a_saturated_probability_still_gives_a_map() -> None:
    def sure(pixels: np.ndarray) -> np.ndarray:  # p(class 0) rounds to 1 in float32 unless the corner is seen
        other = np.float32(1e-12) * (2 - _corner_detail(pixels)[:, 0])
        return np.stack([1 - other, other], axis=1).astype(np.float32)

    assert occlusion_map(sure, NOISE, target=0, method=BEFORE).max() == 0
    heat = occlusion_map(sure, NOISE, target=0)
    assert heat[:8, :8].min() > 0 and heat[20:].max() == 0


def test_unknown_fill_is_refused() -> None:
    with pytest.raises(ValueError, match="fills: blur, black, mean"):
        Occlusion(fill="grey")


def test_unknown_label_is_refused(tflite_fp32: Path) -> None:
    with pytest.raises(ValueError, match="unknown label 'cat'"):
        Classifier.load(tflite_fp32).explain(np.zeros((32, 32, 3), dtype=np.uint8), "cat")


def test_infer_writes_one_heatmap_per_scan(tflite_int8: Path, sample_test: Path, tmp_path: Path) -> None:
    args = ["--model", str(tflite_int8), "--explain", str(tmp_path / "maps"), str(sample_test)]
    result = CliRunner().invoke(infer_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    pngs = sorted((tmp_path / "maps").glob("*.png"))
    assert len(pngs) == 8 and "heatmaps: 8 written" in result.stderr and "s per scan" in result.stderr
    with Image.open(pngs[0]) as image:
        assert image.size == (64, 32)  # the scan beside its overlay


def test_the_summary_counts_the_heatmaps_time(
    tflite_int8: Path, sample_test: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow(self: Classifier, source: np.ndarray, label: str | None = None) -> np.ndarray:
        time.sleep(0.05)
        return np.zeros(source.shape[:2], dtype=np.float32)

    monkeypatch.setattr(Classifier, "explain", slow)
    args = ["--model", str(tflite_int8), "--jsonl", "--explain", str(tmp_path / "maps"), str(sample_test)]
    result = CliRunner().invoke(infer_command, args, catch_exceptions=False)
    lines = result.stderr.splitlines()
    assert lines[0].startswith("heatmaps: 8 written") and lines[1].startswith("8 scans: 8 predicted")
    assert float(re.search(r" in ([0-9.]+) s with ", lines[1]).group(1)) >= 0.4  # type: ignore[union-attr]
