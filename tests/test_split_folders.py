"""A dataset root holding its splits (Training/Testing) is refused wherever a labelled folder is expected."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tumorscan.export.bench.cli import bench_command
from tumorscan.export.cli import export_command, parity_command
from tumorscan.train.audit_cli import audit_command
from tumorscan.train.cli import evaluate_command, train_command


@pytest.fixture(scope="module")
def dataset_root(sample_train: Path, sample_test: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset root laid out like the real one: Training/ and Testing/ class folders."""
    root = tmp_path_factory.mktemp("dataset") / "brain-tumor-mri"
    shutil.copytree(sample_train, root / "Training")
    shutil.copytree(sample_test, root / "Testing")
    return root


def _refused(command: click.Command, args: list[str | Path], root: Path) -> None:
    result = CliRunner().invoke(command, [str(arg) for arg in args])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"Error: {root}: its sub-folders are dataset splits, not classes"), lines[0]
    assert f"{root / 'Training'} (training)" in lines[0] and f"{root / 'Testing'} (testing)" in lines[0]


def test_train_refuses_a_dataset_root_as_data_or_test(
    dataset_root: Path, sample_train: Path, tmp_path: Path
) -> None:
    common = ["--arch", "cnn1", "--size", "32", "--epochs", "1", "--no-audit"]
    _refused(train_command, [*common, "--data", dataset_root, "--out", tmp_path / "a"], dataset_root)
    test_args = ["--data", sample_train, "--test", dataset_root, "--out", tmp_path / "b"]
    _refused(train_command, [*common, *test_args], dataset_root)


def test_evaluate_audit_parity_and_bench_refuse_a_dataset_root(
    dataset_root: Path, tiny_keras_model: Path, tmp_path: Path
) -> None:
    _refused(evaluate_command, [tiny_keras_model, "--data", dataset_root], dataset_root)
    _refused(audit_command, [dataset_root], dataset_root)
    exported = tmp_path / "tiny-fp32.tflite"
    export = [tiny_keras_model, "--out", tmp_path, "--format", "tflite"]
    assert CliRunner().invoke(export_command, [str(arg) for arg in export]).exit_code == 0
    _refused(parity_command, [tiny_keras_model, exported, "--data", dataset_root], dataset_root)
    _refused(bench_command, [tiny_keras_model, "--data", dataset_root, "--exports", tmp_path], dataset_root)


def test_export_refuses_a_dataset_root_for_calibration_or_parity(
    dataset_root: Path, tiny_keras_model: Path, tmp_path: Path
) -> None:
    export = [tiny_keras_model, "--out", tmp_path, "--format", "tflite"]
    _refused(export_command, [*export, "--int8", "--calibration", dataset_root], dataset_root)
    _refused(export_command, [*export, "--parity", dataset_root], dataset_root)
