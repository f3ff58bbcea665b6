"""Dataset audit: planted copies are found, distinct scans are not, problems are named."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from tumorscan.errors import DatasetError
from tumorscan.train.audit import (
    AuditReport,
    audit_dataset,
    load_audit,
    load_clean_subset,
    relative_name,
)
from tumorscan.train.audit_cli import audit_command

ORIGINAL = "glioma_tumor/gg (1).jpg"


@pytest.fixture
def folders(tmp_path: Path, sample_train: Path, sample_test: Path) -> tuple[Path, Path]:
    """Writable copies of the sample (train, test) folders."""
    train, test = tmp_path / "train", tmp_path / "test"
    shutil.copytree(sample_train, train)
    shutil.copytree(sample_test, test)
    for path in [*train.rglob("*"), *test.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return train, test


def _reencoded(path: Path, quality: int, scale: float) -> bytes:
    image = Image.open(path).convert("RGB")
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def test_distinct_scans_are_all_clean(folders: tuple[Path, Path]) -> None:
    train, test = folders
    report = audit_dataset(test, train, progress=False)
    assert report.counts == {"glioma_tumor": 2, "meningioma_tumor": 2, "no_tumor": 2, "pituitary_tumor": 2}
    assert report.reference_counts == {label: 6 for label in report.counts}
    assert report.exact_twins == report.near_twins == report.exact_duplicates == report.near_duplicates == ()
    assert report.unreadable == ()
    assert len(report.clean) == 8
    assert report.clean == tuple(sorted(report.clean))


def test_planted_exact_and_near_twins_are_found(folders: tuple[Path, Path]) -> None:
    train, test = folders
    shutil.copyfile(train / ORIGINAL, test / "glioma_tumor" / "exact copy.jpg")
    (test / "glioma_tumor" / "near copy.jpg").write_bytes(_reencoded(train / ORIGINAL, quality=60, scale=0.8))
    report = audit_dataset(test, train, progress=False)
    assert [tuple(t) for t in report.exact_twins] == [("glioma_tumor/exact copy.jpg", ORIGINAL, 0)]
    assert len(report.near_twins) == 1
    near = report.near_twins[0]
    assert (near.path, near.other) == ("glioma_tumor/near copy.jpg", ORIGINAL)
    assert near.distance <= report.near_threshold  # type: ignore[operator]
    assert "glioma_tumor/exact copy.jpg" not in report.clean
    assert "glioma_tumor/near copy.jpg" not in report.clean
    assert len(report.clean) == 8
    # Inside the test folder, the near copy is a near duplicate of the exact copy (its earlier file).
    assert [(t.path, t.other) for t in report.near_duplicates] == [
        ("glioma_tumor/near copy.jpg", "glioma_tumor/exact copy.jpg")
    ]


def test_exact_only_skips_near_copies(folders: tuple[Path, Path]) -> None:
    train, test = folders
    (test / "glioma_tumor" / "near copy.jpg").write_bytes(_reencoded(train / ORIGINAL, quality=60, scale=0.8))
    report = audit_dataset(test, train, near_threshold=None, progress=False)
    assert report.near_twins == report.near_duplicates == ()
    assert "glioma_tumor/near copy.jpg" in report.clean
    assert "not searched" in report.summary_text()


def test_duplicates_within_a_folder_and_label_conflicts(folders: tuple[Path, Path]) -> None:
    train, _ = folders
    shutil.copyfile(train / ORIGINAL, train / "meningioma_tumor" / "z copy.jpg")
    shutil.copyfile(train / ORIGINAL, train / "glioma_tumor" / "z copy.jpg")
    report = audit_dataset(train, progress=False)
    assert {(t.path, t.other) for t in report.exact_duplicates} == {
        ("glioma_tumor/z copy.jpg", ORIGINAL),
        ("meningioma_tumor/z copy.jpg", ORIGINAL),
    }
    conflicts = report.label_conflicts()
    assert [(scope, twin.path) for scope, twin in conflicts] == [("within", "meningioma_tumor/z copy.jpg")]
    assert "filed under different classes (1)" in report.summary_text()


def test_unreadable_scan_is_counted_and_named(folders: tuple[Path, Path]) -> None:
    train, test = folders
    (test / "no_tumor" / "broken.jpg").write_bytes(b"not a jpeg at all")
    report = audit_dataset(test, train, progress=False)
    assert report.counts["no_tumor"] == 3
    assert [u.path for u in report.unreadable] == ["no_tumor/broken.jpg"]
    assert "broken.jpg" in report.unreadable[0].reason
    assert "no_tumor/broken.jpg" not in report.clean
    assert "no_tumor/broken.jpg" in report.summary_text()


def test_folder_errors(folders: tuple[Path, Path], tmp_path: Path) -> None:
    train, test = folders
    with pytest.raises(DatasetError, match="no such folder"):
        audit_dataset(tmp_path / "missing", progress=False)
    with pytest.raises(DatasetError, match="same folder"):
        audit_dataset(train, train, progress=False)
    (test / "extra_class").mkdir()
    with pytest.raises(DatasetError, match="holds no scans"):
        audit_dataset(test, train, progress=False)


def test_write_and_read_back(folders: tuple[Path, Path], tmp_path: Path) -> None:
    train, test = folders
    shutil.copyfile(train / ORIGINAL, test / "glioma_tumor" / "exact copy.jpg")
    report = audit_dataset(test, train, progress=False)
    written = report.write(tmp_path / "out")
    assert sorted(path.name for path in written) == ["audit.json", "audit.txt", "clean.txt"]
    assert load_audit(tmp_path / "out" / "audit.json") == report
    assert AuditReport.from_json(report.to_json()) == report
    clean = load_clean_subset(tmp_path / "out" / "audit.json")
    assert clean == frozenset((tmp_path / "out" / "clean.txt").read_text(encoding="utf-8").splitlines())
    scan = test / "glioma_tumor" / "image(1).jpg"
    assert relative_name(scan, test) in clean
    assert "exact copy.jpg" in (tmp_path / "out" / "audit.txt").read_text(encoding="utf-8")


def test_clean_subset_needs_a_reference_audit(folders: tuple[Path, Path], tmp_path: Path) -> None:
    _, test = folders
    written = audit_dataset(test, progress=False).write(tmp_path / "alone")
    assert "clean.txt" not in [path.name for path in written]
    with pytest.raises(DatasetError, match="--reference"):
        load_clean_subset(tmp_path / "alone" / "audit.json")
    with pytest.raises(DatasetError, match="tumor-audit"):
        load_clean_subset(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    with pytest.raises(DatasetError, match="not a tumorscan audit"):
        load_clean_subset(tmp_path / "bad.json")


def test_cli_writes_outputs_and_reports_errors(folders: tuple[Path, Path], tmp_path: Path) -> None:
    train, test = folders
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(audit_command, [str(test), "--reference", str(train), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "total" in result.output and "clean" in result.output
    assert (out / "clean.txt").read_text(encoding="utf-8").count("\n") == 8

    missing = runner.invoke(audit_command, [str(tmp_path / "nowhere")])
    assert missing.exit_code == 1
    assert "no such folder" in missing.output and "Traceback" not in missing.output

    bad_threshold = runner.invoke(audit_command, [str(test), "--near-threshold", "300"])
    assert bad_threshold.exit_code == 2
