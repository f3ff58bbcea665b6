"""The emulated runs' answers against the reference: the model's tolerance, the reference, one CPU's run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tumorscan.records import Comparison, Record, compare_records, output_tolerance, read_records
from tumorscan.sections import QuantizationSpec

from .host import CheckError, python_json

PROBE_MODEL = """
import dataclasses, json, sys
from pathlib import Path
from tumorscan.metadata import read_model_spec
from tumorscan.sections import QuantizationSpec
path = Path(sys.argv[1])
quantization = read_model_spec(path).quantization
if path.suffix.lower() == ".tflite" and (quantization is None or quantization.output_dtype is None):
    from ai_edge_litert.interpreter import Interpreter
    detail = Interpreter(model_path=str(path)).get_output_details()[0]
    quantization = dataclasses.replace(
        quantization or QuantizationSpec(mode="unknown"),
        output_dtype=detail["dtype"].__name__,
        output_scale=float(detail["quantization"][0]) or None,
    )
print(json.dumps(quantization and quantization.to_dict()))
"""
"""Run by the x86 Python: the model's quantization section, its output's type and scale filled in from the
TFLite file when the spec does not say them."""


def tolerance_of(quantization: Mapping[str, Any] | None, model: Path) -> tuple[float, str]:
    """The tolerance for a model with this quantization section (as PROBE_MODEL prints it), and why.

    Raises:
        MetadataError: the section is not a quantization section.
    """
    spec = None if quantization is None else QuantizationSpec.from_dict(quantization, str(model))
    return output_tolerance(spec)


def model_tolerance(x86_python: Path, model: Path) -> tuple[float, str]:
    """The tolerance for `model`'s outputs, read by the x86 Python, and why."""
    return tolerance_of(python_json(x86_python, PROBE_MODEL, str(model)), model)


def read_expectation(expect: Path) -> dict[str, Record]:
    """The records of an --expect file (tumor-infer --jsonl output).

    Raises:
        CheckError: there is no such file.
        RecordError: a line is not a tumor-infer record (named `FILE:LINE`).
    """
    if not expect.is_file():
        raise CheckError(f"{expect}: no such expectation file; pass tumor-infer --jsonl output to --expect")
    return read_records(expect.read_text(encoding="utf-8"), str(expect))


def compare_run(reference: Mapping[str, Record], output: str, cpu: str, tolerance: float) -> Comparison:
    """One emulated CPU's tumor-infer output (named `cpu` in errors) against the reference's records."""
    return compare_records(reference, read_records(output, cpu), tolerance)
