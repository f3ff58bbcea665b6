"""Results as DICOM: one Comprehensive SR (TID 1500 Measurement Report) per study, with highdicom.

The report holds one measurement group (TID 1501) for the study and one per series. Each group carries:

- Finding (DCM 121071): the answer's label, or "Abstained" (codes of the local scheme `99TUMORSCAN`);
- Confidence (`99TUMORSCAN` CONFIDENCE, unit UCUM "1"), when there is an answer;
- Abstained (`99TUMORSCAN` ABSTAINED): Yes or No (SNOMED CT), and one Abstention reason per reason;
- Algorithm identification (TID 4019): "tumorscan", its version, the model file, sha256, architecture
  and quantization as parameters;
- a series group: its source images (every classified slice of the series).

The SR copies the patient and study modules of its source instances (highdicom does, from the evidence),
lists every source instance in the Current Requested Procedure Evidence Sequence, and gets a new series
in the same study. highdicom validates the content as it builds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._version import __version__
from .classifier import ModelIdentity, Prediction
from .errors import MissingDependencyError, TumorscanError
from .files import atomic_writer
from .studies import StudyOutput

SCHEME = "99TUMORSCAN"
SR_SERIES_NUMBER = 9901
SR_SERIES_DESCRIPTION = "tumorscan classification"
TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)
"""Patient and General Study attributes an SR must carry (Type 2: empty when the source lacks them)."""


class ReportError(TumorscanError):
    """A study's Structured Report could not be built or written."""

    code = "bad_report"


@dataclass
class StudyResults:
    """One study's slices (header, result), series records and study record, from a study run."""

    study_uid: str
    slices: dict[str, list[StudyOutput]] = field(default_factory=dict)
    series: list[dict[str, Any]] = field(default_factory=list)
    study: dict[str, Any] = field(default_factory=dict)


def collect(outputs: Sequence[StudyOutput]) -> list[StudyResults]:
    """The outputs of `study_outputs`, per study (loose inputs and skipped files left out)."""
    studies: dict[str, StudyResults] = {}
    for output in outputs:
        record = output.record
        if output.header is not None and isinstance(output.result, Prediction):
            header = output.header
            results = studies.setdefault(header.study_uid, StudyResults(header.study_uid))
            results.slices.setdefault(header.series_uid, []).append(output)
        elif record.get("status") == "series" and record["study_uid"] in studies:
            studies[record["study_uid"]].series.append(record)
        elif record.get("status") == "study" and record["study_uid"] in studies:
            studies[record["study_uid"]].study = record
    return list(studies.values())


def _hd() -> Any:
    try:
        import highdicom
    except ImportError as exc:
        raise MissingDependencyError("highdicom", "dicom", "Writing DICOM Structured Reports") from exc
    return highdicom


def _code(value: str, meaning: str | None = None) -> Any:
    from pydicom.sr.coding import Code

    return Code(value[:16], SCHEME, meaning or value.replace("_", " "))


def _evaluations(record: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """(qualitative evaluations, measurements) of one series or study record."""
    hd = _hd()
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    qualitative = []
    abstained = codes.SCT.Yes if record["abstain"] else codes.SCT.No
    qualitative.append(hd.sr.QualitativeEvaluation(_code("ABSTAINED", "Abstained"), abstained))
    for reason in record["reasons"]:
        qualitative.append(hd.sr.QualitativeEvaluation(_code("REASON", "Abstention reason"), _code(reason)))
    measurements = []
    if record["confidence"] is not None:
        confidence = hd.sr.Measurement(
            name=_code("CONFIDENCE", "Confidence"),
            value=round(float(record["confidence"]), 6),
            unit=Code("1", "UCUM", "no units"),
        )
        measurements.append(confidence)
    return qualitative, measurements


def _algorithm(model: ModelIdentity) -> Any:
    parameters = [
        f"model file: {model.file}",
        f"model sha256: {model.sha256}",
        f"architecture: {model.architecture}",
        f"quantization: {model.quantization}",
    ]
    return _hd().sr.AlgorithmIdentification(name="tumorscan", version=__version__, parameters=parameters)


def _group(record: dict[str, Any], model: ModelIdentity, identifier: str, sources: Sequence[Any]) -> Any:
    hd = _hd()
    qualitative, measurements = _evaluations(record)
    finding = _code(record["label"]) if record["label"] else _code("ABSTAINED", "Abstained")
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=identifier),
        finding_type=finding,
        algorithm_id=_algorithm(model),
        qualitative_evaluations=qualitative,
        measurements=measurements or None,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(s) for s in sources] or None,
    )


def source_dataset(output: StudyOutput) -> Any:
    """A slice's header read again (pixels skipped), with the Type 2 patient and study attributes."""
    import pydicom

    assert output.header is not None
    try:
        dataset = pydicom.dcmread(output.header.path, stop_before_pixels=True)
    except Exception as exc:  # changed or removed since it was classified
        raise ReportError(f"{output.header.path}: cannot read the source again ({exc}).") from exc
    for keyword in TYPE2_COPIED:
        if keyword not in dataset:
            setattr(dataset, keyword, "")
    return dataset


def build_report(results: StudyResults, model: ModelIdentity) -> Any:
    """The Comprehensive SR of one study (a pydicom Dataset, validated by highdicom)."""
    hd = _hd()
    from pydicom.sr.codedict import codes

    sources = {uid: [source_dataset(output) for output in outputs] for uid, outputs in results.slices.items()}
    groups = [_group(results.study, model, "study", [])]
    for record in results.series:
        series_sources = sources.get(record["series_uid"], [])
        groups.append(_group(record, model, f"series {record['series_number']}", series_sources))
    device = hd.sr.DeviceObserverIdentifyingAttributes(uid=hd.UID(), name="tumorscan")
    observer = hd.sr.ObserverContext(observer_type=codes.DCM.Device, observer_identifying_attributes=device)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=groups,
    )
    evidence = [dataset for datasets in sources.values() for dataset in datasets]
    return hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=report,
        series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="tumorscan",
        series_description=SR_SERIES_DESCRIPTION,
        is_complete=True,
    )


def write_report(results: StudyResults, model: ModelIdentity, folder: Path) -> Path:
    """Build and write one study's SR as FOLDER/<StudyInstanceUID>.dcm (atomically).

    Raises:
        ReportError: highdicom refused the content, or a source could not be read again.
        TumorscanError: the file could not be written.
    """
    try:
        report = build_report(results, model)
    except (TumorscanError, MemoryError):
        raise
    except Exception as exc:  # highdicom raises ValueError/TypeError/AttributeError on invalid content
        raise ReportError(f"study {results.study_uid}: cannot build its Structured Report ({exc}).") from exc
    path = folder / f"{results.study_uid}.dcm"
    with atomic_writer(path) as stream:
        report.save_as(stream, enforce_file_format=True)
    return path
