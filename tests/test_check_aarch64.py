"""scripts/check-aarch64's reading and comparison of tumor-infer records, without emulation."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check-aarch64"


def load_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("check_aarch64", str(SCRIPT))
    spec = importlib.util.spec_from_loader("check_aarch64", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


def test_error_records_are_compared_not_a_crash() -> None:
    check = load_script()
    error = {"code": "bad_image", "message": "a.jpg: cannot be decoded"}
    line = json.dumps({"source": "a.jpg", "status": "error", "error": error, "model": "m.tflite@abc"})
    predictions = check.parse_predictions(line + "\n", "x86_64")
    assert predictions["a.jpg"].label == "error bad_image"
    changed = {**error, "code": "unsupported_format"}
    other = json.dumps({"source": "a.jpg", "status": "error", "error": changed, "model": "m.tflite@abc"})
    outcome = check.compare(predictions, check.parse_predictions(other, "cortex-a72"), 1e-4)
    assert outcome.problems == ["a.jpg: top-1 error unsupported_format, reference error bad_image"]
