"""tumor-infer's records read back into the runtime's own types, and two runs of one model compared.

`tumor-infer --jsonl` writes one record per scan: `Prediction.to_dict()` or `PredictionError.to_dict()`
plus "model": "FILE@SHA256". `read_records` turns such output back into those types, so that a run on
another machine (for example an emulated Raspberry Pi) can be checked against a reference run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .classifier import ModelIdentity, Prediction, PredictionError, Result
from .errors import TumorscanError
from .sections import QuantizationSpec

FLOAT_TOLERANCE = 1e-4
"""Float outputs: NEON kernels sum in another order than AVX ones, so float32 probabilities differ in
the last bits; measured up to 7.6e-6 (XNNPACK) and 3e-7 (ONNX Runtime) for a 224x224 cnn2. 1e-4 leaves
a margin of ten over that and is still 39 times finer than one step (1/256) of an int8 model's output."""


class RecordError(TumorscanError):
    """Text that is not tumor-infer --jsonl output."""

    code = "bad_record"


@dataclass(frozen=True)
class Record:
    """One scan's line of tumor-infer --jsonl: its result and the model file that produced it.

    A Prediction's `model` carries the file name and sha256 of the record; the record does not say the
    architecture, quantization or backend, which are left empty.
    """

    result: Result
    model_file: str
    model_sha256: str

    @property
    def outcome(self) -> str:
        """The top-1 label, or "error CODE" for a scan that could not be classified."""
        if isinstance(self.result, Prediction):
            return self.result.label
        return f"error {self.result.code}"

    @property
    def probabilities(self) -> Mapping[str, float]:
        """The probability per label (none for an error)."""
        return self.result.probabilities if isinstance(self.result, Prediction) else {}


def read_record(record: Mapping[str, Any]) -> Record:
    """One decoded JSON record as a Record.

    Raises:
        KeyError, TypeError, ValueError, AttributeError: a field is missing or of the wrong type.
    """
    model_file, _, sha256 = str(record["model"]).rpartition("@")
    source = str(record["source"])
    result: Result
    if record["status"] == "ok":
        probabilities = {str(label): float(p) for label, p in record["probabilities"].items()}
        identity = ModelIdentity(model_file, sha256, architecture="", quantization="", backend="")
        result = Prediction(
            source=source,
            label=str(record["label"]),
            confidence=float(record["confidence"]),
            probabilities=MappingProxyType(probabilities),
            model=identity,
            abstain=None if record.get("abstain") is None else bool(record["abstain"]),
            reasons=tuple(str(reason) for reason in record.get("reasons", ())),
            mirror=bool(record.get("mirror", False)),
        )
    elif record["status"] == "error":
        error = record["error"]
        result = PredictionError(source, str(error["code"]), str(error["message"]))
    else:
        raise ValueError(f"unknown status {record['status']!r}")
    return Record(result, model_file, sha256)


def read_records(text: str, name: str) -> dict[str, Record]:
    """tumor-infer --jsonl output, keyed by each scan's source.

    Raises:
        RecordError: a line is not a tumor-infer record (named `name:LINE`).
    """
    records = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = read_record(json.loads(line))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RecordError(f"{name}:{number}: not a tumor-infer --jsonl record ({exc!r})") from exc
        records[record.result.source] = record
    return records


@dataclass(frozen=True)
class Comparison:
    """One run's records against the reference's."""

    scans: int
    top1_agree: int
    identical: int
    max_diff: float
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def compare_records(
    reference: Mapping[str, Record], found: Mapping[str, Record], tolerance: float
) -> Comparison:
    """Top-1 labels (or error codes) must be equal, probabilities within `tolerance`, the model the same."""
    problems = [f"{path}: missing from the emulated run" for path in sorted(set(reference) - set(found))]
    problems += [f"{path}: not in the reference" for path in sorted(set(found) - set(reference))]
    agree = identical = 0
    max_diff = 0.0
    for path in sorted(set(reference) & set(found)):
        want, got = reference[path], found[path]
        if want.model_sha256 != got.model_sha256:
            problems.append(f"{path}: model sha256 {got.model_sha256}, reference {want.model_sha256}")
        if want.outcome != got.outcome:
            problems.append(f"{path}: top-1 {got.outcome}, reference {want.outcome}")
            continue
        agree += 1
        expected, actual = want.probabilities, got.probabilities
        if set(expected) != set(actual):
            problems.append(f"{path}: labels {sorted(actual)}, reference {sorted(expected)}")
            continue
        diff = max((abs(expected[k] - actual[k]) for k in expected), default=0.0)
        identical += diff == 0.0
        max_diff = max(max_diff, diff)
        if diff > tolerance:
            problems.append(f"{path}: probabilities differ by {diff:.6f}, more than {tolerance:.6f}")
    return Comparison(len(reference), agree, identical, max_diff, problems)


def output_tolerance(quantization: QuantizationSpec | None) -> tuple[float, str]:
    """One quantization step for a quantized output, FLOAT_TOLERANCE for a float one; and why."""
    if quantization is not None and quantization.output_scale:
        # Dequantized values are scale * (q - zero point): allow for the float rounding of that product.
        why = f"one step of the {quantization.output_dtype or 'quantized'} output"
        return quantization.output_scale * (1 + 1e-6), why
    return FLOAT_TOLERANCE, "float output"
