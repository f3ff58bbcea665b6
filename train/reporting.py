"""Classification reports (as sklearn's, computed with numpy), confusion matrices and learning curves."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.files import atomic_write_text
from tumorscan.train.figures import new_figure, save_png

AVERAGES = ("macro avg", "weighted avg")


def confusion_matrix(
    y_true: NDArray[np.integer], y_pred: NDArray[np.integer], num_classes: int
) -> NDArray[np.int64]:
    """Counts of (true class, predicted class): rows are the truth, columns the prediction."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def _ratio(numerator: NDArray[np.float64], denominator: NDArray[np.float64]) -> NDArray[np.float64]:
    """Elementwise division where 0/0 is 0 (sklearn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def classification_report(
    y_true: NDArray[np.integer], y_pred: NDArray[np.integer], labels: Sequence[str]
) -> dict[str, Any]:
    """Per-class precision, recall, f1 and support; accuracy; macro and weighted averages.

    Returns:
        {"classes": {label: {...}}, "accuracy": float, "macro avg": {...}, "weighted avg": {...},
        "support": int, "confusion_matrix": [[...]], "labels": [...]}; a class absent from both the truth
        and the predictions scores 0, as sklearn does with zero_division=0.
    """
    matrix = confusion_matrix(y_true, y_pred, len(labels)).astype(np.float64)
    true_positive = np.diag(matrix)
    support = matrix.sum(axis=1)
    precision = _ratio(true_positive, matrix.sum(axis=0))
    recall = _ratio(true_positive, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    total = float(support.sum())
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1-score": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    weights = support / total if total else np.zeros_like(support)
    return {
        "labels": list(labels),
        "classes": per_class,
        "accuracy": float(true_positive.sum() / total) if total else 0.0,
        "macro avg": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1-score": float(f1.mean()),
            "support": int(total),
        },
        "weighted avg": {
            "precision": float((precision * weights).sum()),
            "recall": float((recall * weights).sum()),
            "f1-score": float((f1 * weights).sum()),
            "support": int(total),
        },
        "support": int(total),
        "confusion_matrix": matrix.astype(np.int64).tolist(),
    }


def model_report(
    model: Any, dataset: Any, truth: NDArray[np.integer], labels: Sequence[str]
) -> dict[str, Any]:
    """`classification_report` of a Keras model's predictions on an unshuffled dataset labelled `truth`."""
    probabilities = model.predict(dataset, verbose=0)
    return classification_report(truth, np.argmax(probabilities, axis=1), labels)


def format_report(report: Mapping[str, Any], digits: int = 2) -> str:
    """The report as text laid out like sklearn's classification_report, followed by the confusion matrix."""
    names = [*report["classes"], *AVERAGES]
    width = max(len(name) for name in [*names, "accuracy"])
    header = f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"

    def row(name: str, scores: Mapping[str, Any]) -> str:
        values = " ".join(f"{scores[key]:>9.{digits}f}" for key in ("precision", "recall", "f1-score"))
        return f"{name:>{width}} {values} {scores['support']:>9}"

    lines = [header, ""]
    lines += [row(name, scores) for name, scores in report["classes"].items()]
    lines.append("")
    lines.append(
        f"{'accuracy':>{width}} {'':>9} {'':>9} {report['accuracy']:>9.{digits}f} {report['support']:>9}"
    )
    lines += [row(name, report[name]) for name in AVERAGES]
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)"]
    labels = list(report["classes"])
    cell = max(5, *(len(str(v)) for r in report["confusion_matrix"] for v in r))
    lines.append(f"{'':>{width}} " + " ".join(f"{i:>{cell}}" for i in range(len(labels))))
    for i, (label, counts) in enumerate(zip(labels, report["confusion_matrix"], strict=True)):
        lines.append(f"{label:>{width}} " + " ".join(f"{v:>{cell}}" for v in counts) + f"   [{i}]")
    return "\n".join(lines) + "\n"


def plot_confusion_matrices(reports: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    """One confusion-matrix panel per named report (e.g. validation, test), saved as a PNG."""
    figure = new_figure(figsize=(7 * len(reports), 5.5), layout="constrained")
    axes = figure.subplots(1, len(reports), squeeze=False)
    for axis, (name, report) in zip(axes[0], reports.items(), strict=True):
        matrix = np.asarray(report["confusion_matrix"])
        labels = list(report["classes"])
        axis.imshow(matrix, cmap="Blues")
        ticks = range(len(labels))
        axis.set_xticks(ticks, labels, rotation=35, ha="right")
        axis.set_yticks(ticks, labels)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(f"{name}: accuracy {report['accuracy']:.3f} (n={report['support']})")
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), value in np.ndenumerate(matrix):
            axis.text(
                j, i, str(value), ha="center", va="center", color="white" if value > threshold else "black"
            )
    save_png(figure, path)


def plot_learning_curves(history: Mapping[str, Sequence[float]], path: Path) -> None:
    """Loss and accuracy per epoch, training and validation, saved as a PNG."""
    figure = new_figure(figsize=(11, 4), layout="constrained")
    axes = figure.subplots(1, 2)
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if key in history:
                axis.plot(epochs, history[key], style, marker="o", markersize=3, label=key)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    save_png(figure, path)


def format_reports(
    reports: Mapping[str, Mapping[str, Any]], unreadable: Mapping[str, Sequence[Mapping[str, str]]]
) -> str:
    """Every named report as text, each headed by its name and data folder, then the skipped scans."""
    sections = []
    for name, report in reports.items():
        source = f" of {report['data']}" if report.get("data") else ""
        sections.append(f"{name}{source}: {report['support']} scans\n\n{format_report(report)}")
    skipped = [item for items in unreadable.values() for item in items]
    lines = [f"unreadable scans skipped: {len(skipped)}"]
    lines += [f"  {item['reason']}" for item in skipped]
    sections.append("\n".join(lines) + "\n")
    return "\n".join(sections)


def write_reports(
    folder: Path,
    reports: Mapping[str, Mapping[str, Any]],
    unreadable: Mapping[str, Sequence[Mapping[str, str]]],
) -> None:
    """Write report.json, report.txt and confusion_matrix.png (one panel per report) into `folder`.

    Args:
        reports: name (validation, test...) -> `classification_report` output, optionally with "data".
        unreadable: dataset name -> [{"path", "reason"}] of the scans that were skipped.
    """
    document = {"reports": reports, "unreadable": unreadable}
    atomic_write_text(folder / "report.json", json.dumps(document, indent=1))
    atomic_write_text(folder / "report.txt", format_reports(reports, unreadable))
    plot_confusion_matrices(reports, folder / "confusion_matrix.png")
