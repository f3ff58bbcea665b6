"""DICOM files as studies and series: headers read without pixels, grouped, slices put in order.

Rules:

1. Every DICOM input's header is read (pixels skipped). A file whose header cannot be read stays a
   loose input and gets its own error record when it is classified.
2. Files are grouped by StudyInstanceUID, then SeriesInstanceUID; studies and series keep the order in
   which their first file was given.
3. A series' slices are ordered by InstanceNumber, then by position along the slice normal (the
   projection of ImagePositionPatient on the cross product of ImageOrientationPatient's two rows),
   then by SOPInstanceUID.
4. A file without Rows (a Structured Report, RT plan, presentation state, key object selection...) is
   not an image: it is skipped with a record saying so. A second file with an SOPInstanceUID already
   seen is skipped as a duplicate (the first one is classified).
5. A series notes what may be wrong with it: missing instance numbers, repeated instance numbers,
   slices in several orientations (those are still ordered by InstanceNumber first).

Only the header fields below are kept (about 1 KB a slice, so a 4,000-slice series holds a few MB);
patient name and ID only when asked (`keep_patient_ids`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ImageError, MissingDependencyError

DICOMDIR_NAME = "DICOMDIR"
MAX_NOTED_GAPS = 5
"""Ranges of missing instance numbers named in a series' warning (the rest are counted)."""


@dataclass(frozen=True)
class SliceHeader:
    """What grouping and the records need from one DICOM file's header."""

    path: Path
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class: str
    is_image: bool
    instance_number: int | None = None
    position: float | None = None
    """Position along the slice normal (mm); None without ImagePositionPatient and ImageOrientationPatient."""
    orientation: tuple[float, ...] | None = None
    series_number: int | None = None
    modality: str = ""
    patient: tuple[str, str] | None = None
    """(name, ID), only when asked for."""

    def to_dict(self) -> dict[str, Any]:
        """The record's "dicom" field: UIDs and slice order, never patient data unless it was kept."""
        record: dict[str, Any] = {
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "sop_instance_uid": self.sop_uid,
            "sop_class_uid": self.sop_class,
            "instance_number": self.instance_number,
        }
        if self.position is not None:
            record["position"] = round(self.position, 4)
        if self.patient is not None:
            record["patient_name"], record["patient_id"] = self.patient
        return record


@dataclass
class Series:
    """One series' slices in order, its skipped files and what may be wrong with it."""

    study_uid: str
    series_uid: str
    slices: list[SliceHeader] = field(default_factory=list)
    skipped: list[tuple[SliceHeader, str]] = field(default_factory=list)
    """(header, reason code): `not_an_image` or `duplicate_instance`."""
    warnings: list[str] = field(default_factory=list)

    @property
    def first(self) -> SliceHeader:
        return (self.slices or [header for header, _ in self.skipped])[0]


@dataclass
class Study:
    """One study's series, in the order they were first given."""

    study_uid: str
    series: list[Series] = field(default_factory=list)

    @property
    def patient(self) -> tuple[str, str] | None:
        return self.series[0].first.patient if self.series else None


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError as exc:
        raise MissingDependencyError("pydicom", "dicom", "Grouping DICOM studies") from exc
    return pydicom


def _text(dataset: Any, keyword: str) -> str:
    value = dataset.get(keyword)
    return "" if value is None else str(value).strip()


def _integer(dataset: Any, keyword: str) -> int | None:
    try:
        value = dataset.get(keyword)
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _floats(dataset: Any, keyword: str, count: int) -> tuple[float, ...] | None:
    try:
        values = tuple(float(v) for v in dataset.get(keyword) or ())
    except (TypeError, ValueError):
        return None
    return values if len(values) == count and all(math.isfinite(v) for v in values) else None


def _position(dataset: Any) -> tuple[float | None, tuple[float, ...] | None]:
    """Position along the slice normal, and the orientation it was measured in."""
    orientation = _floats(dataset, "ImageOrientationPatient", 6)
    origin = _floats(dataset, "ImagePositionPatient", 3)
    if orientation is None or origin is None:
        return None, orientation
    row, column = orientation[:3], orientation[3:]
    normal = (
        row[1] * column[2] - row[2] * column[1],
        row[2] * column[0] - row[0] * column[2],
        row[0] * column[1] - row[1] * column[0],
    )
    return sum(n * o for n, o in zip(normal, origin, strict=True)), orientation


def read_header(path: Path, keep_patient_ids: bool = False) -> SliceHeader:
    """The header of one DICOM file (pixels are not read).

    Raises:
        ImageError: not a readable DICOM file, or one without study, series or instance UIDs.
        MissingDependencyError: pydicom is not installed.
    """
    pydicom = _pydicom()
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises InvalidDicomError, EOFError, struct and value errors
        raise ImageError(f"{path}: not a readable DICOM file ({exc}).") from exc
    uids = [_text(dataset, key) for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
    if not all(uids):
        raise ImageError(f"{path}: no study, series or SOP instance UID; cannot group it.")
    position, orientation = _position(dataset)
    patient = (_text(dataset, "PatientName"), _text(dataset, "PatientID")) if keep_patient_ids else None
    return SliceHeader(
        path=path,
        study_uid=uids[0],
        series_uid=uids[1],
        sop_uid=uids[2],
        sop_class=_text(dataset, "SOPClassUID"),
        is_image="Rows" in dataset and "Columns" in dataset,
        instance_number=_integer(dataset, "InstanceNumber"),
        position=position,
        orientation=orientation,
        series_number=_integer(dataset, "SeriesNumber"),
        modality=_text(dataset, "Modality"),
        patient=patient,
    )


def is_dicomdir(path: Path) -> bool:
    return path.name.upper() == DICOMDIR_NAME


def dicomdir_files(path: Path) -> list[Path]:
    """The files a DICOMDIR references, in its order.

    Raises:
        ImageError: the DICOMDIR cannot be read.
    """
    pydicom = _pydicom()
    from pydicom.fileset import FileSet

    try:
        return [Path(instance.path) for instance in FileSet(pydicom.dcmread(path))]
    except Exception as exc:  # pydicom raises many types on a malformed DICOMDIR
        raise ImageError(f"{path}: not a readable DICOMDIR ({exc}); pass its folder instead.") from exc


def _slice_key(header: SliceHeader) -> tuple[float, float, str]:
    number = math.inf if header.instance_number is None else header.instance_number
    position = math.inf if header.position is None else header.position
    return number, position, header.sop_uid


def _ranges(numbers: Sequence[int]) -> list[str]:
    text = []
    for start, end in itertools.pairwise(numbers):
        if end - start > 1:
            low, high = start + 1, end - 1
            text.append(str(low) if low == high else f"{low}-{high}")
    return text


def _series_warnings(series: Series) -> list[str]:
    """What may be wrong with a series: gaps and repeats in InstanceNumber, several orientations."""
    found = []
    numbers = [s.instance_number for s in series.slices if s.instance_number is not None]
    distinct = sorted(set(numbers))
    gaps = _ranges(distinct)
    if gaps:
        more = len(gaps) - MAX_NOTED_GAPS
        shown = ", ".join(gaps[:MAX_NOTED_GAPS]) + (f" and {more} more ranges" if more > 0 else "")
        found.append(f"missing_slices: instance numbers {shown} are absent")
    if len(distinct) < len(numbers):
        found.append(f"repeated_instance_numbers: {len(numbers) - len(distinct)} slices repeat a number")
    orientations = {tuple(round(v, 3) for v in s.orientation) for s in series.slices if s.orientation}
    if len(orientations) > 1:
        found.append(f"mixed_orientation: {len(orientations)} orientations; ordered by InstanceNumber first")
    return found


def group_studies(headers: Iterable[SliceHeader]) -> list[Study]:
    """Studies and series by the rules above: slices ordered, non-images and duplicates set aside."""
    studies: dict[str, Study] = {}
    series_by_uid: dict[tuple[str, str], Series] = {}
    seen: set[str] = set()
    for header in headers:
        key = (header.study_uid, header.series_uid)
        if key not in series_by_uid:
            series_by_uid[key] = Series(*key)
            studies.setdefault(header.study_uid, Study(header.study_uid)).series.append(series_by_uid[key])
        series = series_by_uid[key]
        if header.sop_uid in seen:
            series.skipped.append((header, "duplicate_instance"))
        elif not header.is_image:
            series.skipped.append((header, "not_an_image"))
        else:
            series.slices.append(header)
        seen.add(header.sop_uid)
    for series in series_by_uid.values():
        series.slices.sort(key=_slice_key)
        series.warnings = _series_warnings(series)
    return list(studies.values())
