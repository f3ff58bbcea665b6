"""tumor-infer's records read back into the runtime's types and compared, as scripts/check_aarch64.py does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tumorscan.classifier import Prediction, PredictionError
from tumorscan.cli import infer_command
from tumorscan.records import (
    FLOAT_TOLERANCE,
    RecordError,
    compare_records,
    output_tolerance,
    read_records,
)
from tumorscan.sections import QuantizationSpec

LABELS = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")


def _line(source: str, **fields: object) -> str:
    return json.dumps({"source": source, "model": "m.tflite@abc123", **fields}) + "\n"


def _ok(source: str, label: str, probabilities: list[float]) -> str:
    mapping = dict(zip(LABELS, probabilities, strict=True))
    return _line(source, status="ok", label=label, confidence=max(probabilities), probabilities=mapping)


def _error(source: str, code: str) -> str:
    return _line(source, status="error", error={"code": code, "message": f"{source}: cannot be read"})


def test_tumor_infer_output_reads_back_as_runtime_results(
    tflite_int8: Path, sample_test: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    result = CliRunner().invoke(
        infer_command, ["--jsonl", "--model", str(tflite_int8), str(sample_test), str(broken)]
    )
    assert result.exit_code == 1
    records = read_records(result.stdout, "run")
    assert len(records) == 9
    error = records[str(broken)]
    assert isinstance(error.result, PredictionError) and error.outcome == "error unsupported_format"
    predictions = [r.result for r in records.values() if isinstance(r.result, Prediction)]
    assert len(predictions) == 8
    assert all(tuple(p.probabilities) == LABELS and p.label in LABELS for p in predictions)
    assert {r.model_file for r in records.values()} == {tflite_int8.name}
    assert compare_records(records, records, 0.0).ok


def test_error_records_are_compared_not_a_crash() -> None:
    reference = read_records(_error("a.jpg", "bad_image"), "x86_64")
    found = read_records(_error("a.jpg", "unsupported_format"), "cortex-a72")
    outcome = compare_records(reference, found, FLOAT_TOLERANCE)
    assert outcome.problems == ["a.jpg: top-1 error unsupported_format, reference error bad_image"]
    assert compare_records(reference, reference, FLOAT_TOLERANCE).top1_agree == 1


def test_comparison_counts_agreement_and_names_each_problem() -> None:
    reference = read_records(
        _ok("a", "no_tumor", [0.1, 0.1, 0.7, 0.1]) + _ok("b", "glioma_tumor", [0.6, 0.2, 0.1, 0.1])
        + _ok("c", "glioma_tumor", [0.5, 0.3, 0.1, 0.1]) + _ok("d", "no_tumor", [0.1, 0.1, 0.8, 0.0]),
        "x86_64",
    )  # fmt: skip
    found = read_records(
        _ok("a", "no_tumor", [0.1, 0.1, 0.7, 0.1]) + _ok("b", "glioma_tumor", [0.6, 0.2, 0.15, 0.05])
        + _ok("c", "meningioma_tumor", [0.3, 0.5, 0.1, 0.1]) + _ok("e", "no_tumor", [0, 0, 1, 0]),
        "cortex-a76",
    )  # fmt: skip
    outcome = compare_records(reference, found, 0.01)
    assert (outcome.scans, outcome.top1_agree, outcome.identical) == (4, 2, 1)
    assert outcome.max_diff == pytest.approx(0.05)
    assert outcome.problems == [
        "d: missing from the emulated run",
        "e: not in the reference",
        "b: probabilities differ by 0.050000, more than 0.010000",
        "c: top-1 meningioma_tumor, reference glioma_tumor",
    ]
    assert not outcome.ok


def test_another_model_file_is_a_problem() -> None:
    reference = read_records(_ok("a", "no_tumor", [0, 0, 1, 0]), "x86_64")
    found = read_records(_ok("a", "no_tumor", [0, 0, 1, 0]).replace("@abc123", "@fff000"), "cortex-a72")
    assert compare_records(reference, found, 0.0).problems == ["a: model sha256 fff000, reference abc123"]


@pytest.mark.parametrize(
    "text",
    ["not json\n", _line("a", status="ok", label="no_tumor"), _line("a", status="lost"), '{"source": "a"}\n'],
)
def test_text_that_is_not_a_record_names_the_line(text: str) -> None:
    with pytest.raises(RecordError, match=r"^run.jsonl:2: not a tumor-infer --jsonl record"):
        read_records(_error("first", "bad_image") + text, "run.jsonl")


def test_tolerance_is_one_output_step_or_the_float_one() -> None:
    tolerance, why = output_tolerance(QuantizationSpec("int8", output_dtype="uint8", output_scale=1 / 256))
    assert tolerance == pytest.approx(1 / 256) and tolerance > 1 / 256
    assert why == "one step of the uint8 output"
    assert output_tolerance(QuantizationSpec("fp32")) == (FLOAT_TOLERANCE, "float output")
    assert output_tolerance(None) == (FLOAT_TOLERANCE, "float output")


def test_abstention_reads_back() -> None:
    answered = _ok("a.png", "no_tumor", [0.1, 0.1, 0.7, 0.1])
    abstained = _line(
        "b.png",
        status="ok",
        label="glioma_tumor",
        confidence=0.4,
        probabilities=dict(zip(LABELS, [0.4, 0.3, 0.2, 0.1], strict=True)),
        abstain=True,
        reasons=["low_confidence"],
    )
    records = read_records(answered + abstained, "run")
    first, second = records["a.png"].result, records["b.png"].result
    assert isinstance(first, Prediction) and isinstance(second, Prediction)
    assert (first.abstain, first.reasons) == (None, ())
    assert (second.abstain, second.reasons) == (True, ("low_confidence",))
    assert second.to_dict()["reasons"] == ["low_confidence"]
