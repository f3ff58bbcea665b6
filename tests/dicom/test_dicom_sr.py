"""tumor-infer --dicom-sr: one Comprehensive SR per study, read back with pydicom and highdicom."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage, generate_uid

from tumorscan import __version__
from tumorscan.cli import infer_command


def _evaluations(group: hd.sr.MeasurementsAndQualitativeEvaluations) -> dict[str, list[str]]:
    """A group's qualitative evaluations: concept name -> the values' meanings."""
    found: dict[str, list[str]] = {}
    for evaluation in group.get_qualitative_evaluations():
        found.setdefault(evaluation.name.meaning, []).append(evaluation.value.meaning)
    return found


def _texts(item: pydicom.Dataset) -> list[tuple[str, str]]:
    """Every TEXT content item of an SR tree: (concept name meaning, text)."""
    found = []
    for child in item.get("ContentSequence", []):
        if child.ValueType == "TEXT":
            found.append((child.ConceptNameCodeSequence[0].CodeMeaning, child.TextValue))
        found += _texts(child)
    return found


@pytest.fixture
def study(tmp_path: Path, series_writer: Callable[..., list[Path]]) -> tuple[str, list[Path], list[Path]]:
    uid = generate_uid()
    return uid, series_writer(tmp_path / "in" / "t1", uid, 5), series_writer(tmp_path / "in" / "t2", uid, 3)


def test_one_report_per_study_with_every_source(
    study: tuple[str, list[Path], list[Path]], tmp_path: Path, tiny_tflite: Path
) -> None:
    uid, first, second = study
    result = CliRunner().invoke(
        infer_command,
        [str(tmp_path / "in"), "--jsonl", "--dicom-sr", str(tmp_path / "sr"), "--model", str(tiny_tflite)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    summary = next(r for r in records if r["status"] == "study")
    (path,) = (tmp_path / "sr").iterdir()
    assert path.name == f"{uid}.dcm" and f"wrote {path}" in result.stderr

    dataset = pydicom.dcmread(path)
    assert dataset.SOPClassUID == ComprehensiveSRStorage and dataset.Modality == "SR"
    assert dataset.StudyInstanceUID == uid and dataset.PatientID == "PAT-0042"  # filed with its study
    assert dataset.PatientName == "Doe^Jane" and dataset.AccessionNumber == "ACC1"
    assert dataset.SeriesInstanceUID not in {pydicom.dcmread(p).SeriesInstanceUID for p in first + second}
    evidence = dataset.CurrentRequestedProcedureEvidenceSequence[0]
    referenced = {
        item.ReferencedSOPInstanceUID
        for series in evidence.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert referenced == {pydicom.dcmread(p).SOPInstanceUID for p in first + second}

    report = hd.sr.ComprehensiveSR.from_dataset(dataset)
    groups = report.content.get_image_measurement_groups()
    assert len(groups) == 3  # the study and its two series
    assert [g.tracking_identifier for g in groups] == ["study", "series 1", "series 1"]
    evaluations = _evaluations(groups[0])
    assert groups[0].finding_type.meaning == summary["label"].replace("_", " ")
    assert evaluations == {"Abstained": ["No"]}
    (confidence,) = groups[0].get_measurements()
    assert confidence.value == pytest.approx(summary["confidence"], abs=1e-6)
    assert sorted(len(g.source_images) for g in groups[1:]) == [3, 5]
    texts = _texts(dataset)
    assert ("Algorithm Name", "tumorscan") in texts and ("Algorithm Version", __version__) in texts
    assert ("Algorithm Parameters", f"model sha256: {summary['model'].rpartition('@')[2]}") in texts


def test_an_abstaining_study_says_so_and_why(
    study: tuple[str, list[Path], list[Path]], tmp_path: Path
) -> None:
    from tumorscan.classifier import ModelIdentity, Prediction
    from tumorscan.dicom_sr import build_report, collect
    from tumorscan.dicom_studies import read_header
    from tumorscan.studies import StudyOutput

    _, first, _ = study
    model = ModelIdentity("m.tflite", "abc123abc123", "cnn2", "int8", "litert")
    outputs = []
    for path in first:
        header = read_header(path)
        prediction = Prediction(
            str(path), "no_tumor", 0.3, {"no_tumor": 1.0}, model, True, ("low_confidence",)
        )
        outputs.append(StudyOutput({}, prediction, header))
    verdict = {"label": None, "confidence": None, "abstain": True, "reasons": ["no_answered_slices"]}
    series = {
        "status": "series",
        "study_uid": header.study_uid,
        "series_uid": header.series_uid,
        "series_number": 1,
    }
    outputs.append(StudyOutput({**series, **verdict}))
    outputs.append(StudyOutput({"status": "study", "study_uid": header.study_uid, **verdict}))

    (results,) = collect(outputs)
    report = hd.sr.ComprehensiveSR.from_dataset(build_report(results, model))
    group = report.content.get_image_measurement_groups()[0]
    assert group.finding_type.meaning == "Abstained" and group.get_measurements() == []
    assert _evaluations(group) == {"Abstained": ["Yes"], "Abstention reason": ["no answered slices"]}


def test_heatmaps_as_secondary_captures_in_the_study(
    study: tuple[str, list[Path], list[Path]], tmp_path: Path, tiny_tflite: Path
) -> None:
    uid = study[0]
    arguments = [str(tmp_path / "in"), "--jsonl", "--dicom-sr", str(tmp_path / "sr"), "--dicom-heatmaps"]
    result = CliRunner().invoke(
        infer_command, [*arguments, "--model", str(tiny_tflite)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    label = next(r for r in records if r["status"] == "study")["label"]
    carrying = {
        r["dicom"]["sop_instance_uid"] for r in records if r["status"] == "ok" and r["label"] == label
    }

    images = [pydicom.dcmread(p) for p in sorted((tmp_path / "sr" / uid).iterdir())]
    assert len(images) == len(carrying) > 0
    assert f"wrote {len(images)} heatmap images" in result.stderr
    assert {str(image.SourceImageSequence[0].ReferencedSOPInstanceUID) for image in images} == carrying
    for image in images:
        assert image.SOPClassUID == SecondaryCaptureImageStorage and image.StudyInstanceUID == uid
        assert image.PatientID == "PAT-0042" and image.PatientOrientation == ["L", "P"]
        assert image.pixel_array.shape == (32, 64, 3)  # the slice beside its heatmap, at the model's size
    assert len({image.SeriesInstanceUID for image in images}) == 1


def test_heatmaps_need_reports(study: tuple[str, list[Path], list[Path]], tmp_path: Path) -> None:
    result = CliRunner().invoke(infer_command, [str(tmp_path / "in"), "--jsonl", "--dicom-heatmaps"])
    assert result.exit_code == 2 and "add --dicom-sr DIR" in result.output
