"""Validation splits: grouped by near copies, seeded, every class on both sides; the recorded split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tumorscan.errors import DatasetError
from tumorscan.spec import InputSpec, ModelSpec
from tumorscan.train.data import load_dataset, stratified_split
from tumorscan.train.run_config import TrainConfig, recorded_split
from tumorscan.train.splits import grouped_split, scan_groups, validation_split


def test_grouped_split_keeps_each_group_on_one_side_and_every_class_on_both() -> None:
    labels = np.repeat(np.arange(4, dtype=np.int32), 30)
    groups = np.arange(len(labels)) // 3  # triples of near copies, one class each
    train, validation = grouped_split(labels, groups, 0.15, seed=0)
    assert not set(groups[train]) & set(groups[validation])
    assert sorted(set(train) | set(validation)) == list(range(len(labels)))
    assert set(labels[train]) == set(labels[validation]) == {0, 1, 2, 3}
    assert 0.08 < len(validation) / len(labels) < 0.25
    assert np.array_equal(grouped_split(labels, groups, 0.15, seed=0)[1], validation)
    assert not np.array_equal(grouped_split(labels, groups, 0.15, seed=1)[1], validation)


def test_grouped_split_refuses_a_class_that_is_one_group() -> None:
    labels = np.array([0] * 20 + [1] * 4, dtype=np.int32)
    groups = np.concatenate([np.arange(20), np.full(4, 99)])
    with pytest.raises(DatasetError, match=r"class b.*--split random"):
        grouped_split(labels, groups, 0.2, seed=0, labels=("a", "b"))


def test_near_copies_share_a_group(scans_copy: Path, tmp_path: Path) -> None:
    original = next((scans_copy / "glioma_tumor").iterdir())
    Image.open(original).convert("RGB").save(scans_copy / "glioma_tumor" / "re-encoded.jpg", quality=70)
    scans = load_dataset(scans_copy, (64, 64), tmp_path / "cache", progress=False)
    groups = scan_groups(scans, progress=False)
    names = scans.relative_paths()
    copy = groups[names.index("glioma_tumor/re-encoded.jpg")]
    assert groups[names.index(f"glioma_tumor/{original.name}")] == copy
    assert (groups == copy).sum() == 2  # the other sample scans are not near copies of it


def test_random_split_is_the_stratified_one(sample_train: Path, tmp_path: Path) -> None:
    scans = load_dataset(sample_train, (64, 64), tmp_path / "cache", progress=False)
    assert np.array_equal(
        validation_split(scans, 0.3, 0, "random")[1], stratified_split(scans.label_ids, 0.3, 0)[1]
    )
    grouped = validation_split(scans, 0.3, 0, "grouped", progress=False)
    assert set(scans.label_ids[grouped[1]]) == set(scans.label_ids)
    with pytest.raises(DatasetError, match="unknown split"):
        validation_split(scans, 0.3, 0, "by-patient")


def test_recorded_split_reads_old_runs_as_random_and_new_files_as_grouped() -> None:
    spec = ModelSpec(labels=("a", "b"), input=InputSpec(32, 32))
    old = spec.with_updates(provenance={"config": {"val_split": 0.2, "seed": 3}})
    assert recorded_split(old) == (0.2, 3, "random")
    exported = spec.with_updates(trust={"fitted_on": {"val_split": 0.2, "seed": 3, "split": "grouped"}})
    assert recorded_split(exported) == (0.2, 3, "grouped")  # an exported file's provenance is the export's
    assert recorded_split(spec) == (TrainConfig.val_split, TrainConfig.seed, "grouped")
