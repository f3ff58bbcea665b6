"""An emulated CPU's answers against the reference run: labels, probabilities within tolerance, every scan."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tumorscan.errors import MetadataError
from tumorscan.export.aarch64.compare import compare_run, model_tolerance, read_expectation, tolerance_of
from tumorscan.export.aarch64.host import CheckError
from tumorscan.models import default_model_path
from tumorscan.records import FLOAT_TOLERANCE, Record, RecordError, read_records

REFERENCE = (
    ("a.png", "no_tumor", [0.1, 0.1, 0.7, 0.1]),
    ("b.png", "glioma_tumor", [0.6, 0.2, 0.1, 0.1]),
    ("c.dcm", "pituitary_tumor", [0.0, 0.1, 0.2, 0.7]),
)


@pytest.fixture
def reference(jsonl: Callable[..., str]) -> dict[str, Record]:
    return read_records(jsonl(*REFERENCE), "x86_64")


def test_the_same_answers_match(reference: dict[str, Record], jsonl: Callable[..., str]) -> None:
    outcome = compare_run(reference, jsonl(*REFERENCE), "cortex-a72", FLOAT_TOLERANCE)
    assert outcome.ok and (outcome.scans, outcome.top1_agree, outcome.identical, outcome.max_diff) == (
        3,
        3,
        3,
        0.0,
    )


def test_differences_within_tolerance_match(reference: dict[str, Record], jsonl: Callable[..., str]) -> None:
    emulated = [REFERENCE[0], ("b.png", "glioma_tumor", [0.60004, 0.19996, 0.1, 0.1]), REFERENCE[2]]
    outcome = compare_run(reference, jsonl(*emulated), "cortex-a76", FLOAT_TOLERANCE)
    assert outcome.ok and (outcome.identical, outcome.max_diff) == (2, pytest.approx(4e-5))


def test_a_flipped_label_is_a_mismatch(reference: dict[str, Record], jsonl: Callable[..., str]) -> None:
    emulated = [REFERENCE[0], ("b.png", "meningioma_tumor", [0.2, 0.6, 0.1, 0.1]), REFERENCE[2]]
    outcome = compare_run(reference, jsonl(*emulated), "cortex-a72", FLOAT_TOLERANCE)
    assert outcome.problems == ["b.png: top-1 meningioma_tumor, reference glioma_tumor"]
    assert (outcome.top1_agree, outcome.ok) == (2, False)


def test_a_probability_beyond_one_output_step_is_a_mismatch(
    reference: dict, jsonl: Callable[..., str]
) -> None:
    tolerance, _ = tolerance_of({"mode": "int8", "output_dtype": "uint8", "output_scale": 1 / 256}, Path("m"))
    one_step = [
        REFERENCE[0],
        ("b.png", "glioma_tumor", [0.6 - 1 / 256, 0.2 + 1 / 256, 0.1, 0.1]),
        REFERENCE[2],
    ]
    two_steps = [
        REFERENCE[0],
        ("b.png", "glioma_tumor", [0.6 - 2 / 256, 0.2 + 2 / 256, 0.1, 0.1]),
        REFERENCE[2],
    ]

    assert compare_run(reference, jsonl(*one_step), "cortex-a72", tolerance).ok
    outcome = compare_run(reference, jsonl(*two_steps), "cortex-a72", tolerance)
    assert outcome.problems == ["b.png: probabilities differ by 0.007812, more than 0.003906"]
    assert outcome.top1_agree == 3


def test_a_missing_scan_is_a_mismatch(reference: dict[str, Record], jsonl: Callable[..., str]) -> None:
    outcome = compare_run(reference, jsonl(*REFERENCE[:2]), "cortex-a76", FLOAT_TOLERANCE)
    assert outcome.problems == ["c.dcm: missing from the emulated run"]
    assert (outcome.scans, outcome.top1_agree, outcome.ok) == (3, 2, False)


def test_output_that_is_not_records_names_the_cpu_and_line(
    reference: dict, jsonl: Callable[..., str]
) -> None:
    with pytest.raises(RecordError, match=r"^cortex-a76:2: not a tumor-infer --jsonl record"):
        compare_run(reference, jsonl(REFERENCE[0]) + "Segmentation fault\n", "cortex-a76", FLOAT_TOLERANCE)


def test_the_tolerance_follows_the_output_type() -> None:
    assert tolerance_of(None, Path("m.onnx")) == (FLOAT_TOLERANCE, "float output")
    assert tolerance_of({"mode": "fp32"}, Path("m.onnx")) == (FLOAT_TOLERANCE, "float output")
    tolerance, why = tolerance_of(
        {"mode": "int8", "output_dtype": "int8", "output_scale": 1 / 256}, Path("m")
    )
    assert tolerance == pytest.approx(1 / 256) and why == "one step of the int8 output"
    with pytest.raises(MetadataError):
        tolerance_of({"mode": "int8", "output_scale": "one step"}, Path("m.tflite"))


def test_the_packaged_model_has_float_outputs() -> None:
    """The x86 Python reads the model's quantization (results/aarch64/check-default.txt: 'float output')."""
    assert model_tolerance(Path(sys.executable), default_model_path()) == (FLOAT_TOLERANCE, "float output")


def test_an_expectation_file_is_read_or_named(tmp_path: Path, jsonl: Callable[..., str]) -> None:
    expect = tmp_path / "expected.jsonl"
    expect.write_text(jsonl(*REFERENCE), encoding="utf-8")
    assert sorted(read_expectation(expect)) == ["a.png", "b.png", "c.dcm"]

    expect.write_text(jsonl(REFERENCE[0]) + "\n{}\n", encoding="utf-8")
    with pytest.raises(RecordError, match=rf"^{expect}:3: not a tumor-infer --jsonl record"):
        read_expectation(expect)
    with pytest.raises(
        CheckError, match=r"missing.jsonl: no such expectation file; pass tumor-infer --jsonl"
    ):
        read_expectation(tmp_path / "missing.jsonl")
