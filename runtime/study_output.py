"""`tumor-infer --studies`: the records of a study run as JSONL lines or one JSON document."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import click

from .classifier import Classifier, ModelIdentity, Result
from .dicom_heatmaps import write_heatmaps
from .dicom_sr import collect, write_report
from .errors import TumorscanError
from .folders import Skipped
from .studies import ScanItem, StudyOutput, study_outputs

STUDY_FORMATS = ("jsonl", "json")

__all__ = [
    "STUDY_FORMATS",
    "ScanItem",
    "Skipped",
    "StudyOutput",
    "dicom_results",
    "study_mode",
    "study_pieces",
]


def study_mode(output_format: str, studies: bool, dicom_sr: Path | None, dicom_heatmaps: bool) -> bool:
    """Whether the run groups studies (--dicom-sr implies it); usage errors for options that do not fit."""
    studies = studies or dicom_sr is not None
    if dicom_heatmaps and dicom_sr is None:
        raise click.UsageError("--dicom-heatmaps writes next to the reports: add --dicom-sr DIR.")
    if studies and output_format not in STUDY_FORMATS:
        raise click.UsageError("--studies writes JSON records: add --jsonl or --json.")
    return studies


def dicom_results(
    outputs: Sequence[StudyOutput], classifier: Classifier, dicom_sr: Path | None, dicom_heatmaps: bool
) -> list[str]:
    """Write the SRs (and heatmap images) of a study run when asked; a message per study."""
    if dicom_sr is None:
        return []
    return write_reports(outputs, classifier.identity, dicom_sr, classifier if dicom_heatmaps else None)


def write_reports(
    outputs: Sequence[StudyOutput], model: ModelIdentity, folder: Path, heatmaps: Classifier | None = None
) -> list[str]:
    """One SR per study with at least one classified slice; a message per study written or refused.

    With `heatmaps` (the classifier), also the study's heatmap images (`tumorscan.dicom_heatmaps`).
    """
    messages = []
    for results in collect(outputs):
        try:
            messages.append(f"wrote {write_report(results, model, folder)}")
            if heatmaps is not None:
                images = write_heatmaps(results, heatmaps, folder)
                messages.append(f"wrote {len(images)} heatmap images to {folder / results.study_uid}")
        except TumorscanError as exc:
            messages.append(f"error {exc.code}: {exc}")
    return messages


def study_pieces(
    classifier: Classifier,
    items: Sequence[ScanItem],
    output_format: str,
    top_k: int,
    keep_patient_ids: bool,
    done: list[Result],
    outputs: list[StudyOutput] | None = None,
) -> Iterator[str]:
    """JSONL lines as each record is known, or one JSON document at the end.

    Every slice's and loose input's result is appended to `done` (for the summary line and exit status),
    and every output to `outputs` when given (for the DICOM results written afterwards).
    """
    model = f"{classifier.identity.file}@{classifier.identity.sha256}"
    records = []
    for output in study_outputs(classifier, items, top_k, keep_patient_ids):
        if output.result is not None:
            done.append(output.result)
        if outputs is not None:
            outputs.append(output)
        record = {**output.record, "model": model}
        if output_format == "jsonl":
            yield json.dumps(record) + "\n"
        else:
            records.append(record)
    if output_format == "json":
        yield json.dumps({"model": asdict(classifier.identity), "results": records}, indent=2) + "\n"
