"""What adaptation buys, estimated honestly: K grouped folds over the site's scans.

Each fold's model is adapted without its held-out scans. The site's temperature and abstention
threshold for a fold are fitted on the out-of-fold predictions of the other folds (scans that their models
did not adapt on, and that this fold's model may have): never on the held-out fold, and never on scans a
model adapted on. Scans with a copy in the training folder are kept out of those fits and of the metrics
that matter (`clean`), and reported apart (`all`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.errors import SiteError
from tumorscan.train.calibrate import (
    choose_threshold,
    coverage_table,
    expected_calibration_error,
    fit_temperature,
)
from tumorscan.train.reporting import classification_report
from tumorscan.trust import apply_temperature


@dataclass(frozen=True)
class SiteFit:
    """A temperature and the lowest confidence at which answers reach the target, fitted on some scans."""

    temperature: float
    threshold: float

    @classmethod
    def on(cls, probabilities: NDArray[np.float32], truth: NDArray[np.int32], target: float) -> SiteFit:
        if not len(truth):
            raise SiteError(
                "no held-out site scans without a copy in the training folder to fit the site's threshold "
                "on; label scans the model has not been trained on."
            )
        temperature = fit_temperature(probabilities, truth)
        calibrated = apply_temperature(probabilities, temperature)
        return cls(temperature, choose_threshold(calibrated, truth, target))


@dataclass(frozen=True)
class Fold:
    """One fold: its held-out rows, the adapted model's probabilities there and on the source's validation."""

    index: int
    held_out: NDArray[np.int64]
    probabilities: NDArray[np.float32]
    validation_accuracy: float | None
    seconds: float


@dataclass(frozen=True)
class FoldRun:
    """Everything a fold needs: adapt on rows and predict; evaluate on the source's validation scans."""

    adapt: Callable[[NDArray[np.int64]], Any]
    """held-in rows -> adapted model"""
    predict: Callable[[Any, NDArray[np.int64]], NDArray[np.float32]]
    """(model, site rows) -> probabilities"""
    validation: Callable[[Any], float] | None
    """model -> accuracy on the source's validation scans (None without the training folder)"""


def run_folds(fold_of: NDArray[np.int64], run: FoldRun, log: Callable[[str], None]) -> list[Fold]:
    """Adapt and evaluate every fold in turn."""
    folds = int(fold_of.max()) + 1
    results = []
    for index in range(folds):
        started = time.perf_counter()
        held_out, held_in = np.flatnonzero(fold_of == index), np.flatnonzero(fold_of != index)
        model = run.adapt(held_in)
        probabilities = run.predict(model, held_out)
        validation = run.validation(model) if run.validation else None
        seconds = time.perf_counter() - started
        results.append(Fold(index, held_out, probabilities, validation, seconds))
        note = "" if validation is None else f", source validation {validation:.1%}"
        log(
            f"fold {index + 1}/{folds}: adapted on {len(held_in)} scans, {len(held_out)} held out, "
            f"{seconds / 60:.1f} min{note}"
        )
    return results


@dataclass(frozen=True)
class PooledFolds:
    """The held-out predictions of every fold, pooled, with each fold's site calibration applied."""

    raw: NDArray[np.float32]
    """every site scan's probabilities from the fold model that held it out (uncalibrated)"""
    after: NDArray[np.float32]
    """the same with the site temperature of its fold"""
    answered: NDArray[np.bool_]
    fits: tuple[SiteFit, ...]


def pool_folds(
    folds: list[Fold],
    fold_of: NDArray[np.int64],
    truth: NDArray[np.int32],
    clean: NDArray[np.bool_],
    target: float,
) -> PooledFolds:
    """Pool the folds; each fold's temperature and threshold come from the other folds' clean scans."""
    raw = np.zeros((len(truth), folds[0].probabilities.shape[1]), dtype=np.float32)
    for fold in folds:
        raw[fold.held_out] = fold.probabilities
    after, answered, fits = np.zeros_like(raw), np.zeros(len(truth), dtype=bool), []
    for fold in folds:
        others = (fold_of != fold.index) & clean
        fit = SiteFit.on(raw[others], truth[others], target)
        rows = fold.held_out
        after[rows] = apply_temperature(raw[rows], fit.temperature)
        answered[rows] = after[rows].max(axis=1) >= fit.threshold
        fits.append(fit)
    return PooledFolds(raw, after, answered, tuple(fits))


def metrics(
    probabilities: NDArray[np.float32],
    truth: NDArray[np.int32],
    answered: NDArray[np.bool_],
    labels: tuple[str, ...],
) -> dict[str, Any]:
    """Accuracy, per-class recall, answered share and accuracy, ECE of some scans."""
    classes = classification_report(truth, probabilities.argmax(axis=1), labels)["classes"]
    table = coverage_table(probabilities, truth, answered)
    return {
        "scans": len(truth),
        "accuracy": round(table["accuracy_all"], 4),
        "recall": {label: round(row["recall"], 4) for label, row in classes.items() if row["support"]},
        "answered": round(float(table["coverage"]), 4),
        "accuracy_answered": None
        if table["accuracy_answered"] is None
        else round(table["accuracy_answered"], 4),
        "ece": round(expected_calibration_error(probabilities, truth), 4),
    }
