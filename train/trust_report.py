"""The trust report of an exported model, run through the runtime exactly as deployed.

On a labelled folder (the test split) and, with an audit, its clean subset: accuracy against the share of
scans answered (risk-coverage curve), the table at the model's threshold, ECE of the calibrated
probabilities, and what the model does with the non-MRI images of `tumorscan.train.nonscans`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.classifier import Classifier, Prediction
from tumorscan.errors import DatasetError
from tumorscan.files import atomic_write_text
from tumorscan.folders import scan_dataset
from tumorscan.train.calibrate import (
    ECE_BINS,
    coverage_table,
    expected_calibration_error,
    negative_log_likelihood,
)
from tumorscan.train.nonscans import non_mri_images
from tumorscan.trust import OUT_OF_DISTRIBUTION, apply_temperature


@dataclass(frozen=True)
class Outcome:
    """Calibrated probabilities, true class ids and abstentions of some scans."""

    probabilities: NDArray[np.float32]
    truth: NDArray[np.int64]
    abstain: NDArray[np.bool_]
    flagged: NDArray[np.bool_]

    def subset(self, rows: NDArray[np.int64]) -> Outcome:
        """The outcome of some rows only."""
        return Outcome(self.probabilities[rows], self.truth[rows], self.abstain[rows], self.flagged[rows])

    def table(self) -> dict[str, Any]:
        """Coverage and accuracy at the model's threshold, ECE, and how many the input checks flagged."""
        row = coverage_table(self.probabilities, self.truth, ~self.abstain)
        row["flagged_out_of_distribution"] = int(self.flagged.sum())
        row["accuracy_confident_half"] = confident_half_accuracy(self)
        row[f"ece_{ECE_BINS}_bins"] = round(expected_calibration_error(self.probabilities, self.truth), 4)
        return row


def calibration_effect(outcome: Outcome, temperature: float) -> dict[str, float]:
    """ECE and NLL without and with the temperature (the outcome's probabilities have it applied)."""
    after = outcome.probabilities.astype(np.float32)
    before = apply_temperature(after, 1 / temperature)
    return {
        "ece_before": round(expected_calibration_error(before, outcome.truth), 4),
        "ece_after": round(expected_calibration_error(after, outcome.truth), 4),
        "nll_before": round(negative_log_likelihood(before, outcome.truth), 4),
        "nll_after": round(negative_log_likelihood(after, outcome.truth), 4),
    }


def calibration_table(
    validation: dict[str, Any] | None, outcomes: dict[str, Outcome], temperature: float
) -> dict[str, dict[str, float]]:
    """ECE and NLL without and with the temperature: validation (as calibrated), then each outcome."""
    keys = ("ece_before", "ece_after", "nll_before", "nll_after")
    table = {"validation": {k: validation[k] for k in keys}} if validation and keys[0] in validation else {}
    table.update({name: calibration_effect(outcome, temperature) for name, outcome in outcomes.items()})
    return table


def _predictions(classifier: Classifier, sources: list[Any]) -> list[Prediction]:
    results = classifier.predict_many(sources)
    failed = [r for r in results if not isinstance(r, Prediction)]
    if failed:
        raise DatasetError(f"{len(failed)} scans could not be classified, first: {failed[0].message}")
    return [r for r in results if isinstance(r, Prediction)]


def _outcome(classifier: Classifier, predictions: list[Prediction], truth: list[int]) -> Outcome:
    return Outcome(
        np.array([[p.probabilities[label] for label in classifier.labels] for p in predictions], np.float32),
        np.array(truth, dtype=np.int64),
        np.array([bool(p.abstain) for p in predictions]),
        np.array([OUT_OF_DISTRIBUTION in p.reasons for p in predictions]),
    )


def risk_coverage(outcome: Outcome) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(coverage, accuracy of the answered) when answering the k most confident scans, k = 1..N."""
    order = np.argsort(-outcome.probabilities.max(axis=1), kind="stable")
    correct = (outcome.probabilities.argmax(axis=1) == outcome.truth)[order]
    answered = np.arange(1, len(order) + 1)
    return answered / len(order), np.cumsum(correct) / answered


def confident_half_accuracy(outcome: Outcome) -> float | None:
    """Accuracy on the more confident half of the scans (a confidence threshold answering half)."""
    if not len(outcome.truth):
        return None
    _, accuracy = risk_coverage(outcome)
    return round(float(accuracy[(len(accuracy) + 1) // 2 - 1]), 4)


def risk_coverage_figure(curves: dict[str, Outcome], threshold: float | None, path: Path) -> None:
    """Accuracy of the answered scans against the share answered, the model's operating point marked."""
    from tumorscan.train.figures import new_figure, save_png

    figure = new_figure(figsize=(5.5, 4.5))
    axes = figure.add_subplot()
    for name, outcome in curves.items():
        coverage, accuracy = risk_coverage(outcome)
        line = axes.plot(coverage, accuracy, label=name)[0]
        point = outcome.table()
        if point["accuracy_answered"] is not None:
            axes.plot(point["coverage"], point["accuracy_answered"], "o", color=line.get_color())
    axes.axhline(0.95, color="grey", linestyle=":", label="95% right")
    axes.axvline(0.5, color="grey", linestyle="--", label="half answered")
    title = "answered by confidence; dots: at the model's threshold"
    axes.set(xlabel="share of scans answered", ylabel="accuracy of the answered", xlim=(0, 1), title=title)
    axes.legend(loc="lower left", fontsize="small")
    if threshold is not None:
        axes.text(0.99, 0.01, f"threshold {threshold:.3f}", ha="right", va="bottom", transform=axes.transAxes)
    save_png(figure, path)


def trust_report(
    model: Path, data: Path, audit: Path | None, out: Path, threshold: float | None = None
) -> dict[str, Any]:
    """Measure an exported model's abstention on `data` (and its clean subset) and on non-MRI images.

    `threshold` overrides the model's. Writes trust_report.json and risk_coverage.png to `out`; returns
    the report.
    """
    from tumorscan.train.audit import load_clean_subset, relative_name

    classifier = Classifier.load(model)
    classifier.abstain_threshold = threshold
    scans = scan_dataset(data, classifier.labels)
    predictions = _predictions(classifier, [scan.path for scan in scans])
    outcome = _outcome(classifier, predictions, [classifier.labels.index(s.label) for s in scans])
    outcomes = {"test": outcome}
    if audit is not None:
        clean = load_clean_subset(audit)
        rows = np.array(
            [i for i, s in enumerate(scans) if relative_name(s.path, data) in clean], dtype=np.int64
        )
        outcomes["test (clean)"] = outcome.subset(rows)
    foreign = non_mri_images()
    answers = _predictions(classifier, list(foreign.values()))
    threshold = classifier.abstain_threshold or (classifier.trust.threshold if classifier.trust else None)
    report = {
        "model": str(model),
        "data": str(data),
        "threshold": threshold,
        "temperature": classifier.trust.temperature if classifier.trust else None,
        "validation": (classifier.spec.trust or {}).get("validation"),
        "tables": {name: item.table() for name, item in outcomes.items()},
        "calibration": calibration_table(
            (classifier.spec.trust or {}).get("validation"),
            outcomes,
            classifier.trust.temperature if classifier.trust else 1.0,
        ),
        "non_mri": {
            "images": len(foreign),
            "flagged_out_of_distribution": sum(OUT_OF_DISTRIBUTION in p.reasons for p in answers),
            "abstained": sum(bool(p.abstain) for p in answers),
            "answered": {
                name: f"{p.label} {p.confidence:.3f}"
                for name, p in zip(foreign, answers, strict=True)
                if not p.abstain
            },
            "not_flagged": [
                name for name, p in zip(foreign, answers, strict=True) if OUT_OF_DISTRIBUTION not in p.reasons
            ],
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "trust_report.json", json.dumps(report, indent=1) + "\n")
    risk_coverage_figure(outcomes, threshold, out / "risk_coverage.png")
    return report


def format_trust_report(report: dict[str, Any]) -> str:
    """The tables and the non-MRI result as text."""
    lines = [f"threshold {report['threshold']}, temperature {report['temperature']}"]
    header = (
        f"{'':14} {'scans':>6} {'answered':>9} {'coverage':>9} {'acc.answered':>13} {'acc.all':>8} "
        f"{'OOD':>4} {'acc.confident_half':>18}"
    )
    lines.append(header)
    for name, row in report["tables"].items():
        answered = "-" if row["accuracy_answered"] is None else f"{row['accuracy_answered']:.3f}"
        lines.append(
            f"{name:14} {row['scans']:>6} {row['answered']:>9} {row['coverage']:>9.3f} {answered:>13} "
            f"{row['accuracy_all']:>8.3f} {row['flagged_out_of_distribution']:>4} "
            f"{row['accuracy_confident_half'] or '-':>18}"
        )
    lines.append(
        f"{'calibration':14} {'ECE without':>12} {'ECE with T':>11} {'NLL without':>12} {'NLL with T':>11}"
    )
    for name, row in report["calibration"].items():
        lines.append(
            f"{name:14} {row['ece_before']:>12.4f} {row['ece_after']:>11.4f} {row['nll_before']:>12.4f} "
            f"{row['nll_after']:>11.4f}"
        )
    worse = [name for name, row in report["calibration"].items() if row["ece_after"] > row["ece_before"]]
    if worse:
        lines.append(
            f"the temperature makes ECE worse on: {', '.join(worse)}; it was fitted on validation scans of "
            "the training source. For scans of another source, recalibrate on them (tumor-adapt)."
        )
    foreign = report["non_mri"]
    lines.append(
        f"non-MRI images: {foreign['flagged_out_of_distribution']} of {foreign['images']} flagged "
        f"out_of_distribution, {foreign['abstained']} abstained; "
        f"not flagged: {', '.join(foreign['not_flagged']) or 'none'}"
    )
    return "\n".join(lines) + "\n"
