"""`tumor-trust MODEL --site FOLDER`: the shift check of a new site's unlabelled scans, with its report files.

The statistics and tests are `tumorscan.shift` (no TensorFlow); this module runs them on a folder through the
exported file, writes `shift_report.json` and, when matplotlib is installed, `shift.png`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tumorscan.classifier import Classifier
from tumorscan.files import atomic_write_text
from tumorscan.shift import (
    CONFIDENCE,
    DISTANCE,
    ShiftReport,
    compare,
    observe_folder,
    reference_of,
    site_sources,
)

REPORT_FILE, FIGURE_FILE = "shift_report.json", "shift.png"
PANELS = 4
"""Continuous statistics drawn: confidence, the distance ratio, then the most shifted others."""


def check_site(model: Path, folder: Path, out: Path) -> tuple[ShiftReport, dict[str, Any], list[Path]]:
    """Check `folder` against `model`'s shift reference; returns the report, its JSON and the files written.

    Raises:
        SiteError: the folder is missing, empty or has fewer readable scans than a verdict needs.
        MetadataError: the model carries no shift reference.
    """
    classifier = Classifier.load(model)
    reference = reference_of(classifier.spec.trust, classifier.labels, str(model))
    site_scans = observe_folder(classifier, site_sources(folder))
    report = compare(reference, site_scans.observations, classifier.labels)
    document = {
        "model": str(model),
        "model_sha256": classifier.identity.sha256,
        "site": str(folder),
        **report.to_dict(),
        "unreadable": [{"source": s, "code": c, "message": m} for s, c, m in site_scans.errors],
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / REPORT_FILE, json.dumps(document, indent=1) + "\n")
    written = [out / REPORT_FILE]
    if _draw(report, out / FIGURE_FILE):
        written.append(out / FIGURE_FILE)
    return report, document, written


def _panels(report: ShiftReport) -> list[str]:
    """The continuous statistics to draw, most telling first."""
    chosen = [name for name in (CONFIDENCE, DISTANCE) if name in report.site.statistics]
    ranked = sorted(
        (t for t in report.tests if t.name in report.site.statistics and t.name not in chosen),
        key=lambda t: t.corrected,
    )
    return (chosen + [t.name for t in ranked])[:PANELS]


def _draw(report: ShiftReport, path: Path) -> bool:
    """Distributions, site against reference, and predicted-class shares; False without matplotlib."""
    try:
        from tumorscan.train.figures import new_figure, save_png

        figure = new_figure(figsize=(4 * (PANELS + 1), 4), layout="constrained")
    except ImportError:
        return False
    corrected = {t.name: t.corrected for t in report.tests}
    for index, name in enumerate(_panels(report)):
        axes = figure.add_subplot(1, PANELS + 1, index + 1)
        for label, observations in (("reference", report.reference), ("site", report.site)):
            values = np.sort(observations.statistics[name])
            axes.step(values, np.arange(1, len(values) + 1) / len(values), where="post", label=label)
        axes.set(title=f"{name}\ncorrected p = {corrected[name]:.3g}", ylabel="share of scans at or below")
        axes.legend(loc="lower right", fontsize="small")
    axes = figure.add_subplot(1, PANELS + 1, PANELS + 1)
    positions = np.arange(len(report.labels))
    for offset, (label, observations) in zip(
        (-0.2, 0.2), (("reference", report.reference), ("site", report.site)), strict=True
    ):
        shares = report.class_shares(observations)
        axes.bar(positions + offset, [shares[name] for name in report.labels], width=0.4, label=label)
    axes.set_xticks(positions, [name.replace("_tumor", "") for name in report.labels], rotation=30)
    axes.set(title=f"predicted classes\ncorrected p = {corrected.get('predicted classes', 1.0):.3g}")
    axes.legend(fontsize="small")
    verdict = "SHIFTED" if report.shifted else "no shift detected"
    figure.suptitle(
        f"{verdict}: {report.scans} site scans against {report.reference_scans} reference scans "
        f"(flagged out of distribution {report.site.flagged.mean():.0%} vs "
        f"{report.reference.flagged.mean():.0%})"
    )
    save_png(figure, path)
    return True


def format_site_report(report: ShiftReport) -> str:
    """The verdict and the tests as text."""
    lines = [
        f"shifted: {str(report.shifted).lower()} (smallest corrected p = {report.p_value:.3g}, "
        f"alpha {report.alpha}); {report.scans} site scans against {report.reference_scans} reference scans",
        f"{'statistic':28} {'test':20} {'value':>8} {'p':>10} {'corrected':>10}",
    ]
    for test in sorted(report.tests, key=lambda t: t.corrected):
        lines.append(
            f"{test.name:28} {test.test:20} {test.statistic:>8.3f} {test.p_value:>10.3g} "
            f"{test.corrected:>10.3g}"
        )
    lines.append(report.advice())
    return "\n".join(lines) + "\n"
