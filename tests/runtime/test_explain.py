"""Occlusion heatmaps on exported files: not flat on uint8 outputs, one PNG per scan from tumor-infer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tumorscan import Classifier
from tumorscan.cli import infer_command
from tumorscan.explain import occlusion_map


@pytest.mark.parametrize("fixture", ["tflite_int8", "onnx_model"])
def test_maps_are_not_flat(fixture: str, sample_test: Path, request: pytest.FixtureRequest) -> None:
    classifier = Classifier.load(request.getfixturevalue(fixture))
    scan = sample_test / "pituitary_tumor" / "image(1).jpg"
    heat = classifier.explain(scan)
    assert heat.shape == classifier.spec.input.size and heat.dtype == np.float32
    assert len(np.unique(np.round(heat, 6))) > 20 and float(heat.std()) > 1e-3


def test_the_occluded_region_is_what_the_map_shows() -> None:
    def scores(pixels: np.ndarray) -> np.ndarray:  # a "model" that only looks at the top-left corner
        corner = pixels[:, :8, :8].mean(axis=(1, 2, 3)) / 255
        return np.stack([corner, 1 - corner], axis=1).astype(np.float32)

    heat = occlusion_map(scores, np.full((64, 64, 3), 200, dtype=np.uint8), target=0)
    assert heat[:8, :8].min() > 0 and heat[32:, 32:].max() == 0


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
