"""The runtime stays light: no TensorFlow or Keras, and backends are imported only when a model needs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("tensorflow", "keras", "tf2onnx", "onnx", "jax", "torch")


def _imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_import_loads_no_backend() -> None:
    modules = _imported_after("import tumorscan, tumorscan.cli\nfrom tumorscan import Classifier")
    assert not modules & {*HEAVY, "ai_edge_litert", "onnxruntime", "pydicom"}


def test_tflite_inference_never_imports_tensorflow(tflite_int8: Path, sample_test: Path) -> None:
    run = (
        "from tumorscan.cli import infer_command\n"
        f"arguments = [{str(sample_test)!r}, '--model', {str(tflite_int8)!r}, '--jsonl']\n"
        "infer_command.main(arguments, standalone_mode=False)"
    )
    modules = _imported_after(run)
    assert "ai_edge_litert" in modules
    assert not modules & {*HEAVY, "onnxruntime"}


def test_onnx_inference_never_imports_tensorflow(onnx_model: Path, sample_test: Path) -> None:
    scan = sorted(sample_test.rglob("*.jpg"))[0]
    run = f"from tumorscan import Classifier\nClassifier.load({str(onnx_model)!r}).predict({str(scan)!r})"
    modules = _imported_after(run)
    assert "onnxruntime" in modules
    assert not modules & {*HEAVY, "ai_edge_litert"}


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("tumor-infer")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=True)
    assert "--model" in done.stdout and "--jsonl" in done.stdout


def test_module_runs_as_tumor_infer(tflite_int8: Path, sample_test: Path) -> None:
    scan = sorted(sample_test.rglob("*.jpg"))[0]
    done = subprocess.run(
        [sys.executable, "-m", "tumorscan", str(scan), "--model", str(tflite_int8), "--jsonl"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    record = json.loads(done.stdout.splitlines()[-1])
    assert record["status"] == "ok" and record["source"] == str(scan)
