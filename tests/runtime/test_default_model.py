"""Golden outputs: the packaged default model, through the runtime, matches its Keras original.

tests/data/golden.json holds the original's probabilities on the committed sample scans (written by
scripts/make_golden.py); scripts/check_golden.py compares and holds the tolerances (.ci/run runs it on a wheel
installed alone). The check runs `tumor-infer` in a fresh process, which never imports TensorFlow.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tumorscan import Classifier
from tumorscan.models import default_model_path

ROOT = Path(__file__).resolve().parents[2]


def _check_golden() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_golden", ROOT / "scripts" / "check_golden.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_golden = _check_golden()
GOLDEN = check_golden.golden_outputs()


def test_default_model_is_the_golden_models_export() -> None:
    spec = Classifier.load(default_model_path()).spec
    assert spec.source_sha256 == GOLDEN["original_sha256"]
    assert list(spec.labels) == GOLDEN["labels"]
    assert spec.quantization is not None and spec.quantization.mode == "int8"


def test_default_model_matches_the_original_on_the_sample_scans() -> None:
    samples = str(check_golden.SAMPLES)
    code = (
        "import sys\nfrom tumorscan.cli import infer_command\n"
        f"infer_command.main([{samples!r}, '--jsonl', '--top-k', '4'], standalone_mode=False)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert check_golden.compare(done.stdout, GOLDEN) == []


def test_the_comparison_catches_a_wrong_model() -> None:
    lines = []
    for scan in GOLDEN["scans"]:
        probabilities = dict(zip(GOLDEN["labels"], reversed(scan["probabilities"]), strict=True))
        source = str(check_golden.SAMPLES / scan["path"])
        label = max(probabilities, key=probabilities.__getitem__)
        record = {"source": source, "status": "ok", "label": label, "model": "default.tflite@0"}
        record.update(confidence=probabilities[label], probabilities=probabilities)
        lines.append(json.dumps(record) + "\n")
    problems = check_golden.compare("".join(lines), GOLDEN)
    assert any("label" in problem for problem in problems) and "mean" in problems[-1]
    assert "not the golden scans" in check_golden.compare("".join(lines[1:]), GOLDEN)[0]
