"""Evaluating a saved model on any labelled folder: the full folder and, with an audit, its clean subset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tumorscan.errors import DatasetError, ModelError
from tumorscan.spec import ModelSpec
from tumorscan.train.data import load_dataset, make_dataset
from tumorscan.train.keras_file import load_keras, require_keras_spec
from tumorscan.train.reporting import model_report, write_reports
from tumorscan.train.run_config import require_training_stack


@dataclass(frozen=True)
class Evaluation:
    """Reports by name ("all", and "clean" with an audit) and the scans that could not be read."""

    spec: ModelSpec
    reports: dict[str, dict[str, Any]]
    unreadable: tuple[tuple[Path, str], ...]


def evaluate_model(
    model_path: Path,
    data: Path,
    audit: Path | None = None,
    out: Path | None = None,
    batch_size: int = 32,
    cache: Path | None = None,
    progress: bool = True,
) -> Evaluation:
    """Classification report of a `.keras` model (saved with its spec) on a class-folder dataset.

    Args:
        model_path: a `.keras` file holding a tumorscan spec (labels, input size).
        data: folder with one sub-folder per class, each a label the model knows.
        audit: audit.json of `data` against the training folder (tumor-audit); adds the clean subset.
        out: write report.json, report.txt and confusion_matrix.png here.
        batch_size: scans per prediction batch.
        cache: on-disk pixel cache folder; None decodes into memory.
        progress: progress bar while decoding.

    Raises:
        ModelError: the model is missing, unsafe or has no spec.
        DatasetError: the folder is missing, empty, has classes the model does not know, or does not
            match the audit.
    """
    require_training_stack()
    if not model_path.is_file():
        raise ModelError(f"{model_path}: no such model file.")
    spec = require_keras_spec(
        model_path, "train it with tumor-train or save it with tumorscan.train.keras_file.save_keras."
    )
    model = load_keras(model_path)
    scans = load_dataset(data, spec.input.size, cache, labels=spec.labels, progress=progress)
    subsets = {"all": np.arange(len(scans), dtype=np.int64)}
    if audit is not None:
        from tumorscan.train.audit import load_clean_subset

        clean = scans.rows_in(load_clean_subset(audit))
        if not len(clean):
            raise DatasetError(
                f"{audit}: none of its clean scans is in {data}; pass the audit of this folder."
            )
        subsets["clean"] = clean
    reports = {}
    for name, rows in subsets.items():
        dataset = make_dataset(scans, rows, batch_size)
        reports[name] = model_report(model, dataset, scans.label_ids[rows], spec.labels)
        reports[name]["data"] = str(data)
    if out is not None:
        unreadable = [{"path": str(path), "reason": reason} for path, reason in scans.unreadable]
        write_reports(out, reports, {"data": unreadable})
    return Evaluation(spec, reports, scans.unreadable)
