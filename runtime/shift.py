"""Does a new site's scans differ from the scans the model was calibrated on? Black-box shift detection.

At calibration time the model's spec stores what the model saw on part of its validation scans (the
reference): each calibrated class probability, the confidence, the feature-distance ratio, the input
statistics of `tumorscan.trust`, the predicted classes and the share flagged out of distribution. On an
unlabelled folder of a new site the same observations are made through the exported file, and each one
is compared with the reference by a two-sample test (Rabanser et al. 2019, "Failing Loudly": a
Kolmogorov-Smirnov test per continuous statistic; Lipton et al. 2018: the predicted-class frequencies,
here a chi-square test of homogeneity; the flagged share, Fisher's exact test). The p-values are
Bonferroni-corrected; the folder is reported shifted when the smallest corrected p-value is below
`ALPHA`. Nothing here needs TensorFlow or the training data; it needs scipy (the `[site]` extra).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .errors import MetadataError, MissingDependencyError, SiteError, TumorscanError
from .trust import Trust, input_statistics

if TYPE_CHECKING:
    from .classifier import Classifier

SHIFT_ENTRY = "shift_reference"
"""Key of the reference observations inside the spec's trust entry."""
ALPHA = 0.05
"""Family-wise level of the Bonferroni-corrected tests: shifted when the smallest corrected p is below it."""
MIN_SITE_SCANS = 20
"""Fewest readable scans a site folder needs for a verdict."""
DECIMALS = 4
CONFIDENCE, DISTANCE = "confidence", "distance_ratio"


def probability_name(label: str) -> str:
    """Name of the statistic holding one class's calibrated probability."""
    return f"p({label})"


@dataclass(frozen=True)
class Observations:
    """What a model saw on some scans: continuous statistics, predicted classes and flagged scans."""

    statistics: Mapping[str, NDArray[np.float64]]
    predicted: NDArray[np.int64]
    flagged: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.predicted)

    def take(self, rows: NDArray[np.int64]) -> Observations:
        """The observations of some scans only."""
        return Observations(
            {name: values[rows] for name, values in self.statistics.items()},
            self.predicted[rows],
            self.flagged[rows],
        )

    def to_entry(self, **notes: Any) -> dict[str, Any]:
        """The spec entry: every value rounded to `DECIMALS`, plus free notes (how the scans were chosen)."""
        return {
            "scans": len(self),
            "statistics": {
                name: [round(float(v), DECIMALS) for v in values] for name, values in self.statistics.items()
            },
            "predicted": [int(v) for v in self.predicted],
            "flagged": [bool(v) for v in self.flagged],
            **notes,
        }

    @classmethod
    def from_entry(cls, entry: Any, labels: Sequence[str], source: str) -> Observations:
        """Read a spec entry back.

        Raises:
            MetadataError: the entry is malformed (the message names `source`).
        """
        try:
            statistics = {str(k): np.asarray(v, dtype=np.float64) for k, v in entry["statistics"].items()}
            predicted = np.asarray(entry["predicted"], dtype=np.int64)
            flagged = np.asarray(entry["flagged"], dtype=bool)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MetadataError(
                f"{source}: the shift reference of its metadata is malformed ({exc})."
            ) from exc
        count = len(predicted)
        lengths_ok = all(v.ndim == 1 and len(v) == count for v in statistics.values())
        if not count or not lengths_ok or len(flagged) != count or predicted.min() < 0:
            raise MetadataError(f"{source}: the shift reference of its metadata has inconsistent lengths.")
        if predicted.max() >= len(labels):
            raise MetadataError(f"{source}: the shift reference names a class the model does not have.")
        return cls(statistics, predicted, flagged)


def observe(
    labels: Sequence[str],
    probabilities: NDArray[np.floating],
    pixels: NDArray[np.uint8],
    distance_ratio: NDArray[np.floating] | None,
    flagged: NDArray[np.bool_],
) -> Observations:
    """Observations of a batch: calibrated probabilities, the input pixels, distance ratios, flagged scans."""
    statistics: dict[str, NDArray[np.float64]] = {
        probability_name(label): probabilities[:, i].astype(np.float64) for i, label in enumerate(labels)
    }
    statistics[CONFIDENCE] = probabilities.max(axis=1).astype(np.float64)
    if distance_ratio is not None:
        statistics[DISTANCE] = np.asarray(distance_ratio, dtype=np.float64).reshape(-1)
    for name, values in input_statistics(pixels).items():
        statistics[name] = values.astype(np.float64)
    return Observations(statistics, probabilities.argmax(axis=1).astype(np.int64), np.asarray(flagged, bool))


def concatenate(parts: Sequence[Observations]) -> Observations:
    """One set of observations from several batches."""
    names = parts[0].statistics.keys()
    return Observations(
        {name: np.concatenate([p.statistics[name] for p in parts]) for name in names},
        np.concatenate([p.predicted for p in parts]),
        np.concatenate([p.flagged for p in parts]),
    )


@dataclass(frozen=True)
class StatisticTest:
    """One two-sample test: its statistic, raw and Bonferroni-corrected p-values."""

    name: str
    test: str
    statistic: float
    p_value: float
    corrected: float


@dataclass(frozen=True)
class ShiftReport:
    """The verdict on a site folder against the model's reference scans."""

    scans: int
    reference_scans: int
    tests: tuple[StatisticTest, ...]
    alpha: float
    labels: tuple[str, ...]
    site: Observations = field(repr=False)
    reference: Observations = field(repr=False)

    @property
    def p_value(self) -> float:
        """The smallest corrected p-value (the family's)."""
        return min(t.corrected for t in self.tests)

    @property
    def shifted(self) -> bool:
        return self.p_value < self.alpha

    def class_shares(self, observations: Observations) -> dict[str, float]:
        counts = np.bincount(observations.predicted, minlength=len(self.labels))
        return {
            label: round(float(c) / len(observations), 4)
            for label, c in zip(self.labels, counts, strict=True)
        }

    def advice(self) -> str:
        """What to do next, in one sentence."""
        if self.shifted:
            strongest = min(self.tests, key=lambda t: t.corrected).name
            return (
                f"These scans differ from the model's validation scans (most in {strongest}): its confidence "
                "and abstention threshold were chosen on other scans and may not hold here. Label a few "
                "hundred of this site's scans and measure what adaptation buys with "
                "`tumor-adapt MODEL.keras --site LABELLED --folds 5` before trusting its answers."
            )
        return (
            f"No shift detected at this sample size ({self.scans} scans); this does not prove there is none. "
            "Check again as scans accumulate, and measure accuracy on labelled scans of this site."
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON report."""
        return {
            "shifted": self.shifted,
            "p_value": round(self.p_value, 6),
            "alpha": self.alpha,
            "correction": f"Bonferroni over {len(self.tests)} tests",
            "scans": self.scans,
            "reference_scans": self.reference_scans,
            "flagged_out_of_distribution": {
                "site": round(float(self.site.flagged.mean()), 4),
                "reference": round(float(self.reference.flagged.mean()), 4),
            },
            "predicted_classes": {
                "site": self.class_shares(self.site),
                "reference": self.class_shares(self.reference),
            },
            "medians": {
                name: {
                    "site": round(float(np.median(self.site.statistics[name])), 4),
                    "reference": round(float(np.median(self.reference.statistics[name])), 4),
                }
                for name in self.site.statistics
                if name in self.reference.statistics
            },
            "tests": [
                {
                    "statistic": t.name,
                    "test": t.test,
                    "value": round(t.statistic, 4),
                    "p_value": round(t.p_value, 6),
                    "corrected": round(t.corrected, 6),
                }
                for t in self.tests
            ],
            "advice": self.advice(),
        }


def _scipy_stats() -> Any:
    try:
        from scipy import stats
    except ImportError as exc:
        raise MissingDependencyError("scipy", "site", "The shift check") from exc
    return stats


def _raw_tests(
    reference: Observations, site: Observations, classes: int
) -> list[tuple[str, str, float, float]]:
    """(name, test, statistic, p) of every test, before the correction."""
    stats = _scipy_stats()
    found = []
    for name, values in site.statistics.items():
        if name in reference.statistics:
            result = stats.ks_2samp(reference.statistics[name], values)
            found.append((name, "Kolmogorov-Smirnov", float(result.statistic), float(result.pvalue)))
    table = np.stack([np.bincount(o.predicted, minlength=classes) for o in (reference, site)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] > 1:
        chi2 = stats.chi2_contingency(table)
        found.append(("predicted classes", "chi-square", float(chi2.statistic), float(chi2.pvalue)))
    flags = [[int(o.flagged.sum()), int((~o.flagged).sum())] for o in (reference, site)]
    fisher = stats.fisher_exact(flags)
    found.append(
        ("flagged out of distribution", "Fisher exact", float(fisher.statistic), float(fisher.pvalue))
    )
    return found


def compare(
    reference: Observations, site: Observations, labels: Sequence[str], alpha: float = ALPHA
) -> ShiftReport:
    """Test every observation of `site` against `reference`, Bonferroni-corrected.

    Raises:
        SiteError: fewer than `MIN_SITE_SCANS` site scans.
        MissingDependencyError: scipy is not installed.
    """
    if len(site) < MIN_SITE_SCANS:
        raise SiteError(
            f"only {len(site)} readable scans; the shift check needs at least {MIN_SITE_SCANS} for a "
            "verdict. Add scans of this site to the folder."
        )
    raw = _raw_tests(reference, site, len(labels))
    tests = tuple(StatisticTest(n, t, s, p, min(1.0, p * len(raw))) for n, t, s, p in raw)
    return ShiftReport(len(site), len(reference), tests, alpha, tuple(labels), site, reference)


def reference_of(spec_trust: Mapping[str, Any] | None, labels: Sequence[str], source: str) -> Observations:
    """The reference observations stored in a model's trust entry.

    Raises:
        MetadataError: the model carries none (the message says how to add it), or it is malformed.
    """
    entry = (spec_trust or {}).get(SHIFT_ENTRY)
    if entry is None:
        raise MetadataError(
            f"{source}: carries no shift reference (it was calibrated by an older tumorscan); run "
            "tumor-calibrate on its .keras model and export it again."
        )
    return Observations.from_entry(entry, labels, source)


def site_sources(folder: Path) -> list[Path]:
    """The scans of a site folder (recursive; labels are not needed).

    Raises:
        SiteError: the folder does not exist or holds no scans.
    """
    from .folders import walk_scans

    if not folder.is_dir():
        raise SiteError(f"{folder}: no such folder; pass the folder holding the site's scans.")
    found = [p for p in walk_scans(folder) if isinstance(p, Path)]
    if not found:
        raise SiteError(f"{folder}: holds no scans (accepted: .jpg, .png, .dcm, ...).")
    return found


@dataclass(frozen=True)
class SiteScans:
    """A site folder as the model saw it: observations of the readable scans, and one error per other."""

    observations: Observations
    errors: tuple[tuple[str, str, str], ...]
    """(source, error code, message) of each scan that could not be read."""


def observe_folder(classifier: Classifier, sources: Sequence[Path], batch_size: int = 32) -> SiteScans:
    """Run the model on every source as deployed; a bad scan is an error entry, never the end of the run.

    Raises:
        SiteError: no scan could be read.
    """
    from .pipeline import decode_ahead

    parts: list[Observations] = []
    errors: list[tuple[str, str, str]] = []
    batch: list[NDArray[np.uint8]] = []

    def flush() -> None:
        if batch:
            pixels = np.stack(batch)
            probabilities, distance = classifier.probabilities_and_distance(pixels)
            far = None if distance is None else distance > 1
            flagged = (classifier.trust or Trust()).out_of_distribution(pixels, far)
            parts.append(observe(classifier.labels, probabilities, pixels, distance, flagged))
            batch.clear()

    for source, decoded in decode_ahead(classifier.read, sources, ahead=2 * batch_size):
        try:
            batch.append(decoded.result())
        except TumorscanError as exc:
            errors.append((str(source), exc.code, str(exc)))
        if len(batch) >= batch_size:
            flush()
    flush()
    if not parts:
        raise SiteError(f"none of the {len(sources)} scans could be read; first: {errors[0][2]}")
    return SiteScans(concatenate(parts), tuple(errors))
