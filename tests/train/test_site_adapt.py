"""`tumor-adapt`: grouped folds, honest site thresholds, the adapted model and its exports, bad sites."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageEnhance, ImageFilter

from tumorscan import Classifier
from tumorscan.export.site_cli import adapt_command
from tumorscan.folders import scan_dataset
from tumorscan.shift import SHIFT_ENTRY
from tumorscan.train.keras_file import file_sha256, read_keras_spec
from tumorscan.train.site_adapt import AdaptRecipe, site_rows, source_rows
from tumorscan.train.site_data import grouped_folds
from tumorscan.train.site_folds import Fold, pool_folds
from tumorscan.train.splits import near_copy_groups

COPIED = 2
"""Training scans copied unchanged into the tiny site."""


def _site_look(image: Image.Image) -> Image.Image:
    """Another scanner's look: zoomed in, turned, blurred and contrasted (no longer a near copy)."""
    width, height = image.size
    zoomed = image.crop((width // 6, height // 6, width - width // 6, height - height // 6)).rotate(12)
    return ImageEnhance.Contrast(zoomed.filter(ImageFilter.GaussianBlur(1.5))).enhance(1.4)


@pytest.fixture(scope="module")
def tiny_site(sample_train: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every sample scan with another look, each with a near copy, and two exact training copies."""
    site = tmp_path_factory.mktemp("site") / "site"
    scans = scan_dataset(sample_train)
    for scan in scans:
        folder = site / scan.label
        folder.mkdir(parents=True, exist_ok=True)
        image = _site_look(Image.open(scan.path).convert("L"))
        image.save(folder / f"{scan.path.stem}.png")
        ImageEnhance.Brightness(image).enhance(1.03).save(folder / f"{scan.path.stem} again.png")
    for scan in scans[:COPIED]:
        shutil.copy(scan.path, site / scan.label / f"copy {scan.path.name}")
    return site


@pytest.fixture(scope="module")
def adapted(
    calibrated: Path, tiny_site: Path, sample_train: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("adapted") / "run"
    args = [str(calibrated), "--site", str(tiny_site), "--data", str(sample_train), "--out", str(out)]
    args += ["--folds", "2", "--epochs", "1", "--source-per-class", "3", "--target-accuracy", "0.5"]
    result = CliRunner().invoke(adapt_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "clean before" in result.output and "clean after" in result.output
    return out


def test_the_report_holds_every_scan_with_near_copies_in_one_fold(adapted: Path, tiny_site: Path) -> None:
    report = json.loads((adapted / "site_report.json").read_text())
    scans = {row["source"]: row for row in report["scans"]}
    assert len(scans) == len(list(tiny_site.glob("*/*")))
    for name, row in scans.items():
        twin = name.replace(".png", " again.png")
        if twin in scans:
            assert scans[twin]["fold"] == row["fold"], name
        assert set(row["after"]) == {"label", "confidence", "abstain"}
    assert report["training_copies"] >= COPIED
    copies = sum(row["training_copy"] for row in report["scans"])
    assert report["pooled"]["clean"]["after"]["scans"] == len(scans) - copies
    assert report["target_precision"] == 0.5 and len(report["fold_fits"]) == 2
    assert report["source_validation"]["before"] is not None
    assert (adapted / "site_report.png").stat().st_size > 10_000


def test_the_adapted_model_records_its_parent_site_and_recipe(adapted: Path, calibrated: Path) -> None:
    spec = read_keras_spec(adapted / "model.keras")
    assert spec is not None and spec.trust is not None
    provenance = spec.provenance
    assert provenance["parent"]["sha256"] == file_sha256(calibrated)
    assert provenance["recipe"]["epochs"] == 1 and provenance["site"]["fingerprint"]
    assert spec.trust["target_accuracy"] == 0.5
    assert "feature_distance" not in spec.trust  # the parent's statistics do not describe the new features
    assert spec.trust[SHIFT_ENTRY]["scans_from"].startswith("site")


def test_the_exports_run_in_the_runtime_with_parity_recorded(adapted: Path, tiny_site: Path) -> None:
    files = sorted(p for p in (adapted / "export").glob("model-*") if p.suffix in {".tflite", ".onnx"})
    assert {f.suffix for f in files} == {".tflite", ".onnx"}
    for path in files:
        classifier = Classifier.load(path)
        assert classifier.spec.parity is not None
        prediction = classifier.predict(next(tiny_site.glob("*/*.png")))
        assert prediction.label in classifier.labels and prediction.abstain is not None


def test_balanced_site_rows_repeat_small_classes() -> None:
    labels = np.array([0] * 6 + [1] * 2, dtype=np.int32)
    rows = site_rows(labels, np.arange(8), AdaptRecipe(site_repeat=2))
    assert np.bincount(labels[rows]).tolist() == [12, 12]
    plain = site_rows(labels, np.arange(8), AdaptRecipe(site_repeat=1, balance=False))
    assert sorted(plain.tolist()) == list(range(8))
    source = source_rows(
        np.array([0] * 50 + [1] * 3, dtype=np.int32), np.arange(53), AdaptRecipe(source_per_class=10)
    )
    assert len(source) == 13


def test_groups_join_near_copies_transitively_and_folds_keep_them_whole() -> None:
    rng = np.random.default_rng(0)
    base = rng.random((12, 256)) < 0.5
    chain = base.copy()
    chain[1] = base[0]
    chain[1, :10] = ~base[0, :10]  # 10 bits from scan 0
    chain[2] = chain[1]
    chain[2, 10:20] = ~chain[1, 10:20]  # 10 bits from scan 1, 20 from scan 0
    groups = near_copy_groups(chain)
    assert groups[0] == groups[1] == groups[2] and len(set(groups.tolist())) == 10
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1] * 2, dtype=np.int32)
    many = np.concatenate([groups, groups + 100])
    folds = grouped_folds(labels, many, 2, seed=0)
    for group in np.unique(many):
        assert len(set(folds[many == group].tolist())) == 1


def test_a_fold_threshold_never_sees_its_own_fold() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 60).astype(np.int32)
    logits = 2.0 * np.eye(3)[truth] + rng.normal(0, 1, (60, 3))
    probabilities = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    folds = [Fold(i, np.arange(i, 60, 3), probabilities[i::3], None, 0.0) for i in range(3)]
    first = pool_folds(folds, np.arange(60) % 3, truth, np.ones(60, dtype=bool), 0.6)
    changed = [replace(folds[0], probabilities=np.roll(folds[0].probabilities, 1, axis=1)), *folds[1:]]
    second = pool_folds(changed, np.arange(60) % 3, truth, np.ones(60, dtype=bool), 0.6)
    assert first.fits[0] == second.fits[0]  # fold 0's fit uses folds 1 and 2 only
    assert first.fits[1] != second.fits[1]


def _adapt(model: Path, site: Path, out: Path, *extra: str) -> tuple[int, str]:
    args = [str(model), "--site", str(site), "--out", str(out), "--epochs", "1", "--no-export", *extra]
    result = CliRunner().invoke(adapt_command, args)
    return result.exit_code, result.output


def _site_of(tiny_site: Path, tmp_path: Path, classes: list[str], per_class: int | None = None) -> Path:
    site = tmp_path / "bad-site"
    for name in classes:
        (site / name).mkdir(parents=True)
        for path in sorted((tiny_site / name).glob("*"))[:per_class]:
            shutil.copy(path, site / name / path.name)
    return site


def test_a_site_with_one_class_is_refused(calibrated: Path, tiny_site: Path, tmp_path: Path) -> None:
    code, output = _adapt(calibrated, _site_of(tiny_site, tmp_path, ["glioma_tumor"]), tmp_path / "out")
    assert code == 1 and "one class only" in output
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_a_site_with_unknown_classes_is_refused(calibrated: Path, tiny_site: Path, tmp_path: Path) -> None:
    site = _site_of(tiny_site, tmp_path, ["glioma_tumor", "no_tumor"])
    (site / "astrocytoma").mkdir()
    code, output = _adapt(calibrated, site, tmp_path / "out")
    assert code == 1 and "['astrocytoma'] are not classes of the model" in output


def test_too_few_scans_per_fold_are_refused(calibrated: Path, tiny_site: Path, tmp_path: Path) -> None:
    site = _site_of(tiny_site, tmp_path, ["glioma_tumor", "no_tumor"], per_class=6)
    code, output = _adapt(calibrated, site, tmp_path / "out", "--folds", "2")
    assert code == 1 and "too few for 2 folds of at least 10" in output
    assert not (tmp_path / "out").exists()


def test_unreadable_site_scans_are_named_and_the_rest_used(
    calibrated: Path, tiny_site: Path, tmp_path: Path
) -> None:
    site = _site_of(tiny_site, tmp_path, ["glioma_tumor", "no_tumor"])
    (site / "no_tumor" / "broken.jpg").write_bytes(b"not a scan")
    code, output = _adapt(calibrated, site, tmp_path / "out", "--folds", "0")
    assert code == 0, output
    assert "skipped" in output and "broken.jpg" in output
    assert (tmp_path / "out" / "model.keras").is_file()


def test_a_model_without_calibration_is_refused(
    tiny_keras_model: Path, tiny_site: Path, tmp_path: Path
) -> None:
    code, output = _adapt(tiny_keras_model, tiny_site, tmp_path / "out")
    assert code == 1 and "tumor-calibrate" in output


def test_an_output_folder_with_files_is_kept(calibrated: Path, tiny_site: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    code, output = _adapt(calibrated, tiny_site, out, "--folds", "2")
    assert code == 1 and "--force" in output
    assert (out / "mine.txt").read_text() == "keep"


def test_an_adapted_model_with_label_smoothing_saves_as_stock_keras(
    tiny_keras_model: Path, sample_train: Path, tmp_path: Path
) -> None:
    from tumorscan.images import load_pixels
    from tumorscan.spec import ModelSpec
    from tumorscan.train.keras_file import load_keras, save_keras
    from tumorscan.train.site_adapt import Pool, fine_tune

    scans = scan_dataset(sample_train)
    pixels = np.stack([load_pixels(s.path, (32, 32)) for s in scans])
    labels = np.array(
        [["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"].index(s.label) for s in scans]
    )
    model = load_keras(tiny_keras_model)
    recipe = AdaptRecipe(epochs=1, freeze="convolutions", mix=0.5)
    adapted = fine_tune(
        model, Pool(pixels, labels.astype(np.int32)), np.arange(len(scans)), None, None, recipe, 0.1
    )
    spec = read_keras_spec(tiny_keras_model)
    assert isinstance(spec, ModelSpec)
    save_keras(adapted, tmp_path / "adapted.keras", spec)
    again = load_keras(tmp_path / "adapted.keras")
    assert np.allclose(
        again(pixels[:2].astype(np.float32)), adapted(pixels[:2].astype(np.float32)), atol=1e-6
    )
