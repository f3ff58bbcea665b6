"""Calibration selection: deterministic, stratified, hashed, robust to unreadable scans."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tumorscan.calibration import CalibrationWarning, select_calibration, stratified_quotas
from tumorscan.errors import DatasetError

pytestmark = pytest.mark.filterwarnings("ignore::tumorscan.calibration.selection.CalibrationWarning")

SIZE = (32, 32)


@pytest.fixture
def dataset(tmp_path: Path, sample_train: Path) -> Path:
    """A writable copy of the sample training folder (6 scans per class)."""
    root = tmp_path / "train"
    shutil.copytree(sample_train, root)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def test_same_seed_same_selection_other_seed_other_selection(sample_train: Path) -> None:
    first = select_calibration(sample_train, SIZE, count=8, seed=0, progress=False)
    again = select_calibration(sample_train, SIZE, count=8, seed=0, progress=False)
    other = select_calibration(sample_train, SIZE, count=8, seed=1, progress=False)
    assert first.entries == again.entries
    assert first.manifest_sha256 == again.manifest_sha256
    assert first.entries != other.entries
    assert first.manifest_sha256 != other.manifest_sha256
    assert [e.path for e in first.entries] == sorted(e.path for e in first.entries)


def test_selection_is_stratified(sample_train: Path) -> None:
    chosen = select_calibration(sample_train, SIZE, count=8, progress=False)
    assert chosen.label_counts() == {
        "glioma_tumor": 2,
        "meningioma_tumor": 2,
        "no_tumor": 2,
        "pituitary_tumor": 2,
    }
    assert all(entry.path.startswith(entry.label + "/") for entry in chosen.entries)


@pytest.mark.parametrize(
    ("sizes", "count", "expected"),
    [
        ({"a": 10, "b": 5, "c": 1}, 8, {"a": 5, "b": 2, "c": 1}),
        ({"a": 100, "b": 1, "c": 1}, 3, {"a": 1, "b": 1, "c": 1}),
        ({"a": 90, "b": 5, "c": 5}, 10, {"a": 8, "b": 1, "c": 1}),
        ({"a": 3, "b": 3, "c": 3}, 4, {"a": 2, "b": 1, "c": 1}),
        ({"a": 3, "b": 2}, 50, {"a": 3, "b": 2}),
    ],
)
def test_stratified_quotas(sizes: dict[str, int], count: int, expected: dict[str, int]) -> None:
    assert stratified_quotas(sizes, count) == expected


def test_stratified_quotas_always_add_up() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = {
            f"class{i}": int(n) for i, n in enumerate(rng.integers(1, 900, size=int(rng.integers(2, 6))))
        }
        count = int(rng.integers(len(sizes), sum(sizes.values()) + 1))
        quotas = stratified_quotas(sizes, count)
        assert sum(quotas.values()) == count
        assert all(1 <= quotas[label] <= sizes[label] for label in sizes)


def test_manifest_hash_is_stable_and_follows_file_content(dataset: Path, tmp_path: Path) -> None:
    chosen = select_calibration(dataset, SIZE, count=8, progress=False)
    assert (
        select_calibration(dataset, SIZE, count=8, progress=False).manifest_sha256 == chosen.manifest_sha256
    )
    manifest_path = tmp_path / "out" / "calibration.json"
    chosen.write_manifest(manifest_path)
    written = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert written["manifest_sha256"] == chosen.manifest_sha256
    assert written["entries"] == chosen.manifest()["entries"]
    assert chosen.describe().manifest_sha256 == chosen.manifest_sha256

    changed = dataset / chosen.entries[0].path
    changed.write_bytes(changed.read_bytes() + b"\0")
    after = select_calibration(dataset, SIZE, count=8, progress=False)
    assert [e.path for e in after.entries] == [e.path for e in chosen.entries]
    assert after.entries[0].sha256 != chosen.entries[0].sha256
    assert after.manifest_sha256 != chosen.manifest_sha256


def test_manifest_is_portable(dataset: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(dataset, moved)
    here = select_calibration(dataset, SIZE, count=8, progress=False)
    there = select_calibration(moved, SIZE, count=8, progress=False)
    assert here.manifest_sha256 == there.manifest_sha256
    assert there.paths[0].is_absolute() and there.paths[0].is_file()
    assert str(moved) in str(there.paths[0])


def test_unreadable_scans_are_skipped_named_and_replaced(dataset: Path) -> None:
    glioma = sorted((dataset / "glioma_tumor").iterdir())
    broken, good = glioma[:4], glioma[4:]
    for path in broken:
        path.write_bytes(b"not an image")
    chosen = select_calibration(dataset, SIZE, count=8, progress=False)
    assert {e.path for e in chosen.entries if e.label == "glioma_tumor"} == {
        f"glioma_tumor/{p.name}" for p in good
    }
    assert {name for name, _ in chosen.skipped} <= {f"glioma_tumor/{p.name}" for p in broken}
    assert all(name.split("/")[1] in reason for name, reason in chosen.skipped)


def test_class_short_of_readable_scans_warns(dataset: Path) -> None:
    broken = dataset / "no_tumor" / "1.jpg"
    broken.write_bytes(b"not an image")
    with pytest.warns(CalibrationWarning) as caught:
        chosen = select_calibration(dataset, SIZE, count=24, progress=False)
    assert chosen.skipped == (("no_tumor/1.jpg", chosen.skipped[0][1]),)
    assert "1.jpg" in chosen.skipped[0][1]
    messages = [str(w.message) for w in caught]
    assert any("only 5 of 6" in m for m in messages)
    assert any("recommended" in m for m in messages)
    assert set(messages) == set(chosen.warnings)
    assert len(chosen) == 23


def test_small_sets_warn_and_large_requests_use_everything(sample_train: Path) -> None:
    with pytest.warns(CalibrationWarning, match="has only 24"):
        chosen = select_calibration(sample_train, SIZE, count=300, progress=False)
    assert len(chosen) == 24
    assert any(f"at least {100} recommended" in note for note in chosen.warnings)


def test_exclude_keeps_scans_out(sample_train: Path) -> None:
    keep_out = sorted((sample_train / "glioma_tumor").iterdir())[:5]
    chosen = select_calibration(sample_train, SIZE, count=24, exclude=keep_out, progress=False)
    assert chosen.label_counts()["glioma_tumor"] == 1
    assert not {p.resolve() for p in keep_out} & set(chosen.paths)


def test_folder_errors(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder"):
        select_calibration(tmp_path / "missing", SIZE, progress=False)
    everything = list(dataset.rglob("*.jpg"))
    with pytest.raises(DatasetError, match="every scan is excluded"):
        select_calibration(dataset, SIZE, exclude=everything, progress=False)
    for path in dataset.rglob("*.jpg"):
        path.write_bytes(b"junk")
    with pytest.raises(DatasetError, match="could be decoded"):
        select_calibration(dataset, SIZE, progress=False)
    for path in dataset.rglob("*.jpg"):
        path.unlink()
    with pytest.raises(DatasetError, match="holds no scans"):
        select_calibration(dataset, SIZE, progress=False)


def test_a_flat_folder_calibrates(dataset: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in dataset.rglob("*.jpg"):
        shutil.copyfile(path, flat / f"{path.parent.name}-{path.name}")
    (flat / ".thumbnails").mkdir()
    shutil.copyfile(next(dataset.rglob("*.jpg")), flat / ".thumbnails" / "hidden.jpg")
    chosen = select_calibration(flat, SIZE, count=100, progress=False)
    assert chosen.label_counts() == {".": 24}
    assert all("/" not in entry.path for entry in chosen.entries)


def test_folder_names_need_not_match_any_labels(dataset: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "renamed"
    for number, folder in enumerate(sorted(dataset.iterdir())):
        shutil.copytree(folder, renamed / f"group {number}")
    chosen = select_calibration(renamed, SIZE, count=8, progress=False)
    assert chosen.label_counts() == {f"group {n}": 2 for n in range(4)}


def test_linked_class_folders_are_followed(dataset: Path, tmp_path: Path) -> None:
    linked = tmp_path / "linked"
    linked.mkdir()
    for name, folder in zip("abcd", sorted(dataset.iterdir()), strict=True):
        (linked / name).symlink_to(folder, target_is_directory=True)
    chosen = select_calibration(linked, SIZE, count=8, progress=False)
    assert chosen.label_counts() == dict.fromkeys("abcd", 2)


def test_nested_folders_are_stratified_by_their_top_folder(dataset: Path, tmp_path: Path) -> None:
    nested = tmp_path / "nested"
    for folder in sorted(dataset.iterdir()):
        for index, path in enumerate(sorted(folder.iterdir())):
            target = nested / folder.name / f"patient {index % 2}" / "series" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    (nested / "loose.jpg").write_bytes((dataset / "glioma_tumor" / "gg (1).jpg").read_bytes() + b"\0")
    chosen = select_calibration(nested, SIZE, count=9, progress=False)
    assert chosen.label_counts() == {".": 1, **{folder.name: 2 for folder in dataset.iterdir()}}
    assert any(entry.path.count("/") == 3 for entry in chosen.entries)


def test_more_folders_than_scans_wanted_samples_them_all_as_one_group(dataset: Path) -> None:
    chosen = select_calibration(dataset, SIZE, count=3, progress=False)
    assert chosen.label_counts() == {".": 3}


@pytest.mark.parametrize("splits", [("Testing", "Training"), ("test", "train", "val"), ("TRAIN", "Valid")])
def test_a_folder_of_dataset_splits_is_refused(
    tmp_path: Path, sample_train: Path, splits: tuple[str, ...]
) -> None:
    for split in splits:
        shutil.copytree(sample_train, tmp_path / "root" / split)
    with pytest.raises(DatasetError, match="sub-folders are dataset splits") as caught:
        select_calibration(tmp_path / "root", SIZE, progress=False)
    assert all(str(tmp_path / "root" / split) in str(caught.value) for split in splits)


def test_pixels_come_from_the_shared_preprocessing(sample_train: Path) -> None:
    from tumorscan.images import load_pixels

    chosen = select_calibration(sample_train, SIZE, count=4, progress=False)
    arrays = list(chosen.iter_pixels())
    assert len(arrays) == 4
    for array, path in zip(arrays, chosen.paths, strict=True):
        assert array.shape == (32, 32, 3) and array.dtype == np.uint8
        np.testing.assert_array_equal(array, load_pixels(path, SIZE))
    with pytest.raises(ValueError):
        arrays[0][0, 0, 0] = 1


def test_byte_identical_scans_are_chosen_once(dataset: Path) -> None:
    original = dataset / "glioma_tumor" / "gg (1).jpg"
    shutil.copyfile(original, dataset / "meningioma_tumor" / "copy.jpg")
    chosen = select_calibration(dataset, SIZE, count=25, progress=False)
    assert len({entry.sha256 for entry in chosen.entries}) == len(chosen) == 24
    assert chosen.skipped == (
        ("meningioma_tumor/copy.jpg", "same bytes as glioma_tumor/gg (1).jpg, already chosen."),
    )
