"""`tumor-infer`: inputs, formats, one record per input, exit codes, default model."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import tumorscan.models as models
from tumorscan.cli import expand_scan_arguments, infer_command


@pytest.fixture()
def scans(sample_test: Path, tmp_path: Path) -> Path:
    """A copy of the sample test scans plus a nested folder, a broken scan and a stray non-scan file."""
    root = tmp_path / "scans"
    shutil.copytree(sample_test, root)
    (root / "no_tumor" / "deeper").mkdir()
    shutil.copy(root / "no_tumor" / "image(1).jpg", root / "no_tumor" / "deeper" / "copy.jpg")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "README.txt").write_text("not a scan", encoding="utf-8")
    return root


def _run(*args: str) -> Result:
    return CliRunner().invoke(infer_command, list(args), catch_exceptions=False)


def test_expansion_of_files_folders_and_globs(scans: Path) -> None:
    from_folder, warnings = expand_scan_arguments([str(scans)])
    assert len(from_folder) == 10 and warnings == []
    assert from_folder == sorted(from_folder)
    assert scans / "README.txt" not in from_folder  # folders give scan files only
    from_glob, _ = expand_scan_arguments([f"{scans}/**/*.jpg", f"{scans}/glioma_tumor/image(1).jpg"])
    assert len(from_glob) == 10  # every input keeps its record: a file named twice is classified twice
    explicit, _ = expand_scan_arguments([str(scans / "README.txt"), str(scans / "absent.jpg")])
    assert len(explicit) == 2  # named files are kept, to get their own error record
    nothing, warnings = expand_scan_arguments([f"{scans}/*.bmp"])
    assert nothing == [] and warnings == [f"{scans}/*.bmp: pattern matched no files"]


def test_table_output_and_summary(tflite_int8: Path, sample_test: Path) -> None:
    result = _run(str(sample_test), "--model", str(tflite_int8))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SCAN", "LABEL", "CONFIDENCE"]
    assert len(lines) == 1 + 8 + 1
    assert "glioma_tumor/image(1).jpg" in lines[1]
    assert lines[-1].startswith("8 scans: 8 predicted, 0 failed")
    assert "tiny_int8_uint8.tflite" in lines[-1]


def test_one_record_per_input_and_exit_code_1(tflite_fp32: Path, scans: Path) -> None:
    result = _run(
        str(scans), str(scans / "README.txt"), str(scans / "absent.jpg"), "--model", str(tflite_fp32)
    )
    assert result.exit_code == 1
    rows = result.stdout.splitlines()[1:-1]
    assert len(rows) == 10 + 2
    errors = [row for row in rows if "ERROR" in row]
    assert len(errors) == 3
    assert any("broken.png" in row and "bad_image" in row for row in errors)
    assert any("README.txt" in row and "unsupported_format" in row for row in errors)
    assert "3 failed" in result.stdout.splitlines()[-1]


def test_jsonl_records(tflite_fp32: Path, scans: Path) -> None:
    result = _run(str(scans), "--model", str(tflite_fp32), "--jsonl", "--top-k", "2")
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 10
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 9
    assert len(ok[0]["top"]) == 2 and ok[0]["top"][0]["label"] == ok[0]["label"]
    assert set(ok[0]["probabilities"]) == {"glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"}
    error = next(r for r in records if r["status"] == "error")
    assert error["error"]["code"] == "bad_image" and error["source"].endswith("broken.png")
    assert all(r["model"].startswith("tiny_fp32.tflite@") for r in records)
    assert "10 scans: 9 predicted, 1 failed" in result.stderr


def test_json_document_to_a_file(onnx_model: Path, sample_test: Path, tmp_path: Path) -> None:
    output = tmp_path / "out" / "results.json"
    result = _run(str(sample_test), "--model", str(onnx_model), "--json", "--output", str(output))
    assert result.exit_code == 0
    assert result.stdout == ""
    document = json.loads(output.read_text(encoding="utf-8"))
    assert document["model"]["backend"] == "onnxruntime" and document["model"]["file"] == "tiny.onnx"
    assert len(document["results"]) == 8
    assert not list(output.parent.glob("*.partial"))


def test_csv(tflite_fp32: Path, scans: Path) -> None:
    result = _run(str(scans), "--model", str(tflite_fp32), "--csv", "--top-k", "3")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 10
    ok = next(row for row in rows if row["status"] == "ok")
    assert len(ok["top"].split(";")) == 3
    assert abs(sum(float(value) for key, value in ok.items() if key.startswith("p_")) - 1) < 1e-4
    bad = next(row for row in rows if row["status"] == "error")
    assert bad["error_code"] == "bad_image" and bad["label"] == ""


def test_progress_bar_on_request(tflite_fp32: Path, sample_test: Path) -> None:
    result = _run(str(sample_test), "--model", str(tflite_fp32), "--jsonl", "--progress")
    assert "Classifying" in result.stderr
    assert "Classifying" not in _run(str(sample_test), "--model", str(tflite_fp32), "--jsonl").stderr


def test_backend_and_threads(tflite_fp32: Path, sample_test: Path) -> None:
    result = _run(str(sample_test), "--model", str(tflite_fp32), "--backend", "litert", "--threads", "1")
    assert result.exit_code == 0
    assert _run(str(sample_test), "--model", str(tflite_fp32), "--backend", "onnxruntime").exit_code == 2


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--top-k", "0"], "--top-k"),
        (["--frobnicate"], "No such option"),
        (["{tmp}/*.png"], "no scans matched"),
        (["--model", "{tmp}/absent.tflite"], "no such model file"),
        (["--model", "{tmp}/junk.tflite"], "junk.tflite: not a valid TFLite model"),
        (["--model", "{tmp}/model.h5"], "pass a .tflite or .onnx file"),
    ],
)
def test_usage_errors_exit_2(arguments: list[str], says: str, sample_test: Path, tmp_path: Path) -> None:
    (tmp_path / "junk.tflite").write_bytes(b"not a model at all")
    (tmp_path / "model.h5").write_bytes(b"HDF")
    arguments = [a.format(tmp=tmp_path) for a in arguments]
    scans = [] if any("*" in a for a in arguments) else [str(sample_test)]
    result = CliRunner().invoke(infer_command, [*scans, *arguments])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Traceback" not in result.output


def test_untagged_model_is_a_usage_error(onnx_plain: Path, sample_test: Path) -> None:
    result = CliRunner().invoke(infer_command, [str(sample_test), "--model", str(onnx_plain)])
    assert result.exit_code == 2
    assert "tiny_plain.onnx: carries no tumorscan metadata" in result.output


def test_without_a_packaged_model_says_to_pass_one(
    sample_test: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "__file__", str(tmp_path / "__init__.py"))
    result = CliRunner().invoke(infer_command, [str(sample_test)])
    assert result.exit_code == 2
    assert "no default model is packaged" in result.output and "--model PATH" in result.output
    assert "Traceback" not in result.output


def test_default_model(
    tflite_fp32: Path, sample_test: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_package = tmp_path / "models"
    fake_package.mkdir()
    shutil.copy(tflite_fp32, fake_package / models.DEFAULT_MODEL_NAME)
    monkeypatch.setattr(models, "__file__", str(fake_package / "__init__.py"))
    assert models.default_model_path() == fake_package / "default.tflite"
    result = _run(str(sample_test), "--jsonl")
    assert result.exit_code == 0
    assert json.loads(result.stdout.splitlines()[0])["model"].startswith("default.tflite@")
