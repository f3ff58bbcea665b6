"""Studies' answers: slice records in order, then one summary record per series and per study.

The rule (the same for a series and for a study, which pools the slices of all its series):

1. Only answered slices count: those classified and not abstaining (a model that cannot abstain answers
   every slice). No answered slice: the series or study abstains (`no_answered_slices`).
2. With a `no_tumor` label: the tumour label found on the most answered slices (ties: the higher mean
   confidence) is the answer when at least `MIN_TUMOR_SLICES` slices carry it (every answered slice when
   there are fewer). Tumour slices that fall short of that abstain (`isolated_tumor_slices`): a person
   should look. No tumour slice at all: `no_tumor`.
3. Without a `no_tumor` label: the label of the most answered slices (ties: the higher mean confidence).

The confidence is the mean confidence of the slices that carry the answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .classifier import Classifier, Prediction, PredictionError, Result
from .dicom_studies import (
    Series,
    SliceHeader,
    Study,
    dicomdir_files,
    group_studies,
    is_dicomdir,
    read_header,
)
from .errors import ImageError
from .folders import Skipped
from .images import DICOM_EXTENSIONS, is_dicom_file

NEGATIVE_LABEL = "no_tumor"
MIN_TUMOR_SLICES = 2

ScanItem = Path | Skipped


@dataclass(frozen=True)
class Verdict:
    """A series' or study's answer and how it was reached."""

    label: str | None
    confidence: float | None
    abstain: bool
    reasons: tuple[str, ...]
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "confidence": self.confidence,
            "abstain": self.abstain,
            "reasons": list(self.reasons),
            "rule": self.rule,
        }


def _best(answered: Sequence[Prediction], labels: Sequence[str]) -> tuple[str, list[Prediction]]:
    """The label on the most slices among `labels` (ties: higher mean confidence), and its slices."""
    by_label = {label: [p for p in answered if p.label == label] for label in labels}
    best = max(
        (label for label in labels if by_label[label]),
        key=lambda label: (len(by_label[label]), _mean(by_label[label])),
    )
    return best, by_label[best]


def _mean(predictions: Sequence[Prediction]) -> float:
    return sum(p.confidence for p in predictions) / len(predictions)


def verdict(predictions: Sequence[Prediction], labels: Sequence[str]) -> Verdict:
    """The answer for a set of slices by the rule above."""
    answered = [p for p in predictions if not p.abstain]
    if not answered:
        why = f"all {len(predictions)} classified slices abstained" if predictions else "no slice classified"
        return Verdict(None, None, True, ("no_answered_slices",), why)
    of = f"of {len(answered)} answered slices"
    if NEGATIVE_LABEL not in labels:
        label, carrying = _best(answered, labels)
        return Verdict(label, _mean(carrying), False, (), f"{label} on {len(carrying)} {of} (the most)")
    found = {p.label for p in answered}
    tumours = [label for label in labels if label != NEGATIVE_LABEL and label in found]
    if not tumours:
        rule = f"{NEGATIVE_LABEL} on all {len(answered)} answered slices"
        return Verdict(NEGATIVE_LABEL, _mean(answered), False, (), rule)
    label, carrying = _best(answered, tumours)
    needed = min(MIN_TUMOR_SLICES, len(answered))
    if len(carrying) < needed:
        rule = f"{label} on {len(carrying)} {of}, fewer than the {needed} needed"
        return Verdict(None, None, True, ("isolated_tumor_slices",), rule)
    rule = f"{label} on {len(carrying)} {of} (at least {needed} needed)"
    return Verdict(label, _mean(carrying), False, (), rule)


def _is_dicom(path: Path) -> bool:
    return path.suffix.lower() in DICOM_EXTENSIONS or is_dicom_file(path)


def plan(items: Sequence[ScanItem], keep_patient_ids: bool = False) -> tuple[list[ScanItem], list[Study]]:
    """Loose inputs (not DICOM, or DICOM whose header cannot be read) and the studies of the others.

    A DICOMDIR is replaced by the files it references.
    """
    loose: list[ScanItem] = []
    headers: list[SliceHeader] = []
    for item in items:
        paths = [item]
        if isinstance(item, Path) and is_dicomdir(item):
            try:
                paths = list(dicomdir_files(item))
            except ImageError as exc:
                loose.append(Skipped(item, exc))
                continue
        for path in paths:
            if not isinstance(path, Path) or not _is_dicom(path):
                loose.append(path)
                continue
            try:
                headers.append(read_header(path, keep_patient_ids))
            except ImageError:
                loose.append(path)  # classified on its own: the same error comes back as its record
    return loose, group_studies(headers)


def _tally(results: Sequence[Result], labels: Sequence[str]) -> dict[str, Any]:
    predictions = [r for r in results if isinstance(r, Prediction)]
    counts = Counter(p.label for p in predictions if not p.abstain)
    return {
        "classified": len(predictions),
        "failed": len(results) - len(predictions),
        "abstained": sum(1 for p in predictions if p.abstain),
        "counts": {label: counts.get(label, 0) for label in labels},
        **verdict(predictions, labels).to_dict(),
    }


def _series_record(series: Series, results: Sequence[Result], labels: Sequence[str]) -> dict[str, Any]:
    first = series.first
    return {
        "status": "series",
        "study_uid": series.study_uid,
        "series_uid": series.series_uid,
        "series_number": first.series_number,
        "modality": first.modality,
        "slices": len(series.slices),
        "skipped": len(series.skipped),
        **_tally(results, labels),
        "warnings": list(series.warnings),
    }


def _study_record(study: Study, results: Sequence[Result], labels: Sequence[str]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "status": "study",
        "study_uid": study.study_uid,
        "series": len(study.series),
        "slices": sum(len(series.slices) for series in study.series),
        "skipped": sum(len(series.skipped) for series in study.series),
        **_tally(results, labels),
    }
    if study.patient is not None:
        record["patient_name"], record["patient_id"] = study.patient
    return record


def _skipped_record(header: SliceHeader, reason: str) -> dict[str, Any]:
    what = "not an image" if reason == "not_an_image" else "a copy of an instance already given"
    message = f"{header.path}: {what} (SOP class {header.sop_class or 'unknown'}); skipped."
    record = {"source": str(header.path), "status": "skipped", "reason": reason, "message": message}
    return {**record, "dicom": header.to_dict()}


@dataclass(frozen=True)
class StudyOutput:
    """One record of a study run, with the slice's or loose input's result (None for the others)."""

    record: dict[str, Any]
    result: Result | None = None
    header: SliceHeader | None = None


def study_outputs(
    classifier: Classifier, items: Sequence[ScanItem], top_k: int, keep_patient_ids: bool = False
) -> Iterator[StudyOutput]:
    """Loose inputs' records, then per study: its slices in order, its skipped files, its series, itself."""
    loose, studies = plan(items, keep_patient_ids)
    paths = [item for item in loose if isinstance(item, Path)]
    paths += [header.path for study in studies for series in study.series for header in series.slices]
    predictions = classifier.iter_predictions(paths)
    labels = classifier.labels
    for item in loose:
        result = next(predictions) if isinstance(item, Path) else _skipped_error(item)
        yield StudyOutput(result.to_dict(top_k), result)
    for study in studies:
        study_results: list[Result] = []
        per_series: list[list[Result]] = []
        for series in study.series:
            per_series.append([])
            for header in series.slices:
                result = next(predictions)
                per_series[-1].append(result)
                yield StudyOutput({**result.to_dict(top_k), "dicom": header.to_dict()}, result, header)
            for header, reason in series.skipped:
                yield StudyOutput(_skipped_record(header, reason), None, header)
            study_results += per_series[-1]
        for series, results in zip(study.series, per_series, strict=True):
            yield StudyOutput(_series_record(series, results, labels))
        yield StudyOutput(_study_record(study, study_results, labels))


def _skipped_error(item: Skipped) -> PredictionError:
    return PredictionError(str(item.path), item.error.code, str(item.error))
