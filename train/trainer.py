"""Training runs: data, model, checkpoints, early stopping, resume, reports and the saved model.

A run folder holds:
    model.keras            the best model by validation, with its ModelSpec inside
    history.json           per-epoch metrics and seconds
    report.json/.txt       classification reports: validation split; test folder and its clean subset if given
    audit/                 the audit of the data (tumor-audit's files)
    confusion_matrix.png   one panel per report
    learning_curves.png    loss and accuracy per epoch
    trust.json, reliability.png  temperature, abstention threshold, input checks (also in the spec)
    train.log, run.json    arguments, dataset counts, unreadable scans, timings, versions
    checkpoints/           last.keras (with optimizer state), best.keras, state.json: what --resume needs
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.files import atomic_write_text
from tumorscan.spec import InputSpec, ModelSpec
from tumorscan.train.calibrate import DEFAULT_TARGET_ACCURACY, calibrate_scans, write_trust_report
from tumorscan.train.data import CachedScans, default_cache_dir, load_dataset
from tumorscan.train.distribute import (
    Worker,
    distributed_dataset,
    fix_keras_distribution,
    peers_lost,
    select_strategy,
    share_state,
    share_weights,
    worker_config,
)
from tumorscan.train.keras_file import save_keras
from tumorscan.train.pipelines import Pipeline, feature_pipeline, pixel_pipeline
from tumorscan.train.reporting import model_report, write_reports
from tumorscan.train.run_config import (
    AUDIT,
    CHECKPOINTS,
    MONITORS,
    RunLog,
    SplitRecord,
    TrainConfig,
    TrainResult,
    balanced_class_weights,
    check_resumable,
    prepare_output,
    require_training_stack,
    split_record,
    tool_versions,
)
from tumorscan.train.splits import validation_split

if TYPE_CHECKING:
    from tumorscan.train.architectures import Architecture


def _run_audit(config: TrainConfig, log: RunLog, progress: bool) -> Any:
    """Audit the test folder against the training folder (or the training folder alone), into out/audit/."""
    from tumorscan.train.audit import audit_dataset

    if config.test is not None:
        report = audit_dataset(config.test, reference=config.data, progress=progress)
    else:
        report = audit_dataset(config.data, progress=progress)
    report.write(config.out / AUDIT)
    log(report.summary_text())
    return report


@dataclass
class _Data:
    """The decoded datasets ("train", optionally "test") and the split of "train"."""

    sources: dict[str, CachedScans]
    train_rows: NDArray[np.int64]
    val_rows: NDArray[np.int64]

    @property
    def labels(self) -> tuple[str, ...]:
        return self.sources["train"].labels

    def counts(self) -> dict[str, Any]:
        counts: dict[str, Any] = {
            "train": self.sources["train"].counts(self.train_rows),
            "validation": self.sources["train"].counts(self.val_rows),
        }
        if "test" in self.sources:
            counts["test"] = self.sources["test"].counts()
        counts["unreadable"] = {name: len(scans.unreadable) for name, scans in self.sources.items()}
        return counts

    def unreadable(self) -> dict[str, list[dict[str, str]]]:
        return {
            name: [{"path": str(path), "reason": reason} for path, reason in scans.unreadable]
            for name, scans in self.sources.items()
        }


def _load_data(config: TrainConfig, cache_dir: Path, log: RunLog, progress: bool) -> _Data:
    """Decode (or reuse) the training and test scans, log what was skipped, split off validation."""
    sources = {"train": load_dataset(config.data, config.size, cache_dir, progress=progress)}
    labels = sources["train"].labels
    if config.test is not None:
        sources["test"] = load_dataset(config.test, config.size, cache_dir, labels=labels, progress=progress)
    for name, scans in sources.items():
        log(f"{name}: {len(scans)} scans from {scans.root} ({scans.reused} from the cache {cache_dir})")
        for _, reason in scans.unreadable:
            log(f"skipped unreadable scan: {reason}")
    train_rows, val_rows = validation_split(
        sources["train"], config.val_split, config.seed, config.split, progress
    )
    data = _Data(sources, train_rows, val_rows)
    log(f"classes {list(labels)}; scans per split ({config.split} validation): {json.dumps(data.counts())}")
    return data


def _model_to_fit(
    config: TrainConfig, pipeline: Pipeline, strategy: Any, state: dict[str, Any] | None
) -> Any:
    """A new compiled model, or the last checkpoint (weights and optimizer state) when resuming."""
    import keras

    from tumorscan.train.losses import training_loss  # registers the loss before a checkpoint loads

    with strategy.scope():
        if state is not None:
            return keras.models.load_model(config.out / CHECKPOINTS / "last.keras")
        model = pipeline.build()
        model.compile(
            optimizer=keras.optimizers.Adam(config.lr),
            loss=training_loss(config.label_smoothing),
            metrics=["accuracy"],
        )
        return model


def _reports(
    model: Any, pipeline: Pipeline, data: _Data, audit: Any, log: RunLog
) -> dict[str, dict[str, Any]]:
    """Classification reports on validation, the test folder and its clean subset (when audited)."""
    evaluations = {"validation": ("train", data.val_rows)}
    if "test" in data.sources:
        test = data.sources["test"]
        evaluations["test"] = ("test", np.arange(len(test), dtype=np.int64))
        clean_rows = test.rows_in(audit.clean) if audit is not None else np.empty(0, dtype=np.int64)
        if len(clean_rows):
            evaluations["test (clean)"] = ("test", clean_rows)
    reports = {}
    for name, (source, rows) in evaluations.items():
        scans = data.sources[source]
        reports[name] = model_report(
            model, pipeline.dataset(source, rows, False), scans.label_ids[rows], data.labels
        )
        reports[name]["data"] = str(scans.root)
        log(f"{name} accuracy {reports[name]['accuracy']:.4f} on {len(rows)} scans")
    return reports


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextmanager
def _timed(timings: dict[str, Any], key: str) -> Iterator[None]:
    """Record the seconds the block took as `timings[key]` (not when it raises)."""
    begun = time.time()
    yield
    timings[key] = round(time.time() - begun, 2)


@dataclass
class _Run:
    """A run in progress: its settings, cluster place, checkpoint state, log and run.json record."""

    config: TrainConfig
    architecture: Architecture
    backbone: Any
    strategy: Any
    worker: Worker
    worker_out: Path | None
    """Not the chief: the run folder the chief writes (this worker's own folder is scratch)."""
    state: dict[str, Any] | None
    log: RunLog
    record: dict[str, Any]
    """What run.json holds; its "timings" are `timings`."""
    timings: dict[str, Any]
    started: float

    @property
    def checkpoints(self) -> Path:
        return self.config.out / CHECKPOINTS


def _build_backbone(config: TrainConfig, architecture: Architecture) -> Any:
    """The pretrained (or seeded random) backbone of a transfer architecture; None for the others."""
    if architecture.transfer is None:
        return None
    import keras

    from tumorscan.train.transfer import build_backbone, parse_weights

    keras.utils.set_random_seed(config.seed)  # a backbone without weights is random: make it the seed's
    return build_backbone(architecture.transfer, config.size, parse_weights(config.weights))


def _start_run(config: TrainConfig, echo: bool) -> _Run:
    """Build the backbone, join the cluster, prepare the run folder, then log and record the start."""
    from tumorscan.train.architectures import get_architecture

    architecture = get_architecture(config.arch)
    backbone = _build_backbone(config, architecture)
    strategy, worker = select_strategy(config.strategy)
    config, worker_out = worker_config(config, worker)
    prepare_output(config)
    state = share_state(strategy, worker, check_resumable(config) if config.resume else None)
    started = time.time()
    out = config.out
    log = RunLog(out / "train.log", echo=echo)
    log(
        f"{'resuming' if state else 'starting'} {config.arch}: {json.dumps(config.to_json(), sort_keys=True)}"
    )
    timings: dict[str, Any] = {}
    run: dict[str, Any] = {
        "config": config.to_json(),
        "versions": tool_versions(),
        "status": "running",
        "started": _now(),
        "strategy": {"name": config.strategy, "replicas": int(strategy.num_replicas_in_sync)},
        "timings": timings,
    }
    if state is not None:
        run["resumed_after_epoch"] = state["epoch"] + 1
    atomic_write_text(out / "run.json", json.dumps(run, indent=1))
    return _Run(
        config, architecture, backbone, strategy, worker, worker_out, state, log, run, timings, started
    )


def _audit_and_load(run: _Run, progress: bool) -> tuple[Any, Path, _Data]:
    """The audit (None when off), the feature/scan cache folder and the decoded, split data."""
    config, timings = run.config, run.timings
    audit = None
    if config.audit:
        with _timed(timings, "audit_seconds"):
            audit = _run_audit(config, run.log, progress)
    cache_dir = config.cache or default_cache_dir(config.out)
    with _timed(timings, "cache_seconds"):
        data = _load_data(config, cache_dir, run.log, progress)
    return audit, cache_dir, data


def _make_pipeline(run: _Run, data: _Data, cache_dir: Path, seed: int) -> Pipeline:
    """Seed Keras for the epochs to come and build the pixel (or backbone feature) pipeline."""
    import keras

    keras.utils.set_random_seed(seed)
    transfer = run.architecture.transfer
    if transfer is None:
        return pixel_pipeline(run.config, data.sources, seed)
    with _timed(run.timings, "feature_seconds"):
        return feature_pipeline(run.config, data.sources, seed, transfer, run.backbone, cache_dir, run.log)


def _class_weight(config: TrainConfig, data: _Data, log: RunLog) -> dict[int, float] | None:
    """Balanced class weights with --class-weights (logged), else None."""
    if not config.class_weights:
        return None
    class_weight = balanced_class_weights(data.sources["train"].label_ids[data.train_rows], len(data.labels))
    log(f"class weights: {json.dumps({data.labels[i]: round(w, 4) for i, w in class_weight.items()})}")
    return class_weight


def _fit(run: _Run, data: _Data, pipeline: Pipeline, initial_epoch: int) -> dict[str, Any]:
    """Build or resume the model and fit it, checkpointing each epoch; returns the final checkpoint state."""
    from tumorscan.train.checkpoints import RunCheckpoint

    config, strategy, worker, checkpoints = run.config, run.strategy, run.worker, run.checkpoints
    model = _model_to_fit(config, pipeline, strategy, None if worker.count > 1 else run.state)
    share_weights(strategy, worker, model, checkpoints / "last.keras" if config.resume else None)
    fix_keras_distribution(model, strategy)
    state = run.state
    if state is None:
        state = {"epoch": -1, "best": None, "best_epoch": None, "wait": 0, "history": {}}
    else:
        run.log(f"resuming after epoch {initial_epoch} from {checkpoints / 'last.keras'}")
    class_weight = _class_weight(config, data, run.log)
    checkpoints.mkdir(exist_ok=True)
    callback = RunCheckpoint(
        checkpoints, config.out, config.monitor, MONITORS[config.monitor], config.patience, state, run.log
    )
    with _timed(run.timings, "fit_seconds"):
        peers_lost(worker, model.fit)(
            distributed_dataset(
                strategy, worker, lambda shard: pipeline.dataset("train", data.train_rows, True, shard)
            ),
            validation_data=distributed_dataset(
                strategy, worker, lambda shard: pipeline.dataset("train", data.val_rows, False, shard)
            ),
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            class_weight=class_weight,
            callbacks=[callback],
            shuffle=False,  # the dataset shuffles itself, seeded
            verbose=1 if sys.stdout.isatty() else 2,
        )
    run.timings["epoch_seconds"] = [round(s, 2) for s in state["history"].get("seconds", [])]
    return state


def _provenance(
    run: _Run, data: _Data, state: dict[str, Any], reports: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The model's provenance: who trained it on what, its best epoch and accuracies."""
    config = run.config
    return {
        "trained_by": "tumor-train",
        "created": _now(),
        "config": config.to_json(),
        "seed": config.seed,
        "versions": run.record["versions"],
        "dataset": {
            "root": str(config.data),
            "fingerprint": data.sources["train"].fingerprint(),
            "counts": data.counts(),
        },
        "best_epoch": int(state["best_epoch"]) + 1,
        "monitor": {config.monitor: state["best"]},
        "accuracy": {name: report["accuracy"] for name, report in reports.items()},
    }


def _calibrate_and_save(run: _Run, data: _Data, final: Any, provenance: dict[str, Any]) -> None:
    """Calibrate the final model (trust.json, reliability.png) and save it as model.keras with its spec."""
    config, out = run.config, run.config.out
    trust = calibrate_scans(
        final, data.sources["train"], data.train_rows, data.val_rows, DEFAULT_TARGET_ACCURACY
    )
    trust.entry["fitted_on"] = split_record(
        config.data, SplitRecord(config.val_split, config.seed, config.split)
    )
    write_trust_report(trust, out)
    run.log(f"calibration: {json.dumps(trust.entry['validation'])}")
    spec = ModelSpec(
        labels=data.labels,
        input=InputSpec(*config.size, normalization=run.architecture.normalization),
        architecture=config.arch,
        provenance=provenance,
        trust=trust.entry,
    )
    with _timed(run.timings, "save_seconds"):
        save_keras(final, out / "model.keras", spec, trust.archive_entries())


def _finish(
    run: _Run,
    data: _Data,
    state: dict[str, Any],
    provenance: dict[str, Any],
    reports: dict[str, dict[str, Any]],
) -> TrainResult:
    """Record the finished run in run.json and log where its model is."""
    out, timings = run.config.out, run.timings
    timings["total_seconds"] = round(time.time() - run.started, 2)
    best_epoch, epochs_run = int(state["best_epoch"]) + 1, int(state["epoch"]) + 1
    run.record.update(
        status="finished",
        finished=_now(),
        counts=data.counts(),
        unreadable=data.unreadable(),
        epochs_run=epochs_run,
        stopped_early=bool(state.get("stopped_early")),
        best_epoch=best_epoch,
        accuracy=provenance["accuracy"],
    )
    atomic_write_text(out / "run.json", json.dumps(run.record, indent=1))
    run.log(f"saved {out / 'model.keras'} (best epoch {best_epoch}); total {timings['total_seconds']:.0f} s")
    return TrainResult(out, out / "model.keras", reports, best_epoch, epochs_run, timings)


def train(config: TrainConfig, echo: bool = True, progress: bool = True) -> TrainResult:
    """Run (or resume) a training run as described by `config`; see the module docstring for its outputs.

    Args:
        config: the run's settings.
        echo: also print log lines to stderr (they always go to train.log).
        progress: progress bars while auditing and decoding.

    Raises:
        TumorscanError: bad options, datasets, output folder or weights; the message says what to do.
    """
    require_training_stack()
    config.validate()
    run = _start_run(config, echo)
    audit, cache_dir, data = _audit_and_load(run, progress)
    initial_epoch = 0 if run.state is None else run.state["epoch"] + 1
    pipeline = _make_pipeline(run, data, cache_dir, run.config.seed + initial_epoch)
    state = _fit(run, data, pipeline, initial_epoch)
    if run.worker_out is not None:  # not the chief: the chief writes the model and reports
        shutil.rmtree(run.config.out, ignore_errors=True)
        epochs = int(state["best_epoch"]) + 1, int(state["epoch"]) + 1
        return TrainResult(run.worker_out, run.worker_out / "model.keras", {}, *epochs, run.timings)

    import keras

    best = keras.models.load_model(run.checkpoints / "best.keras", compile=False)  # model.keras: no optimizer
    reports = _reports(best, pipeline, data, audit, run.log)
    write_reports(run.config.out, reports, data.unreadable())
    provenance = _provenance(run, data, state, reports)
    _calibrate_and_save(run, data, pipeline.finalize(best), provenance)
    return _finish(run, data, state, provenance, reports)
