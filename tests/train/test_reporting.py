"""Classification reports match sklearn's definitions; figures are written as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tumorscan.train.reporting import (
    classification_report,
    confusion_matrix,
    format_report,
    plot_learning_curves,
    write_reports,
)

LABELS = ("a", "b", "c")
TRUTH = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
PREDICTED = np.array([0, 1, 0, 1, 1, 2, 0, 2, 1])


def test_confusion_matrix_rows_are_truth() -> None:
    assert confusion_matrix(TRUTH, PREDICTED, 3).tolist() == [[2, 1, 0], [0, 2, 0], [1, 1, 2]]


def test_scores_match_sklearn_classification_report() -> None:
    report = classification_report(TRUTH, PREDICTED, LABELS)
    # sklearn.metrics.classification_report(TRUTH, PREDICTED, output_dict=True) on the same arrays:
    assert report["classes"]["a"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1-score": 2 / 3, "support": 3}
    )
    assert report["classes"]["b"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1-score": 2 / 3, "support": 2}
    )
    assert report["classes"]["c"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1-score": 2 / 3, "support": 4}
    )
    assert report["accuracy"] == pytest.approx(6 / 9)
    assert report["macro avg"]["precision"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert report["weighted avg"]["recall"] == pytest.approx((3 * 2 / 3 + 2 * 1.0 + 4 * 0.5) / 9)


def test_absent_class_scores_zero_without_warnings() -> None:
    report = classification_report(np.array([0, 0]), np.array([0, 0]), LABELS)
    assert report["classes"]["b"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}
    assert report["accuracy"] == 1.0


def test_text_layout_follows_sklearn() -> None:
    text = format_report(classification_report(TRUTH, PREDICTED, LABELS))
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    assert lines[2].split() == ["a", "0.67", "0.67", "0.67", "3"]
    assert [line.split() for line in lines if line.strip().startswith("accuracy")] == [
        ["accuracy", "0.67", "9"]
    ]
    assert [line.split()[:2] for line in lines if "avg" in line] == [["macro", "avg"], ["weighted", "avg"]]


def test_write_reports_writes_json_text_and_png(tmp_path: Path) -> None:
    reports = {"validation": classification_report(TRUTH, PREDICTED, LABELS)}
    unreadable = {"train": [{"path": "x/bad.jpg", "reason": "x/bad.jpg: not a readable image"}]}
    write_reports(tmp_path, reports, unreadable)
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "report.txt").read_text(encoding="utf-8")
    assert "unreadable scans skipped: 1" in text and "x/bad.jpg: not a readable image" in text
    assert '"validation"' in (tmp_path / "report.json").read_text(encoding="utf-8")


def test_learning_curves_png(tmp_path: Path) -> None:
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.4, 0.7], "val_accuracy": [0.3, 0.6]}
    plot_learning_curves(history, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000
