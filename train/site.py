"""Adapting a model to a new site with a few of its labelled scans, and measuring what that buys.

Stages: check the inputs (before anything is written); decode the site and, when given, the original
training folder (its training part feeds the recipe, its validation part measures forgetting); group the
site's near copies and find its copies of training scans; K grouped folds (`tumorscan.train.site_folds`);
adapt on every site scan; save `model.keras` with the site's temperature, threshold and shift reference
and its provenance; then `tumor-adapt` (`tumorscan.export.site_cli`) exports it like `tumor-export` and
checks parity on the site's scans. Everything is written to `OUT.partial` and renamed to OUT at the end,
so a failed run leaves nothing half written in OUT.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.errors import MetadataError, SiteError
from tumorscan.shift import SHIFT_ENTRY, observe
from tumorscan.spec import ModelSpec
from tumorscan.train.calibrate import DEFAULT_TARGET_ACCURACY
from tumorscan.train.data import CachedScans, default_cache_dir, load_dataset
from tumorscan.train.run_config import recorded_split
from tumorscan.train.site_adapt import AdaptRecipe, Pool, fine_tune, probabilities
from tumorscan.train.site_data import MIN_FOLD_SCANS, grouped_folds, load_site, site_groups
from tumorscan.train.site_folds import Fold, FoldRun, PooledFolds, SiteFit, pool_folds, run_folds
from tumorscan.train.splits import validation_split
from tumorscan.trust import Trust, apply_temperature

Log = Callable[[str], None]


@dataclass(frozen=True)
class AdaptOptions:
    """What `tumor-adapt` does (see the command's help)."""

    model: Path
    site: Path
    out: Path
    data: Path | None = None
    folds: int = 5
    target_accuracy: float = DEFAULT_TARGET_ACCURACY
    recipe: AdaptRecipe = field(default_factory=AdaptRecipe)
    cache: Path | None = None
    force: bool = False


@dataclass(frozen=True)
class Inputs:
    """The decoded inputs of an adaptation."""

    spec: ModelSpec
    label_smoothing: float
    site: CachedScans
    groups: NDArray[np.int64]
    twin: NDArray[np.bool_]
    source: CachedScans | None
    source_train: NDArray[np.int64] | None
    source_val: NDArray[np.int64] | None

    @property
    def truth(self) -> NDArray[np.int32]:
        return self.site.label_ids

    @property
    def clean(self) -> NDArray[np.bool_]:
        """Site scans without a copy in the training folder."""
        return ~self.twin


def read_parent(model: Path) -> ModelSpec:
    """The parent model's spec, refused when it cannot be adapted.

    Raises:
        MetadataError: no .keras with a tumorscan spec, or no calibration (trust) entry.
    """
    from tumorscan.train.keras_file import read_keras_spec

    spec = read_keras_spec(model) if model.is_file() else None
    if spec is None:
        raise MetadataError(
            f"{model}: no .keras file with a tumorscan spec (labels, input size); train it with tumor-train."
        )
    if not spec.trust:
        raise MetadataError(
            f"{model}: carries no calibration (trust entry); run tumor-calibrate on it first, so that its "
            "input checks travel into the adapted model."
        )
    return spec


def refuse_full_out(out: Path, force: bool) -> None:
    """Refuse an OUT that holds files unless forced."""
    if out.exists() and any(out.iterdir()) and not force:
        raise SiteError(f"{out}: already holds files; choose another --out or pass --force to replace it.")


def prepare_out(out: Path) -> Path:
    """The empty partial folder the run writes to, renamed to `out` when done."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def load_inputs(options: AdaptOptions, spec: ModelSpec, log: Log) -> Inputs:
    """Decode the site and the training folder; group the site's near copies and find training twins."""
    cache = options.cache or default_cache_dir(options.out)
    site = load_site(options.site, spec.labels, spec.input.size, cache)
    for path, reason in site.unreadable:
        log(f"skipped {path}: {reason}")
    groups, twin = site_groups(site, options.data)
    config = spec.provenance.get("config") or {}
    source = source_train = source_val = None
    if options.data is not None:
        source = load_dataset(options.data, spec.input.size, cache, labels=spec.labels)
        source_train, source_val = validation_split(source, *recorded_split(spec))
    else:
        log(
            "no --data: adapting on the site's scans alone; forgetting of the training source is not "
            "measured."
        )
    log(
        f"site: {len(site)} scans in {len(np.unique(groups))} near-copy groups; {int(twin.sum())} have a "
        "copy in the training folder (kept out of the clean metrics)"
    )
    smoothing = float(config.get("label_smoothing", 0.0))
    return Inputs(spec, smoothing, site, groups, twin, source, source_train, source_val)


def _fold_run(options: AdaptOptions, inputs: Inputs) -> FoldRun:
    """Adapting a fresh copy of the parent, predicting site rows, and the source's validation accuracy."""
    from tumorscan.train.keras_file import load_keras

    site = Pool(inputs.site.pixels, inputs.site.label_ids)
    source = None if inputs.source is None else Pool(inputs.source.pixels, inputs.source.label_ids)

    def adapt(held_in: NDArray[np.int64]) -> Any:
        model = load_keras(options.model)
        return fine_tune(
            model, site, held_in, source, inputs.source_train, options.recipe, inputs.label_smoothing
        )

    validation: Callable[[Any], float] | None = None
    if inputs.source is not None and inputs.source_val is not None:
        validation = accuracy_on(inputs.source, inputs.source_val)
    return FoldRun(
        adapt=adapt,
        predict=lambda model, rows: probabilities(model, inputs.site.pixels, rows),
        validation=validation,
    )


def accuracy_on(scans: CachedScans, rows: NDArray[np.int64]) -> Callable[[Any], float]:
    """model -> its accuracy on `rows` of `scans`."""

    def accuracy(model: Any) -> float:
        predicted = probabilities(model, scans.pixels, rows).argmax(axis=1)
        return float((predicted == scans.label_ids[rows]).mean())

    return accuracy


@dataclass(frozen=True)
class Estimate:
    """The fold estimate: the parent's predictions, every fold, the pooled held-out predictions."""

    before: NDArray[np.float32]
    """the parent's probabilities on every site scan, with its own temperature"""
    before_answered: NDArray[np.bool_]
    """the site scans the parent answers at its own threshold"""
    validation_before: float | None
    folds: list[Fold]
    pooled: PooledFolds
    fold_of: NDArray[np.int64]


def _estimate(options: AdaptOptions, inputs: Inputs, log: Log) -> Estimate:
    """The parent on every site scan, then K grouped folds."""
    from tumorscan.train.keras_file import load_keras

    fold_of = grouped_folds(inputs.truth, inputs.groups, options.folds, options.recipe.seed)
    run = _fold_run(options, inputs)
    parent = load_keras(options.model)
    trust = Trust.from_spec(inputs.spec) or Trust()
    before = trust.calibrate(probabilities(parent, inputs.site.pixels, np.arange(len(inputs.site))))
    answered = before.max(axis=1) >= (trust.threshold or 0.0)
    validation_before = run.validation(parent) if run.validation else None
    folds = run_folds(fold_of, run, log)
    pooled = pool_folds(folds, fold_of, inputs.truth, inputs.clean, options.target_accuracy)
    return Estimate(before, answered, validation_before, folds, pooled, fold_of)


def final_fit(inputs: Inputs, estimate: Estimate, target: float) -> SiteFit:
    """The deployed model's temperature and threshold: fitted on every clean out-of-fold prediction."""
    raw = estimate.pooled.raw
    return SiteFit.on(raw[inputs.clean], inputs.truth[inputs.clean], target)


def adapt_all(options: AdaptOptions, inputs: Inputs, log: Log) -> tuple[Any, float]:
    """The deployed model: the parent adapted on every site scan; returns it and the seconds it took."""
    started = time.perf_counter()
    model = _fold_run(options, inputs).adapt(np.arange(len(inputs.site), dtype=np.int64))
    seconds = time.perf_counter() - started
    log(f"adapted on all {len(inputs.site)} site scans in {seconds / 60:.1f} min")
    return model, seconds


def site_reference(inputs: Inputs, estimate: Estimate, fit: SiteFit) -> dict[str, Any]:
    """The adapted model's shift reference: the clean out-of-fold predictions, with the site's temperature."""
    rows = np.flatnonzero(inputs.clean)
    calibrated = apply_temperature(estimate.pooled.raw[rows], fit.temperature)
    pixels = np.asarray(inputs.site.pixels[rows])
    checks = Trust.from_spec(inputs.spec) or Trust()
    observations = observe(inputs.spec.labels, calibrated, pixels, None, checks.out_of_distribution(pixels))
    return observations.to_entry(scans_from="site, out-of-fold predictions of the grouped folds")


def adapted_spec(
    options: AdaptOptions, inputs: Inputs, estimate: Estimate | None, report: dict[str, Any] | None
) -> ModelSpec:
    """The parent's spec with the site's calibration, shift reference and provenance.

    The parent's feature-distance statistics describe the parent's features, not the adapted model's: they
    are left out (the input checks stay). Without folds the parent's temperature and threshold stay.
    """
    from tumorscan.train.keras_file import file_sha256
    from tumorscan.train.run_config import tool_versions

    parent = inputs.spec
    trust = {k: v for k, v in (parent.trust or {}).items() if k not in ("feature_distance", "validation")}
    if estimate is not None:
        fit = final_fit(inputs, estimate, options.target_accuracy)
        trust.update(
            temperature=fit.temperature,
            threshold=round(fit.threshold, 6),
            target_accuracy=options.target_accuracy,
            fitted_on={"site": str(options.site), "how": "clean out-of-fold predictions of grouped folds"},
        )
        trust[SHIFT_ENTRY] = site_reference(inputs, estimate, fit)
    provenance = {
        "adapted_by": "tumor-adapt",
        "parent": {"sha256": file_sha256(options.model), "provenance": parent.provenance},
        "config": (parent.provenance or {}).get("config"),
        "site": {
            "root": str(options.site),
            "fingerprint": inputs.site.fingerprint(),
            "counts": inputs.site.counts(),
            "training_copies": int(inputs.twin.sum()),
        },
        "training_data": None if options.data is None else str(options.data),
        "recipe": options.recipe.to_json(),
        "folds": options.folds,
        "site_metrics": None if report is None else report["pooled"],
        "versions": tool_versions(),
    }
    return parent.with_updates(trust=trust, provenance=provenance)


@dataclass(frozen=True)
class AdaptResult:
    """What `adapt_site` wrote and measured."""

    out: Path
    report: dict[str, Any] | None
    files: list[Path]


Finish = Callable[[Path, Log], list[Path]]
"""A last stage run on the written `model.keras` before the output folder is complete (the export)."""


def adapt_site(options: AdaptOptions, log: Log, finish: Finish | None = None) -> AdaptResult:
    """The whole of `tumor-adapt` (see the module docstring); `finish` may add files beside the model."""
    options.recipe.validate()
    refuse_full_out(options.out, options.force)
    spec = read_parent(options.model)
    inputs = load_inputs(options, spec, log)
    if options.folds:
        _check_folds(options, inputs)
    partial = prepare_out(options.out)
    try:
        report, files = _write_all(options, inputs, partial, log)
        if finish is not None:
            files += finish(partial / "model.keras", log)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if options.out.exists():
        shutil.rmtree(options.out)
    partial.replace(options.out)
    return AdaptResult(options.out, report, [options.out / f.relative_to(partial) for f in files])


def _check_folds(options: AdaptOptions, inputs: Inputs) -> None:
    """Refuse, before any work, a site that folds cannot be made of or measured on."""
    grouped_folds(inputs.truth, inputs.groups, options.folds, options.recipe.seed)
    if inputs.clean.sum() < MIN_FOLD_SCANS:
        raise SiteError(
            f"only {int(inputs.clean.sum())} of the site's {len(inputs.site)} scans have no copy in the "
            f"training folder (at least {MIN_FOLD_SCANS} are needed to measure and fit the site threshold "
            "on); label scans the model has not been trained on."
        )


def _write_all(
    options: AdaptOptions, inputs: Inputs, partial: Path, log: Log
) -> tuple[dict[str, Any] | None, list[Path]]:
    """Folds and their report, the adapted model, its exports: everything written to `partial`."""
    from tumorscan.train.keras_file import save_keras
    from tumorscan.train.site_report import site_report, write_site_report

    estimate = report = None
    files: list[Path] = []
    if options.folds:
        estimate = _estimate(options, inputs, log)
        report = site_report(options, inputs, estimate)
        files += write_site_report(report, inputs, estimate, partial)
    model, _ = adapt_all(options, inputs, log)
    save_keras(model, partial / "model.keras", adapted_spec(options, inputs, estimate, report))
    files.append(partial / "model.keras")
    return report, files
