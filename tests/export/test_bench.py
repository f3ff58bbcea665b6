"""tumor-bench: every format measured in its own process, results in a table, bench.json and bench.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tumorscan.export.bench.cli import bench_command
from tumorscan.export.bench.ratios import compute_ratios
from tumorscan.export.bench.report import (
    ColdStart,
    FormatResult,
    ModelBench,
    Timing,
    format_bench,
)
from tumorscan.export.bench.run import BENCH_FORMATS, BenchOptions, _notes, run_bench
from tumorscan.export.exporter import ExportReport
from tumorscan.spec import DEFAULT_LABELS as LABELS

FP32_FORMATS = ("keras", "tflite-fp32", "onnx-fp32")


@pytest.fixture(scope="module")
def exports_folder(exported: ExportReport) -> Path:
    """The folder tumor-export wrote every format of the tiny model into."""
    return Path(exported.files[0].path).parent


@pytest.fixture(scope="module")
def bench_run(
    tiny_keras_model: Path, exports_folder: Path, sample_test: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, Path, dict[str, Any]]:
    """tumor-bench on the tiny model and all its exports, no cold starts: CLI result, --out, bench.json."""
    out = tmp_path_factory.mktemp("bench")
    arguments = [str(tiny_keras_model), "--data", str(sample_test), "--exports", str(exports_folder)]
    arguments += ["--runs", "3", "--warmup", "1", "--batch-size", "4", "--cold-runs", "0", "--out", str(out)]
    arguments += ["--baseline", str(exports_folder)]  # the same files again, as if all-int8 ones
    result = CliRunner().invoke(bench_command, arguments)
    assert result.exit_code == 0, result.output
    return result, out, json.loads((out / "bench.json").read_text(encoding="utf-8"))


def test_every_format_is_measured_with_positive_numbers(bench_run: tuple[Any, Path, dict[str, Any]]) -> None:
    _, _, report = bench_run
    (model,) = report["models"]
    rows = {row["format"]: row for row in model["formats"]}
    baselines = [f"{name} baseline" for name in BENCH_FORMATS if name.endswith("-int8")]
    assert list(rows) == [*BENCH_FORMATS, *baselines]
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["error"])
        for key in ("size_bytes", "load_s", "throughput", "peak_rss_mb"):
            assert row[key] > 0, (name, key)
        for key in ("latency_ms", "e2e_ms"):
            assert 0 < row[key]["median"] <= row[key]["p90"], (name, key)
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["agreement"] <= 1, name
    for name in FP32_FORMATS:
        assert rows[name]["agreement"] == 1.0, name
    assert model["scans"] == 8 and model["cold_start"] == {}
    for name, row in rows.items():
        if name == "keras":
            assert row["pipeline"] is None
            continue
        speed = row["pipeline"]
        assert speed["scans"] == 8, name
        for key in ("bare_ms", "e2e_ms", "e2e_full_decode_ms"):
            assert 0 < speed[key]["median"] <= speed[key]["p90"], (name, key)
        decoding = speed["decode_ms"]
        assert list(decoding) == ["rule", "full", "any_scale", "reduce"], name
        assert decoding["rule"]["same_pixels"] == 1.0 and all(way["median"] > 0 for way in decoding.values())
        assert all(speed[key] > 0 for key in ("bare_calls_s", "serial_s", "pipeline_s")), name
    for baseline in baselines:
        assert rows[baseline]["accuracy"] == rows[baseline.removesuffix(" baseline")]["accuracy"]


def test_runtime_processes_never_import_tensorflow(bench_run: tuple[Any, Path, dict[str, Any]]) -> None:
    _, _, report = bench_run
    rows = {row["format"]: row for row in report["models"][0]["formats"]}
    assert rows["keras"]["tensorflow_imported"] is True
    for name in BENCH_FORMATS[1:]:
        assert rows[name]["tensorflow_imported"] is False, name
        assert rows[name]["backend"] in ("litert", "tflite-runtime", "onnxruntime")
    # Each process's own peak: the runtime's is not inflated by the (TensorFlow-sized) parent.
    assert rows["tflite-int8"]["peak_rss_mb"] < rows["keras"]["peak_rss_mb"]


def test_outputs_are_written(bench_run: tuple[Any, Path, dict[str, Any]]) -> None:
    result, out, report = bench_run
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "bench.txt").read_text(encoding="utf-8") == result.stdout
    assert {"cpu", "cores", "python", "packages", "date_utc"} <= set(report["machine"])
    assert report["settings"]["runs"] == 3
    for name in BENCH_FORMATS:
        assert name in result.stdout
    ratios = {ratio["name"]: ratio for ratio in report["models"][0]["ratios"]}
    assert ratios["tflite_int8_size_share"]["value"] > 0
    assert ratios["infer_cold_start_s"]["passed"] is None  # cold starts skipped
    assert "Wrote" in result.stderr


def test_missing_exports_are_rows_not_errors(
    tiny_keras_model: Path, sample_test: Path, tmp_path: Path
) -> None:
    options = BenchOptions(
        data=sample_test, exports=tmp_path, formats=("tflite-int8", "onnx-int8"), runs=1, warmup=0
    )
    (model,) = run_bench([tiny_keras_model], options).models
    assert [(row.format, row.status) for row in model.formats] == [
        ("tflite-int8", "not exported"),
        ("onnx-int8", "not exported"),
    ]
    assert model.formats[0].file == str(tmp_path / "tiny-int8.tflite")
    assert model.cold_start == {}
    assert any("tumor-export" in note for note in model.notes)
    assert "not exported" in format_bench(run_bench([tiny_keras_model], options))


def test_broken_file_is_a_failed_row(tiny_keras_model: Path, sample_test: Path, tmp_path: Path) -> None:
    (tmp_path / "tiny-int8.tflite").write_bytes(b"not a model")
    options = BenchOptions(data=sample_test, exports=tmp_path, formats=("tflite-int8",), runs=1, warmup=0)
    (row,) = run_bench([tiny_keras_model], options).models[0].formats
    assert row.status == "failed"
    assert "tiny-int8.tflite" in str(row.error)


def test_exports_of_another_model_are_flagged(tiny_keras_model: Path, tmp_path: Path) -> None:
    stale = FormatResult("tflite-int8", str(tmp_path / "tiny-int8.tflite"), "ok", source_sha256="0" * 64)
    (note,) = _notes(tiny_keras_model, tmp_path, [stale])
    assert "tiny-int8.tflite was exported from another model (sha256 000000000000" in note


def test_tumor_infer_cold_start(tiny_keras_model: Path, exports_folder: Path, sample_test: Path) -> None:
    options = BenchOptions(
        data=sample_test, exports=exports_folder, formats=("tflite-int8",), runs=1, warmup=0, cold_runs=1
    )
    model = run_bench([tiny_keras_model], options).models[0]
    cold = model.cold_start["tumor-infer"]
    assert cold.error is None, cold.error
    assert len(cold.seconds) == 1 and cold.median_s and cold.median_s > 0
    assert cold.label in LABELS
    assert "--model" in cold.command and str(exports_folder / "tiny-int8.tflite") in cold.command


@pytest.mark.slow
def test_keras_cold_start(tiny_keras_model: Path, exports_folder: Path, sample_test: Path) -> None:
    options = BenchOptions(
        data=sample_test,
        exports=exports_folder,
        formats=("keras", "tflite-fp32"),
        runs=1,
        warmup=0,
        cold_runs=1,
    )
    model = run_bench([tiny_keras_model], options).models[0]
    infer, keras = model.cold_start["tumor-infer"], model.cold_start["keras"]
    assert keras.error is None and infer.error is None, (keras.error, infer.error)
    assert keras.label == infer.label and keras.label in LABELS
    ratios = {ratio.name: ratio for ratio in model.ratios}
    assert ratios["keras_over_infer_cold_start"].value is not None


def test_unknown_format_is_a_clean_error(tiny_keras_model: Path, sample_test: Path) -> None:
    arguments = [str(tiny_keras_model), "--data", str(sample_test), "--formats", "keras,tflite-int9"]
    result = CliRunner().invoke(bench_command, arguments)
    assert result.exit_code == 1
    assert "tflite-int9" in result.output and "Traceback" not in result.output


def _row(name: str, latency: float, size: int, **fields: Any) -> FormatResult:
    timing = Timing(latency, latency)
    return FormatResult(name, name, "ok", size_bytes=size, latency_ms=timing, e2e_ms=timing, **fields)


PIPELINE = {
    "bare_ms": {"median": 1.0, "p90": 1.0},
    "e2e_ms": {"median": 1.5, "p90": 1.5},
    "e2e_full_decode_ms": {"median": 3.0, "p90": 3.0},
    "scans": 10,
    "bare_calls_s": 0.5,
    "serial_s": 2.0,
    "pipeline_s": 0.6,
}


def test_ratios_against_targets() -> None:
    bench = ModelBench(
        model="m.keras",
        architecture="cnn2",
        input_size=(32, 32),
        data="test",
        scans=10,
        unreadable=0,
        formats=(
            _row("keras", 10.0, 1000, accuracy=0.90),
            _row("tflite-int8", 1.0, 300, accuracy=0.895, peak_rss_mb=80.0, pipeline=PIPELINE),
            _row("onnx-fp32", 3.0, 1000),
            _row("onnx-int8", 2.0, 300),
            _row("onnx-int8 baseline", 2.5, 300),
        ),
        cold_start={
            "tumor-infer": ColdStart("tumor-infer", "m-int8.tflite", [], [0.3], 0.3, "no_tumor"),
            "keras": ColdStart("keras", "m.keras", [], [6.0], 6.0, "no_tumor"),
        },
    )
    ratios = {ratio.name: ratio for ratio in compute_ratios(bench)}
    expected = {
        "keras_over_tflite_int8_latency": (10.0, True),
        "tflite_int8_size_share": (30.0, False),
        "onnx_fp32_over_int8_latency": (1.5, False),
        "tflite_int8_e2e_over_bare": (1.0, True),
        "keras_over_infer_cold_start": (20.0, True),
        "infer_cold_start_s": (0.3, True),
        "tflite_int8_peak_rss_mb": (80.0, True),
        "tflite_int8_accuracy_drop_points": (0.5, True),
        "tflite_int8_e2e_over_bare_now": (1.5, True),
        "tflite_int8_e2e_full_decode_over_bare": (3.0, False),
        "tflite_int8_predict_many_over_bare": (1.2, True),
        "tflite_int8_serial_over_bare": (4.0, False),
        "onnx_fp32_over_baseline_int8_latency": (1.2, False),
    }
    assert {name: (pytest.approx(r.value), r.passed) for name, r in ratios.items()} == expected
    without_int8 = compute_ratios(ModelBench(**{**bench.__dict__, "formats": bench.formats[:1]}))
    assert without_int8[0].value is None and without_int8[0].passed is None
