"""tumor-evaluate: the same report for any labelled folder, and the clean subset of an audited one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tumorscan.train.audit import audit_dataset
from tumorscan.train.cli import evaluate_command


def run_evaluate(*args: str | Path) -> Result:
    return CliRunner().invoke(evaluate_command, [str(arg) for arg in args], catch_exceptions=False)


def test_report_on_a_labelled_folder(tiny_keras_model: Path, sample_test: Path, tmp_path: Path) -> None:
    result = run_evaluate(tiny_keras_model, "--data", sample_test, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "precision" in result.output and "macro avg" in result.output
    assert "accuracy (all):" in result.output and "on 8 scans" in result.output
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["reports"]["all"]["support"] == 8
    assert (tmp_path / "confusion_matrix.png").is_file() and (tmp_path / "report.txt").is_file()


def test_clean_subset_from_an_audit(
    tiny_keras_model: Path, sample_train: Path, sample_test: Path, tmp_path: Path
) -> None:
    data = tmp_path / "test"
    shutil.copytree(sample_test, data)
    shutil.copy(sample_train / "glioma_tumor" / "gg (1).jpg", data / "glioma_tumor" / "leaked.jpg")
    audit_dataset(data, reference=sample_train, progress=False).write(tmp_path / "audit")
    result = run_evaluate(tiny_keras_model, "--data", data, "--audit", tmp_path / "audit" / "audit.json")
    assert result.exit_code == 0, result.output
    assert "accuracy (all):" in result.output and "on 9 scans" in result.output
    assert "accuracy (clean):" in result.output and "on 8 scans" in result.output


def test_audit_of_another_folder_is_refused(
    tiny_keras_model: Path, sample_train: Path, sample_test: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    for label in ("glioma_tumor", "no_tumor"):
        (other / label).mkdir(parents=True)
        shutil.copy(sample_test / label / "image(1).jpg", other / label / "elsewhere.jpg")
    audit_dataset(other, reference=sample_train, near_threshold=None, progress=False).write(
        tmp_path / "audit"
    )
    result = run_evaluate(
        tiny_keras_model, "--data", sample_test, "--audit", tmp_path / "audit" / "audit.json"
    )
    assert result.exit_code == 1 and "none of its clean scans is in" in result.output


def test_classes_the_model_does_not_know(tiny_keras_model: Path, sample_test: Path, tmp_path: Path) -> None:
    data = tmp_path / "test"
    shutil.copytree(sample_test, data)
    (data / "no_tumor").rename(data / "healthy")
    result = run_evaluate(tiny_keras_model, "--data", data)
    assert result.exit_code == 1
    assert "class folders ['healthy'] are not among the model's labels" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("model", "message"),
    [("missing.keras", "no such model file"), ("notes.keras", "not a .keras archive")],
)
def test_bad_model_files(sample_test: Path, tmp_path: Path, model: str, message: str) -> None:
    (tmp_path / "notes.keras").write_text("not a zip", encoding="utf-8")
    result = run_evaluate(tmp_path / model, "--data", sample_test)
    assert result.exit_code == 1 and message in result.output


def test_model_without_spec_is_refused(sample_test: Path, tmp_path: Path) -> None:
    from tumorscan.train.architectures import build_model

    path = tmp_path / "plain.keras"
    build_model("cnn2", input_size=(32, 32)).save(path)
    result = run_evaluate(path, "--data", sample_test)
    assert result.exit_code == 1 and "holds no tumorscan spec" in result.output
