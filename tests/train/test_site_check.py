"""`tumor-trust MODEL --site FOLDER` end to end: calibrate a tiny model, export it, check two sites."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageEnhance, ImageFilter

from tumorscan.export.exporter import ExportOptions, export_model
from tumorscan.export.formats import select_targets
from tumorscan.folders import scan_dataset
from tumorscan.shift import SHIFT_ENTRY
from tumorscan.train.calibrate import SHIFT_REFERENCE_SHARE
from tumorscan.train.calibrate_cli import SHIFTED_EXIT, calibrate_command, trust_command
from tumorscan.train.keras_file import read_keras_spec

VARIANTS = 5


def _variant(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The scan slightly cropped, turned and perhaps mirrored: the same source, another look."""
    width, height = image.size
    margin = rng.uniform(0, 0.08, 4)
    box = (margin[0] * width, margin[1] * height, width * (1 - margin[2]), height * (1 - margin[3]))
    turned = image.crop(tuple(int(v) for v in box)).rotate(float(rng.uniform(-6, 6)))
    return turned.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else turned


def _write_variants(
    sample: Path,
    out: Path,
    seed: int,
    labelled: bool,
    change: Callable[[Image.Image], Image.Image] | None = None,
) -> Path:
    rng = np.random.default_rng(seed)
    for scan in scan_dataset(sample):
        image = Image.open(scan.path).convert("L")
        folder = out / scan.label if labelled else out
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(VARIANTS):
            variant = _variant(image, rng)
            (change(variant) if change else variant).save(folder / f"{scan.path.stem} v{index}.png")
    return out


def _darker_and_blurred(image: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(image.filter(ImageFilter.GaussianBlur(3))).enhance(0.55)


@pytest.fixture(scope="module")
def exported(tiny_keras_model: Path, sample_train: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model calibrated on variants of the sample scans, exported as fp32 TFLite."""
    root = tmp_path_factory.mktemp("site-check")
    source = _write_variants(sample_train, root / "source", seed=0, labelled=True)
    args = [str(tiny_keras_model), "--data", str(source), "--out", str(root / "cal"), "--val-split", "0.5"]
    result = CliRunner().invoke(calibrate_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    options = ExportOptions(targets=select_targets("tflite", "fp32"), out_dir=root / "export")
    report = export_model(root / "cal" / "model.keras", options)
    return Path(report.files[0].path)


def test_calibration_stores_the_reference_of_part_of_validation(
    exported: Path, tmp_path: Path, tiny_keras_model: Path
) -> None:
    spec = read_keras_spec(exported.parent.parent / "cal" / "model.keras")
    assert spec is not None and spec.trust is not None
    reference = spec.trust[SHIFT_ENTRY]
    validation = 4 * 6 * VARIANTS // 2
    assert reference["scans"] == round(validation * SHIFT_REFERENCE_SHARE)
    assert {"confidence", "p(glioma_tumor)", "contrast"} <= set(reference["statistics"])


def _check(model: Path, site: Path, out: Path) -> tuple[int, dict[str, object], str]:
    args = [str(model), "--site", str(site), "--out", str(out)]
    result = CliRunner().invoke(trust_command, args)
    report = (
        json.loads((out / "shift_report.json").read_text()) if (out / "shift_report.json").exists() else {}
    )
    return result.exit_code, report, result.output


def test_new_looks_at_the_same_scans_are_not_shifted(
    exported: Path, sample_train: Path, tmp_path: Path
) -> None:
    site = _write_variants(sample_train, tmp_path / "site", seed=7, labelled=False)
    code, report, output = _check(exported, site, tmp_path / "out")
    assert code == 0, output
    assert report["shifted"] is False and report["p_value"] > 0.05
    assert report["scans"] == 4 * 6 * VARIANTS
    assert (tmp_path / "out" / "shift.png").stat().st_size > 10_000
    assert "shifted: false" in output


def test_darker_blurred_scans_are_shifted(exported: Path, sample_train: Path, tmp_path: Path) -> None:
    site = _write_variants(
        sample_train, tmp_path / "site", seed=7, labelled=False, change=_darker_and_blurred
    )
    (site / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    code, report, output = _check(exported, site, tmp_path / "out")
    assert code == SHIFTED_EXIT, output
    assert report["shifted"] is True and report["p_value"] < 0.01
    assert [item["source"] for item in report["unreadable"]] == [str(site / "broken.jpg")]
    assert "shifted: true" in output and "tumor-adapt" in output


def test_a_site_too_small_for_a_verdict_is_refused(exported: Path, sample_test: Path, tmp_path: Path) -> None:
    code, report, output = _check(exported, sample_test, tmp_path / "out")
    assert code == 1 and not report
    assert "at least 20" in output


def test_data_and_site_are_either_or(exported: Path, sample_test: Path, tmp_path: Path) -> None:
    for extra in ([], ["--data", str(sample_test), "--site", str(sample_test)]):
        result = CliRunner().invoke(trust_command, [str(exported), "--out", str(tmp_path), *extra])
        assert result.exit_code == 2 and "--site" in result.output
