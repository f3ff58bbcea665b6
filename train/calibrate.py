"""Fitting a model's trust entry (`tumorscan.trust`): temperature, abstention threshold, input checks.

The temperature minimises the negative log-likelihood of the validation scans (Guo et al. 2017); the
threshold is the lowest calibrated confidence at which the answered validation scans (those the
out-of-distribution checks pass) are still at least `target_accuracy` right; each input statistic's accepted
range is a central quantile range of the training scans; the feature distance (`tumorscan.train.distance`) is
fitted on the training scans' penultimate features, and its threshold leaves `DISTANCE_SHARE` of the
validation scans beyond it. `tumor-train` calls
`calibrate_scans` at the end of a run; `tumor-calibrate` does it for a saved `.keras`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.errors import MetadataError, ModelError
from tumorscan.shift import SHIFT_ENTRY, observe
from tumorscan.train.batches import keras_outputs
from tumorscan.train.distance import (
    DISTANCE_ENTRY,
    DistanceStats,
    fit_distance,
)
from tumorscan.train.features import features_model
from tumorscan.train.scan_check import fit_scan_check
from tumorscan.trust import DISTANCE_OUTPUT, Trust, apply_temperature, input_statistics

ECE_BINS = 15
DEFAULT_TARGET_ACCURACY = 0.95
CHECK_QUANTILES = (0.001, 0.999)
"""Central range of each input statistic over the training scans that is accepted."""
CHECK_MARGIN = (0.1, 0.02)
"""The accepted range is widened on both sides by this share of its width, and at least by the second value
(statistics are in 0-1 units; training scans are exactly grey, and re-encoded scans may not be)."""
DISTANCE_SHARE = 0.02
"""Share of validation scans whose feature distance may exceed the threshold."""
TEMPERATURE_RANGE = (0.05, 20.0)
CHUNK = 256
SHIFT_REFERENCE_SHARE = 2 / 3
"""Share of the validation scans whose observations the spec stores as the shift reference
(`tumorscan.shift`); the rest stay out of it, so that the check's false alarms can be measured on scans of
the training source that neither trained the model nor entered the reference."""
SHIFT_REFERENCE_SEED = 0

Predict = Callable[[NDArray[np.uint8]], NDArray[np.float32]]
"""N x H x W x 3 uint8 pixels -> N x K probabilities."""


def negative_log_likelihood(probabilities: NDArray[np.floating], truth: NDArray[np.integer]) -> float:
    """Mean -log p(true class)."""
    picked = probabilities[np.arange(len(truth)), truth]
    return float(-np.log(np.maximum(picked, 1e-12)).mean())


def reliability_bins(
    probabilities: NDArray[np.floating], truth: NDArray[np.integer], bins: int = ECE_BINS
) -> list[dict[str, float]]:
    """Per equal-width confidence bin: scans, mean confidence and accuracy (empty bins left out)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == truth
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    return [
        {
            "low": b / bins,
            "count": int((index == b).sum()),
            "confidence": float(confidence[index == b].mean()),
            "accuracy": float(correct[index == b].mean()),
        }
        for b in range(bins)
        if (index == b).any()
    ]


def expected_calibration_error(
    probabilities: NDArray[np.floating], truth: NDArray[np.integer], bins: int = ECE_BINS
) -> float:
    """ECE over `bins` equal-width bins of top-1 confidence, |accuracy - confidence| weighted by count."""
    rows = reliability_bins(probabilities, truth, bins)
    return float(sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / len(truth))


def fit_temperature(probabilities: NDArray[np.floating], truth: NDArray[np.integer]) -> float:
    """The T minimising the NLL of softmax(log p / T): golden-section search on log T."""
    probabilities = probabilities.astype(np.float32)

    def loss(log_t: float) -> float:
        return negative_log_likelihood(apply_temperature(probabilities, float(np.exp(log_t))), truth)

    low, high = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if loss(a) < loss(b):
            high = b
        else:
            low = a
    return round(float(np.exp((low + high) / 2)), 4)


def choose_threshold(
    probabilities: NDArray[np.floating], truth: NDArray[np.integer], target_accuracy: float
) -> float:
    """The lowest confidence t such that scans with confidence >= t are at least `target_accuracy` right.

    When even the most confident scan misses the target, the highest confidence (answer almost nothing).
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == truth
    order = np.argsort(-confidence, kind="stable")
    accuracy = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    cut = confidence[order]
    # only cut between distinct confidences: a threshold answers every scan at or above it
    boundary = np.append(cut[1:] < cut[:-1], True)
    good = np.flatnonzero((accuracy >= target_accuracy) & boundary)
    return float(cut[good[-1]]) if len(good) else float(cut[0])


def coverage_table(
    probabilities: NDArray[np.floating], truth: NDArray[np.integer], answered: NDArray[np.bool_]
) -> dict[str, Any]:
    """Scans, answered share, accuracy of the answered and of all scans."""
    correct = probabilities.argmax(axis=1) == truth
    return {
        "scans": len(truth),
        "answered": int(answered.sum()),
        "coverage": float(answered.mean()),
        "accuracy_answered": float(correct[answered].mean()) if answered.any() else None,
        "accuracy_all": float(correct.mean()),
    }


def input_check_statistics(
    pixels: NDArray[np.uint8], rows: NDArray[np.int64]
) -> dict[str, NDArray[np.float32]]:
    """Input statistics of `pixels[rows]`, computed in chunks (pixels may be a memory map)."""
    parts = [input_statistics(np.asarray(pixels[rows[i : i + CHUNK]])) for i in range(0, len(rows), CHUNK)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def fit_input_checks(statistics: dict[str, NDArray[np.float32]]) -> dict[str, list[float]]:
    """Accepted [low, high] per statistic: the central quantile range, widened by `CHECK_MARGIN`."""
    ranges = {}
    for name, values in statistics.items():
        low, high = (float(q) for q in np.quantile(values, CHECK_QUANTILES))
        margin = max(CHECK_MARGIN[0] * (high - low), CHECK_MARGIN[1])
        ranges[name] = [round(low - margin, 5), round(high + margin, 5)]
    return ranges


@dataclass(frozen=True)
class TrustFit:
    """The trust entry for the spec, and the validation probabilities before and after scaling."""

    entry: dict[str, Any]
    truth: NDArray[np.int32]
    before: NDArray[np.float32]
    after: NDArray[np.float32]
    distance: DistanceStats | None = None

    def archive_entries(self) -> dict[str, bytes]:
        """What the `.keras` archive carries beside the spec: the feature-distance statistics."""
        return {} if self.distance is None else {DISTANCE_ENTRY: self.distance.to_bytes()}


def fit_trust(
    validation: NDArray[np.float32],
    truth: NDArray[np.int32],
    training_statistics: dict[str, NDArray[np.float32]],
    validation_pixels: NDArray[np.uint8],
    target_accuracy: float = DEFAULT_TARGET_ACCURACY,
    far: NDArray[np.bool_] | None = None,
) -> TrustFit:
    """Fit temperature, threshold and input checks; measure them on the validation scans.

    Args:
        validation: the model's probabilities on the validation scans.
        truth: their class ids.
        training_statistics: `input_check_statistics` of the training scans.
        validation_pixels: the validation scans (for the share the input checks flag).
        target_accuracy: accuracy the answered validation scans must reach.
        far: validation scans beyond the feature-distance threshold, if there is one.
    """
    temperature = fit_temperature(validation, truth)
    after = apply_temperature(validation, temperature)
    checks = fit_input_checks(training_statistics)
    trust = Trust(input_checks={k: (v[0], v[1]) for k, v in checks.items()})
    flagged = trust.out_of_distribution(validation_pixels, far)
    threshold = choose_threshold(after[~flagged], truth[~flagged], target_accuracy)  # of what is left
    answered = (after.max(axis=1) >= threshold) & ~flagged
    measured = {
        "ece_bins": ECE_BINS,
        "ece_before": round(expected_calibration_error(validation, truth), 4),
        "ece_after": round(expected_calibration_error(after, truth), 4),
        "nll_before": round(negative_log_likelihood(validation, truth), 4),
        "nll_after": round(negative_log_likelihood(after, truth), 4),
        "flagged_out_of_distribution": round(float(flagged.mean()), 4),
        **{
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in coverage_table(after, truth, answered).items()
        },
    }
    entry = {
        "temperature": temperature,
        "threshold": round(threshold, 6),
        "target_accuracy": target_accuracy,
        "input_checks": checks,
        "validation": measured,
    }
    return TrustFit(entry, truth, validation, after)


def reliability_figure(fit: TrustFit, path: Path) -> None:
    """Reliability diagram (accuracy against confidence per bin) before and after temperature scaling."""
    from tumorscan.train.figures import new_figure, save_png

    figure = new_figure(figsize=(5, 4.5))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for name, probabilities in (("before", fit.before), ("after", fit.after)):
        rows = reliability_bins(probabilities, fit.truth)
        ece = expected_calibration_error(probabilities, fit.truth)
        axes.plot(
            [r["confidence"] for r in rows],
            [r["accuracy"] for r in rows],
            marker="o",
            label=f"{name} (ECE {ece:.3f})",
        )
    axes.set(
        xlabel="confidence (mean per bin)",
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"Validation reliability, {ECE_BINS} bins, T = {fit.entry['temperature']}",
    )
    axes.legend(loc="upper left")
    save_png(figure, path)


def _fit_out_of_distribution(
    model: Any, scans: Any, train_rows: NDArray[np.int64], val_rows: NDArray[np.int64]
) -> tuple[DistanceStats, NDArray[np.float32], dict[str, Any]] | None:
    """Feature distance and scan check from the training scans, thresholds from the validation scans.

    Returns the statistics, the validation scans' out-of-distribution ratio (the larger of the two, as
    the exported output reads) and the trust entry's records of both.
    """
    try:
        features = features_model(model)
    except ModelError:
        return None
    fitted = fit_distance(
        keras_outputs(features, scans.pixels, train_rows, CHUNK),
        scans.label_ids[train_rows],
        len(scans.labels),
    )
    distances = fitted.distances(keras_outputs(features, scans.pixels, val_rows, CHUNK))
    threshold = round(float(np.quantile(distances, 1 - DISTANCE_SHARE)), 4)
    stats = DistanceStats(fitted.means, fitted.whitening, threshold)
    ratio = (distances / threshold).astype(np.float32)
    entries: dict[str, Any] = {
        "feature_distance": {
            "output": DISTANCE_OUTPUT,
            "threshold": threshold,
            "validation_share": DISTANCE_SHARE,
            "features": int(fitted.means.shape[1]),
        }
    }
    scan = fit_scan_check(model, scans.pixels, train_rows, val_rows)
    if scan is not None:
        stats = replace(stats, scan=scan.check)
        ratio = np.maximum(ratio, scan.validation_ratios)
        entries["scan_check"] = {"output": DISTANCE_OUTPUT, "column": 2, **scan.entry}
    return stats, ratio, entries


def shift_reference_rows(count: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Positions among `count` validation scans: those in the shift reference, and those kept out."""
    order = np.random.default_rng(SHIFT_REFERENCE_SEED).permutation(count)
    cut = round(count * SHIFT_REFERENCE_SHARE)
    return np.sort(order[:cut]), np.sort(order[cut:])


def shift_reference(
    fit: TrustFit,
    labels: tuple[str, ...],
    pixels: NDArray[np.uint8],
    distance_ratio: NDArray[np.float32] | None,
) -> dict[str, Any]:
    """The spec's shift reference: what the calibrated model sees on the reference part of validation."""
    keep, _ = shift_reference_rows(len(pixels))
    checks = Trust(input_checks={k: (v[0], v[1]) for k, v in fit.entry["input_checks"].items()})
    ratio = None if distance_ratio is None else distance_ratio[keep]
    flagged = checks.out_of_distribution(pixels[keep], None if ratio is None else ratio > 1)
    observations = observe(labels, fit.after[keep], pixels[keep], ratio, flagged)
    return observations.to_entry(
        scans_from="validation",
        share=round(SHIFT_REFERENCE_SHARE, 4),
        seed=SHIFT_REFERENCE_SEED,
    )


def calibrate_scans(
    model: Any, scans: Any, train_rows: NDArray[np.int64], val_rows: NDArray[np.int64], target_accuracy: float
) -> TrustFit:
    """`fit_trust` for a Keras model on the rows of a `CachedScans` (validation and training)."""
    probabilities = keras_outputs(model, scans.pixels, val_rows, CHUNK)
    statistics = input_check_statistics(scans.pixels, train_rows)
    validation_pixels = np.asarray(scans.pixels[val_rows])
    distance = _fit_out_of_distribution(model, scans, train_rows, val_rows)
    ratio = None if distance is None else distance[1]
    fit = fit_trust(
        probabilities,
        scans.label_ids[val_rows],
        statistics,
        validation_pixels,
        target_accuracy,
        None if ratio is None else ratio > 1,
    )
    fit.entry[SHIFT_ENTRY] = shift_reference(fit, scans.labels, validation_pixels, ratio)
    if distance is None:
        return fit
    fit.entry.update(distance[2])
    return replace(fit, distance=distance[0])


def write_trust_report(fit: TrustFit, out: Path) -> list[Path]:
    """trust.json (the entry) and reliability.png in `out`."""
    from tumorscan.files import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "trust.json", json.dumps(fit.entry, indent=1) + "\n")
    reliability_figure(fit, out / "reliability.png")
    return [out / "trust.json", out / "reliability.png"]


def calibrate_keras(
    model_path: Path,
    data: Path,
    out: Path,
    val_split: float | None = None,
    seed: int | None = None,
    target_accuracy: float = DEFAULT_TARGET_ACCURACY,
    cache: Path | None = None,
    progress: bool = True,
) -> TrustFit:
    """Fit the trust entry of a saved `.keras` model and write `out/model.keras` carrying it.

    The validation split is carved from `data` as `tumor-train` does (stratified, seeded); by default with
    the fraction and seed recorded in the model's provenance, else those `TrainConfig` defaults to.

    Raises:
        ModelError, MetadataError: the model is missing, unsafe or has no spec.
        DatasetError: the folder is missing, empty or has classes the model does not know.
    """
    from tumorscan.train.data import load_dataset
    from tumorscan.train.keras_file import copy_with_spec, load_keras, read_keras_spec
    from tumorscan.train.run_config import SplitRecord, recorded_split, require_training_stack, split_record
    from tumorscan.train.splits import validation_split

    require_training_stack()
    spec = read_keras_spec(model_path) if model_path.is_file() else None
    if spec is None:
        raise MetadataError(
            f"{model_path}: no .keras file with a tumorscan spec (labels, input size); train it with "
            "tumor-train or save it with tumorscan.train.keras_file.save_keras."
        )
    recorded = recorded_split(spec)
    split = SplitRecord(
        recorded.fraction if val_split is None else val_split,
        recorded.seed if seed is None else seed,
        recorded.method,
    )
    model = load_keras(model_path)
    scans = load_dataset(data, spec.input.size, cache, labels=spec.labels, progress=progress)
    train_rows, val_rows = validation_split(scans, *split, progress)
    if progress:
        print(
            f"Fitting on {len(val_rows)} validation scans ({split.method} split) and {len(train_rows)} "
            "training scans: temperature, threshold, input checks, feature distance, and the scan check "
            "(several thousand made negatives: a few minutes)",
            file=sys.stderr,
            flush=True,
        )
    fit = calibrate_scans(model, scans, train_rows, val_rows, target_accuracy)
    fit.entry["fitted_on"] = split_record(data, split)
    copy_with_spec(model_path, out / "model.keras", spec.with_updates(trust=fit.entry), fit.archive_entries())
    write_trust_report(fit, out)
    return fit
