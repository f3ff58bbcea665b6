"""The tumor-export command: options in, report table out, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tumorscan.export.cli import export_command
from tumorscan.metadata import read_model_spec


def test_export_prints_the_table_and_writes_the_report(tiny_keras_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        export_command,
        [str(tiny_keras_model), "--format", "tflite", "--mode", "fp32,fp16", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "tiny-fp32.tflite" in result.stdout and "tiny-fp16.tflite" in result.stdout
    assert "Writing tflite-fp16" in result.stderr
    report = json.loads((out / "export_report.json").read_text(encoding="utf-8"))
    assert [f["target"] for f in report["files"]] == ["tflite-fp32", "tflite-fp16"]
    quantization = read_model_spec(out / "tiny-fp16.tflite").quantization
    assert quantization is not None and quantization.mode == "fp16"


def test_int8_without_calibration_is_a_clean_error(tiny_keras_model: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(export_command, [str(tiny_keras_model), "--int8", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "tflite-int8, onnx-int8 need calibration scans: pass --calibration DIR" in result.output
    assert "Traceback" not in result.output


def test_unknown_mode_lists_the_valid_ones(tiny_keras_model: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        export_command, [str(tiny_keras_model), "--mode", "int4", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "unknown mode ['int4']; choose from: fp32, fp16, dynamic, int8." in result.output


def test_fp16_for_onnx_is_an_unsupported_combination(tiny_keras_model: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        export_command, [str(tiny_keras_model), "--format", "onnx", "--mode", "fp16", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "unsupported combination onnx fp16" in result.output


def test_malformed_input_size_is_a_usage_error(tiny_keras_model: Path) -> None:
    result = CliRunner().invoke(export_command, [str(tiny_keras_model), "--input-size", "224"])
    assert result.exit_code == 2
    assert "is not HEIGHTxWIDTH" in result.output


def test_histogram_calibration_keeps_the_output_to_the_report(
    tiny_keras_model: Path, sample_train: Path, tmp_path: Path
) -> None:
    """ONNX Runtime's percentile calibrator print()s its settings; none of it reaches the command's output."""
    args = [str(tiny_keras_model), "--format", "onnx", "--int8", "--calibration", str(sample_train)]
    args += ["--calibration-method", "percentile", "--out", str(tmp_path)]
    result = CliRunner().invoke(export_command, args)
    assert result.exit_code == 0, result.output
    assert "tiny-int8.onnx" in result.stdout
    assert "Number of histogram bins" not in result.output and "Percentile :" not in result.output
    quantization = read_model_spec(tmp_path / "tiny-int8.onnx").quantization
    assert quantization is not None and quantization.calibration_method == "percentile"
