"""Small tumor-infer outputs and a stand-in for tumor-infer, for the emulated Raspberry Pi check's parts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

LABELS = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
Answer = tuple[str, str, list[float]]
"""(source, top-1 label, probabilities in LABELS' order)."""

FAKE_INFER = """
import sys
from pathlib import Path

records, status = Path(sys.argv[1]), int(sys.argv[2])
sys.stdout.write(records.read_text(encoding="utf-8"))
print("tumor-infer stand-in called with", *sys.argv[3:], file=sys.stderr)
sys.exit(status)
"""
"""Run as `python FAKE RECORDS STATUS ...`: prints the RECORDS file, exits with STATUS."""


def _record(source: str, label: str, probabilities: list[float]) -> str:
    record = {
        "source": source,
        "model": "m.tflite@abc123",
        "status": "ok",
        "label": label,
        "confidence": max(probabilities),
        "probabilities": dict(zip(LABELS, probabilities, strict=True)),
    }
    return json.dumps(record) + "\n"


@pytest.fixture
def jsonl() -> Callable[..., str]:
    """tumor-infer --jsonl text of answers: jsonl(("a.png", "no_tumor", [0.1, 0.1, 0.7, 0.1]), ...)."""

    def make(*answers: Answer) -> str:
        return "".join(_record(*answer) for answer in answers)

    return make


@pytest.fixture
def fake_infer(tmp_path: Path) -> Path:
    """A script standing in for tumor-infer (see FAKE_INFER)."""
    path = tmp_path / "fake_infer.py"
    path.write_text(FAKE_INFER, encoding="utf-8")
    return path
