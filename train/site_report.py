"""`site_report.json` and `site_report.png` of `tumor-adapt --folds K`: every held-out scan, pooled metrics.

Metrics are given for the clean held-out scans (no copy in the training folder: what a new site looks
like) and for all of them. "before" is the parent model with its own temperature and threshold; "after"
is each fold's adapted model with the site temperature and threshold fitted without that fold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tumorscan.files import atomic_write_text
from tumorscan.train.site_folds import metrics

if TYPE_CHECKING:
    from tumorscan.train.site import AdaptOptions, Estimate, Inputs

REPORT_FILE, FIGURE_FILE = "site_report.json", "site_report.png"


def _scan_rows(inputs: Inputs, estimate: Estimate) -> list[dict[str, Any]]:
    labels, names, before = inputs.spec.labels, inputs.site.relative_paths(), estimate.before
    after, answered = estimate.pooled.after, estimate.pooled.answered
    return [
        {
            "source": names[i],
            "fold": int(estimate.fold_of[i]),
            "label": labels[inputs.truth[i]],
            "training_copy": bool(inputs.twin[i]),
            "before": {
                "label": labels[int(before[i].argmax())],
                "confidence": round(float(before[i].max()), 4),
            },
            "after": {
                "label": labels[int(after[i].argmax())],
                "confidence": round(float(after[i].max()), 4),
                "abstain": not bool(answered[i]),
            },
        }
        for i in range(len(names))
    ]


def pooled_metrics(inputs: Inputs, estimate: Estimate) -> dict[str, Any]:
    """Before and after, on the clean held-out scans and on all of them."""
    labels = inputs.spec.labels
    before, before_answered, pooled = estimate.before, estimate.before_answered, estimate.pooled
    result = {}
    for name, rows in (("clean", inputs.clean), ("all", np.ones(len(inputs.truth), dtype=bool))):
        if rows.any():
            result[name] = {
                "before": metrics(before[rows], inputs.truth[rows], before_answered[rows], labels),
                "after": metrics(pooled.after[rows], inputs.truth[rows], pooled.answered[rows], labels),
            }
    return result


def site_report(options: AdaptOptions, inputs: Inputs, estimate: Estimate) -> dict[str, Any]:
    """The report's JSON document."""
    validation_after = [f.validation_accuracy for f in estimate.folds if f.validation_accuracy is not None]
    return {
        "model": str(options.model),
        "site": str(options.site),
        "folds": len(estimate.folds),
        "grouping": "near copies (perceptual hash within the audit's threshold) stay in one fold",
        "recipe": options.recipe.to_json(),
        "target_precision": options.target_accuracy,
        "fold_fits": [
            {"fold": i, "temperature": fit.temperature, "threshold": round(fit.threshold, 6)}
            for i, fit in enumerate(estimate.pooled.fits)
        ],
        "training_copies": int(inputs.twin.sum()),
        "unreadable": [{"source": str(path), "reason": reason} for path, reason in inputs.site.unreadable],
        "pooled": pooled_metrics(inputs, estimate),
        "source_validation": None
        if estimate.validation_before is None
        else {
            "before": round(estimate.validation_before, 4),
            "after_per_fold": [round(v, 4) for v in validation_after],
            "largest_drop": round(estimate.validation_before - min(validation_after), 4),
        },
        "seconds_per_fold": [round(f.seconds, 1) for f in estimate.folds],
        "scans": _scan_rows(inputs, estimate),
    }


def write_site_report(report: dict[str, Any], inputs: Inputs, estimate: Estimate, out: Path) -> list[Path]:
    """site_report.json and site_report.png in `out`."""
    atomic_write_text(out / REPORT_FILE, json.dumps(report, indent=1) + "\n")
    _figure(inputs, estimate, report["target_precision"], out / FIGURE_FILE)
    return [out / REPORT_FILE, out / FIGURE_FILE]


def _figure(inputs: Inputs, estimate: Estimate, target: float, path: Path) -> None:
    """Confusion matrices before and after (clean held-out scans); risk-coverage curves before and after."""
    from tumorscan.train.figures import new_figure, save_png
    from tumorscan.train.reporting import classification_report
    from tumorscan.train.trust_report import Outcome, risk_coverage

    labels, rows, truth = inputs.spec.labels, inputs.clean, inputs.truth[inputs.clean]
    before = estimate.before
    figure = new_figure(figsize=(17, 5), layout="constrained")
    axes = figure.subplots(1, 3)
    curves = {"before": before[rows], "after": estimate.pooled.after[rows]}
    for axis, (name, probs) in zip(axes[:2], curves.items(), strict=True):
        report = classification_report(truth, probs.argmax(axis=1), labels)
        axis.imshow(np.asarray(report["confusion_matrix"]), cmap="Blues")
        for (i, j), value in np.ndenumerate(np.asarray(report["confusion_matrix"])):
            axis.text(j, i, str(value), ha="center", va="center")
        short = [label.replace("_tumor", "") for label in labels]
        axis.set_xticks(range(len(labels)), short)
        axis.set_yticks(range(len(labels)), short)
        title = f"{name}: accuracy {report['accuracy']:.3f} (n={len(truth)})"
        axis.set(xlabel="predicted", ylabel="true", title=title)
    for name, probs in curves.items():
        empty = np.zeros(len(truth), dtype=bool)
        coverage, accuracy = risk_coverage(Outcome(probs, truth.astype(np.int64), empty, empty))
        axes[2].plot(coverage, accuracy, label=name)
    axes[2].axhline(target, color="grey", linestyle=":", label="target precision")
    axes[2].set(
        xlabel="share answered, most confident first", ylabel="accuracy of the answered", ylim=(0, 1.02)
    )
    axes[2].legend(loc="lower left")
    figure.suptitle("Held-out site scans without a training copy, pooled over grouped folds")
    save_png(figure, path)
