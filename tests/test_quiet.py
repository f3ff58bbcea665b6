"""Commands print no TensorFlow, absl, oneDNN or CUDA start-up lines (nor converter logs) unless --verbose."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

NOISE = re.compile(
    r"^[IWEF]\d{4} |absl::InitializeLog|oneDNN|cuInit|cuda|cpu_feature_guard|Traceback|tf2onnx|"
    r"WARNING:(tensorflow|absl)|fully_quantize|SavedModel",
    re.MULTILINE | re.IGNORECASE,
)
COMMANDS = {
    "tumor-train": "tumorscan.train.cli:train_command",
    "tumor-evaluate": "tumorscan.train.cli:evaluate_command",
    "tumor-audit": "tumorscan.train.audit_cli:audit_command",
    "tumor-export": "tumorscan.export.cli:export_command",
    "tumor-parity": "tumorscan.export.cli:parity_command",
    "tumor-bench": "tumorscan.export.bench.cli:bench_command",
    "tumor-calibrate": "tumorscan.train.calibrate_cli:calibrate_command",
    "tumor-trust": "tumorscan.train.calibrate_cli:trust_command",
    "tumor-adapt": "tumorscan.export.site_cli:adapt_command",
    "tumor-seal": "tumorscan.export.seal:seal_command",
}


def run_command(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a command in a fresh process, as its console script does, with the environment of a user."""
    module, function = COMMANDS[name].split(":")
    code = f"from {module} import {function}; {function}()"
    environment = {
        k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")
    }
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
    )


def assert_quiet(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    assert NOISE.search(done.stderr) is None, done.stderr


@pytest.fixture(scope="module")
def exports(
    tiny_keras_model: Path, sample_train: Path, sample_test: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """tumor-export of the tiny model to int8 (with --auto-float) and fp32 TFLite and ONNX, with parity."""
    out = tmp_path_factory.mktemp("quiet") / "export"
    done = run_command(
        "tumor-export", tiny_keras_model, "--int8", "--mode", "fp32", "--calibration", sample_train,
        "--parity", sample_test, "--auto-float", "--out", out,
    )  # fmt: skip
    assert_quiet(done)
    assert "Writing tflite-int8" in done.stderr and "Checking parity" in done.stderr
    return out


def test_export_is_quiet(exports: Path) -> None:
    assert (exports / "tiny-int8.tflite").is_file() and (exports / "tiny-int8.onnx").is_file()


def test_seal_is_quiet(tmp_path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "nchw",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(np.ones((3, 2), dtype=np.float32), "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    done = run_command("tumor-seal", tmp_path / "m.onnx", "--labels", "a,b", "--preprocess", "rescale")
    assert_quiet(done)
    assert (tmp_path / "m-sealed.onnx").is_file() and "integrity checked" in done.stderr


def test_verbose_shows_what_tensorflow_prints(tiny_keras_model: Path, sample_test: Path) -> None:
    done = run_command("tumor-evaluate", tiny_keras_model, "--data", sample_test, "--verbose")
    assert done.returncode == 0, done.stderr
    assert NOISE.search(done.stderr) is not None, done.stderr


@pytest.mark.slow
def test_every_other_command_is_quiet(
    tiny_keras_model: Path, exports: Path, sample_train: Path, sample_test: Path, tmp_path: Path
) -> None:
    train = ["--arch", "cnn1", "--size", "32", "--epochs", "1", "--batch-size", "8", "--no-audit"]
    assert_quiet(run_command("tumor-train", *train, "--data", sample_train, "--out", tmp_path / "run"))
    assert_quiet(run_command("tumor-evaluate", tiny_keras_model, "--data", sample_test))
    calibrated = tmp_path / "calibrated"
    assert_quiet(
        run_command("tumor-calibrate", tiny_keras_model, "--data", sample_train, "--out", calibrated)
    )
    assert_quiet(
        run_command("tumor-trust", exports / "tiny-int8.tflite", "--data", sample_test, "--out", calibrated)
    )
    assert_quiet(run_command("tumor-audit", sample_test, "--reference", sample_train))
    exported = exports / "tiny-int8.tflite"
    assert_quiet(
        run_command("tumor-parity", tiny_keras_model, exported, "--data", sample_test, "--min-agreement", "0")
    )
    bench = ["--data", sample_test, "--exports", exports, "--runs", "2", "--warmup", "0", "--cold-runs", "1"]
    assert_quiet(run_command("tumor-bench", tiny_keras_model, *bench, "--out", tmp_path / "bench"))
