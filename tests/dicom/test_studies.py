"""tumor-infer --studies: DICOM files grouped by study and series, slices in order, summary records."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from click.testing import CliRunner
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian, generate_uid

from tumorscan.classifier import ModelIdentity, Prediction
from tumorscan.cli import infer_command
from tumorscan.dicom_studies import group_studies, read_header
from tumorscan.studies import verdict

LABELS = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
MODEL = ModelIdentity("m.tflite", "0" * 12, "cnn2", "fp32", "litert")


def _records(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    result = CliRunner().invoke(infer_command, [*args, "--jsonl"], catch_exceptions=False)
    return result.exit_code, [json.loads(line) for line in result.stdout.splitlines()], result.output


def _report(path: Path, study_uid: str) -> Path:
    """A Structured Report in the study: not an image."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ComprehensiveSRStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID, dataset.SOPInstanceUID = ComprehensiveSRStorage, meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, generate_uid()
    dataset.Modality = "SR"
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def two_studies(tmp_path: Path, series_writer: Callable[..., list[Path]]) -> dict[str, Any]:
    """Study A: series of 6 and 4 slices (shuffled names), an SR, a copy of one slice; study B: 3 slices."""
    study_a, study_b = generate_uid(), generate_uid()
    first = series_writer(tmp_path / "in" / "a1", study_a, 6)
    second = series_writer(tmp_path / "in" / "a2", study_a, 4)
    third = series_writer(tmp_path / "in" / "b", study_b, 3)
    _report(tmp_path / "in" / "a3" / "report.dcm", study_a)
    shutil.copy(first[0], tmp_path / "in" / "a1" / "zz_copy.dcm")
    return {"folder": tmp_path / "in", "a": study_a, "b": study_b, "series": (first, second, third)}


def test_studies_group_order_and_summarise(two_studies: dict[str, Any], tiny_tflite: Path) -> None:
    code, records, output = _records(str(two_studies["folder"]), "--studies", "--model", str(tiny_tflite))

    assert code == 0, output
    statuses = [record["status"] for record in records]
    assert statuses.count("ok") == 13 and statuses.count("skipped") == 2
    assert statuses.count("series") == 4 and statuses.count("study") == 2  # the SR has a series of its own
    assert statuses[-1] == "study" and statuses.index("study") < statuses.index("ok", 13)
    slices = [r for r in records if r["status"] == "ok"]
    for uid in {r["dicom"]["series_uid"] for r in slices}:
        numbers = [r["dicom"]["instance_number"] for r in slices if r["dicom"]["series_uid"] == uid]
        assert numbers == sorted(numbers) == list(range(1, len(numbers) + 1))
    skipped = {r["reason"]: r for r in records if r["status"] == "skipped"}
    assert set(skipped) == {"not_an_image", "duplicate_instance"}
    assert (
        "Comprehensive SR" in skipped["not_an_image"]["message"]
        or "1.2.840" in skipped["not_an_image"]["message"]
    )
    study_a = next(r for r in records if r["status"] == "study" and r["study_uid"] == two_studies["a"])
    assert (study_a["series"], study_a["slices"], study_a["classified"], study_a["skipped"]) == (3, 10, 10, 2)
    assert sum(study_a["counts"].values()) == 10  # this model cannot abstain: every slice answers
    assert study_a["label"] in LABELS and study_a["rule"] and study_a["abstain"] is False
    assert "Doe^Jane" not in output and "PAT-0042" not in output


def test_patient_ids_only_on_request(two_studies: dict[str, Any], tiny_tflite: Path) -> None:
    folder = str(two_studies["folder"])
    _, records, _ = _records(folder, "--studies", "--keep-patient-ids", "--model", str(tiny_tflite))

    study = next(r for r in records if r["status"] == "study")
    assert (study["patient_name"], study["patient_id"]) == ("Doe^Jane", "PAT-0042")


def test_studies_need_json_records(two_studies: dict[str, Any]) -> None:
    result = CliRunner().invoke(infer_command, [str(two_studies["folder"]), "--studies"])
    assert result.exit_code == 2 and "add --jsonl or --json" in result.output


def test_loose_images_come_first_and_a_bad_dicom_gets_its_error(
    two_studies: dict[str, Any], sample_test: Path, tmp_path: Path, tiny_tflite: Path
) -> None:
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 10)
    scan = next(sample_test.glob("*/*.jpg"))
    series = two_studies["series"][2]
    code, records, _ = _records(
        str(scan), str(broken), *map(str, series), "--studies", "--model", str(tiny_tflite)
    )

    assert code == 1
    assert [r["status"] for r in records] == ["ok", "error", "ok", "ok", "ok", "series", "study"]
    assert records[0]["source"] == str(scan) and "dicom" not in records[0]
    assert records[1]["error"]["code"] == "bad_image"


def test_dicomdir_and_files_without_extension(
    two_studies: dict[str, Any], tmp_path: Path, tiny_tflite: Path
) -> None:
    from pydicom.fileset import FileSet

    fileset = FileSet()
    for path in two_studies["series"][0]:
        fileset.add(path)
    fileset.write(tmp_path / "media")
    dicomdir = tmp_path / "media" / "DICOMDIR"

    _, from_dicomdir, _ = _records(str(dicomdir), "--studies", "--model", str(tiny_tflite))
    _, from_folder, _ = _records(str(tmp_path / "media"), "--studies", "--model", str(tiny_tflite))

    for records in (from_dicomdir, from_folder):
        slices = [r for r in records if r["status"] == "ok"]
        assert [r["dicom"]["instance_number"] for r in slices] == [1, 2, 3, 4, 5, 6]
        assert all(Path(r["source"]).suffix == "" for r in slices)  # the file set names files without one
        assert [r["status"] for r in records[-2:]] == ["series", "study"]


def test_order_by_position_without_instance_numbers(
    tmp_path: Path, slice_writer: Callable[..., Path]
) -> None:
    study, series = generate_uid(), generate_uid()
    positions = [20.0, -5.0, 10.0, 0.0]
    paths = [slice_writer(tmp_path / f"{i}.dcm", study, series, None, p) for i, p in enumerate(positions)]
    (group,) = group_studies(read_header(path) for path in paths)

    assert [s.position for s in group.series[0].slices] == sorted(positions)
    assert group.series[0].warnings == []


def test_series_warnings(tmp_path: Path, slice_writer: Callable[..., Path]) -> None:
    study, series = generate_uid(), generate_uid()
    numbers = [1, 2, 5, 6, 6, 9]
    paths = [slice_writer(tmp_path / f"{i}.dcm", study, series, n, float(n)) for i, n in enumerate(numbers)]
    paths.append(slice_writer(tmp_path / "sag.dcm", study, series, 10, 0.0, orientation=(0, 1, 0, 0, 0, -1)))
    (group,) = group_studies(read_header(path) for path in paths)

    warnings = group.series[0].warnings
    assert "missing_slices: instance numbers 3-4, 7-8 are absent" in warnings
    assert "repeated_instance_numbers: 1 slices repeat a number" in warnings
    assert any(w.startswith("mixed_orientation: 2 orientations") for w in warnings)


def _predictions(*labels: str, abstain: bool | None = False, confidence: float = 0.9) -> list[Prediction]:
    probabilities = MappingProxyType({label: 0.25 for label in LABELS})
    return [Prediction("s", label, confidence, probabilities, MODEL, abstain) for label in labels]


def test_study_rule() -> None:
    tumour = verdict(_predictions("no_tumor", "glioma_tumor", "glioma_tumor", "pituitary_tumor"), LABELS)
    assert (tumour.label, tumour.abstain) == ("glioma_tumor", False)
    assert tumour.rule == "glioma_tumor on 2 of 4 answered slices (at least 2 needed)"

    isolated = verdict(_predictions("no_tumor", "no_tumor", "meningioma_tumor"), LABELS)
    assert (isolated.label, isolated.abstain, isolated.reasons) == (None, True, ("isolated_tumor_slices",))

    clear = verdict(_predictions("no_tumor", "no_tumor"), LABELS)
    assert (clear.label, clear.confidence) == ("no_tumor", pytest.approx(0.9))

    single = verdict(_predictions("pituitary_tumor"), LABELS)
    assert single.label == "pituitary_tumor"  # one answered slice: one is enough

    silent = verdict(_predictions("glioma_tumor", "no_tumor", abstain=True), LABELS)
    assert (silent.label, silent.abstain, silent.reasons) == (None, True, ("no_answered_slices",))

    mixed = _predictions("glioma_tumor", "glioma_tumor", abstain=True) + _predictions("no_tumor")
    assert verdict(mixed, LABELS).label == "no_tumor"  # abstaining slices do not vote

    plurality = verdict(_predictions("a", "b", "b"), ("a", "b"))
    assert (plurality.label, plurality.rule) == ("b", "b on 2 of 3 answered slices (the most)")


def test_a_4000_slice_series_is_grouped_from_headers_alone() -> None:
    from tumorscan.dicom_studies import SliceHeader

    study, series = generate_uid(), generate_uid()
    numbers = list(range(4000, 0, -1))
    headers = [
        SliceHeader(
            Path(f"{n}.dcm"), study, series, f"1.2.3.{n}", "1.2.840.10008.5.1.4.1.1.4", True, n, float(n)
        )
        for n in numbers
    ]
    (group,) = group_studies(headers)
    assert [s.instance_number for s in group.series[0].slices] == sorted(numbers)
    assert group.series[0].warnings == []


def test_studies_as_one_json_document(two_studies: dict[str, Any], tiny_tflite: Path) -> None:
    arguments = [str(two_studies["folder"]), "--studies", "--json", "--model", str(tiny_tflite)]
    result = CliRunner().invoke(infer_command, arguments, catch_exceptions=False)
    document = json.loads(result.stdout)
    statuses = [record["status"] for record in document["results"]]
    assert document["model"]["file"] == tiny_tflite.name
    assert (statuses.count("ok"), statuses.count("series"), statuses.count("study")) == (13, 4, 2)
