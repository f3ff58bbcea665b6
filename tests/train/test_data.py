"""The pixel cache, the split and the tf.data pipeline serve exactly what the runtime decodes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tumorscan.errors import DatasetError
from tumorscan.images import load_pixels
from tumorscan.train import data
from tumorscan.train.data import cache_folder, load_dataset, make_dataset, stratified_split

SIZE = (32, 32)


def test_training_pipeline_and_runtime_give_byte_identical_arrays(sample_train: Path, tmp_path: Path) -> None:
    """The training pipeline and the runtime produce byte-identical arrays for the same file."""
    scans = load_dataset(sample_train, SIZE, tmp_path / "cache", progress=False)
    reloaded = load_dataset(sample_train, SIZE, tmp_path / "cache", progress=False)
    batches = make_dataset(reloaded, np.arange(len(reloaded)), batch_size=5)
    served = np.concatenate([images.numpy() for images, _ in batches])
    labels = np.concatenate([ids.numpy() for _, ids in batches])
    runtime = np.stack([load_pixels(path, SIZE) for path in scans.paths])
    assert reloaded.reused == len(scans) == 24
    assert isinstance(reloaded.pixels, np.memmap)
    assert served.dtype == np.uint8 and served.tobytes() == runtime.tobytes()
    assert np.asarray(scans.pixels).tobytes() == runtime.tobytes()
    assert labels.tolist() == [scans.labels.index(path.parent.name) for path in scans.paths]


def test_class_order_is_sorted_folder_names(sample_train: Path) -> None:
    scans = load_dataset(sample_train, SIZE, progress=False)
    assert scans.labels == ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
    assert scans.counts() == dict.fromkeys(scans.labels, 6)


def test_cache_is_rebuilt_when_files_change_decoding_only_those(scans_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_dataset(scans_copy, SIZE, cache, progress=False)
    first.paths[0].write_bytes(first.paths[-1].read_bytes())
    shutil.copy(first.paths[1], scans_copy / "glioma_tumor" / "added.jpg")
    second = load_dataset(scans_copy, SIZE, cache, progress=False)
    assert (len(second), second.reused) == (25, 23)
    runtime = np.stack([load_pixels(path, SIZE) for path in second.paths])
    assert np.asarray(second.pixels).tobytes() == runtime.tobytes()
    assert second.fingerprint() != first.fingerprint()


def test_an_interrupted_rebuild_leaves_the_index_with_its_own_pixels(
    scans_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = load_dataset(scans_copy, SIZE, cache, progress=False)
    moved = tmp_path / "moved.jpg"
    shutil.move(first.paths[0], moved)

    def crash(path: Path, text: str) -> None:
        raise OSError("interrupted before the index was written")

    with monkeypatch.context() as patch:
        patch.setattr(data, "atomic_write_text", crash)
        with pytest.raises(OSError, match="interrupted"):
            load_dataset(scans_copy, SIZE, cache, progress=False)
    shutil.move(moved, first.paths[0])
    again = load_dataset(scans_copy, SIZE, cache, progress=False)
    assert again.reused == len(first) == 24
    runtime = np.stack([load_pixels(path, SIZE) for path in again.paths])
    assert np.asarray(again.pixels).tobytes() == runtime.tobytes()


def test_unreadable_scans_are_named_skipped_and_counted(scans_copy: Path, tmp_path: Path) -> None:
    (scans_copy / "no_tumor" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (scans_copy / "no_tumor" / "notes.png").write_text("hello", encoding="utf-8")
    scans = load_dataset(scans_copy, SIZE, tmp_path / "cache", progress=False)
    again = load_dataset(scans_copy, SIZE, tmp_path / "cache", progress=False)
    for loaded in (scans, again):
        assert len(loaded) == 24
        assert [path.name for path, _ in loaded.unreadable] == ["corrupt.jpg", "notes.png"]
        assert all(str(path) in reason for path, reason in loaded.unreadable)


def test_dataset_without_any_readable_scan_is_an_error(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="none of its 2 scans could be read"):
        load_dataset(tmp_path, SIZE, progress=False)


def test_cache_folder_depends_on_dataset_and_size(tmp_path: Path) -> None:
    assert cache_folder(tmp_path, Path("a/Training"), SIZE) != cache_folder(
        tmp_path, Path("b/Training"), SIZE
    )
    assert cache_folder(tmp_path, Path("a/Training"), SIZE).name.endswith("32x32")


def test_stratified_split_is_seeded_and_keeps_every_class_on_both_sides() -> None:
    labels = np.repeat(np.arange(4), [40, 20, 10, 2]).astype(np.int32)
    train, validation = stratified_split(labels, 0.15, seed=0)
    assert np.array_equal(np.sort(np.concatenate([train, validation])), np.arange(len(labels)))
    assert np.bincount(labels[validation]).tolist() == [6, 3, 2, 1]
    assert np.array_equal(stratified_split(labels, 0.15, seed=0)[1], validation)
    assert not np.array_equal(stratified_split(labels, 0.15, seed=1)[1], validation)


def test_split_refuses_a_class_with_one_scan() -> None:
    with pytest.raises(DatasetError, match="class b has 1 readable scan"):
        stratified_split(np.array([0, 0, 1], dtype=np.int32), 0.5, seed=0, labels=("a", "b"))


def test_shuffled_pipeline_serves_every_row_once_per_epoch(sample_train: Path) -> None:
    scans = load_dataset(sample_train, SIZE, progress=False)
    rows = np.arange(0, 24, 2)
    dataset = make_dataset(scans, rows, batch_size=5, shuffle_seed=3)
    epochs = [np.concatenate([images.numpy() for images, _ in dataset]) for _ in range(2)]
    expected = {np.asarray(scans.pixels[i]).tobytes() for i in rows}
    assert all({image.tobytes() for image in epoch} == expected for epoch in epochs)
    assert not np.array_equal(epochs[0], epochs[1])
