"""The spec's typed sections (quantization, calibration, parity): round trips, refusals, earlier files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tumorscan.errors import MetadataError
from tumorscan.metadata import tflite_metadata_entry
from tumorscan.models import default_model_path
from tumorscan.sections import (
    AutoFloatRecord,
    CalibrationSpec,
    CleanParity,
    FloatLayer,
    ParityLimits,
    ParityPoint,
    ParitySpec,
    QuantizationSpec,
    RankedLayer,
)
from tumorscan.spec import METADATA_KEY, ModelSpec

SPECS = Path(__file__).resolve().parent.parent / "data" / "specs"
PREVIOUS = sorted(SPECS.glob("*.json"))
"""Spec JSON embedded by earlier tumorscan versions: the packaged model's, an ONNX int8 file's (float
layers chosen for speed) and an all-int8 TFLite file's (quantized output)."""

QUANTIZATION = QuantizationSpec(
    mode="int8",
    weights="int8",
    activations="int8",
    kernels="TFLITE_BUILTINS_INT8 and TFLITE_BUILTINS",
    per_channel=True,
    calibration_method="minmax",
    input_dtype="uint8",
    input_scale=1.0,
    input_zero_point=0,
    output_dtype="float32",
    float_layers=(FloatLayer("conv1", "CONV_2D", "parity: agreement 98.94% -> 99.47%"),),
    auto_float=AutoFloatRecord(
        held_out="Testing",
        scans=379,
        limits=ParityLimits(),
        max_float=4,
        all_int8=ParityPoint(0.9894, 0.53),
        chosen=ParityPoint(0.9947, 0.53),
        passed=True,
        ranking=(RankedLayer("conv1", "CONV_2D", "RMSE/scale 0.23"),),
    ),
)
CALIBRATION = CalibrationSpec(
    count=300,
    labels={"glioma_tumor": 86, "no_tumor": 41},
    seed=0,
    size=(224, 224),
    skipped=2,
    manifest_sha256="ab" * 32,
    folder="Training",
)
PARITY = ParitySpec(
    scans=379,
    original_accuracy=0.7361,
    export_accuracy=0.7309,
    agreement=0.9947,
    max_abs_diff=0.04521,
    passed=True,
    clean=CleanParity(scans=135, original_accuracy=0.3407, export_accuracy=0.3259, agreement=0.9852),
)
WITHOUT_CLEAN = ParitySpec(
    scans=8, original_accuracy=1.0, export_accuracy=0.875, agreement=0.875, max_abs_diff=0.5, passed=False
)
SECTIONS: list[Any] = [QUANTIZATION, QuantizationSpec("fp32"), CALIBRATION, PARITY, WITHOUT_CLEAN]


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: type(s).__name__)
def test_a_section_round_trips_through_json(section: Any) -> None:
    text = json.dumps(section.to_dict())
    assert type(section).from_dict(json.loads(text), "m.tflite") == section


def test_unset_fields_are_left_out_and_unknown_keys_ignored() -> None:
    assert QuantizationSpec("fp16", weights="float16").to_dict() == {"mode": "fp16", "weights": "float16"}
    assert "clean" not in WITHOUT_CLEAN.to_dict()
    assert QuantizationSpec.from_dict({"mode": "int8", "from_a_newer_version": [1]}) == QuantizationSpec(
        "int8"
    )
    assert QUANTIZATION.to_dict()["auto_float"]["limits"] == {
        "min_agreement": 0.99,
        "max_drop": 1.0,
        "max_prob_diff": None,
    }


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to a section's JSON: `value` at the dotted `path` (list items by index), or removed."""

    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[int(key)] if isinstance(data, list) else data[key]
        if value is _set:
            del data[last]
        else:
            data[last] = value

    return change


BAD = [
    (QUANTIZATION, _set("mode", _set), "quantization: mode: missing"),
    (QUANTIZATION, _set("mode", 8), "quantization: mode: must be str, not int"),
    (QUANTIZATION, _set("per_channel", "yes"), "per_channel: must be bool, not str"),
    (QUANTIZATION, _set("output_scale", -0.5), "output_scale: must not be negative"),
    (QUANTIZATION, _set("opset", True), "opset: must be int, not bool"),
    (QUANTIZATION, _set("float_layers", {"conv1": "CONV_2D"}), "float_layers: must be list, not dict"),
    (QUANTIZATION, _set("float_layers.0.reason", _set), "float_layers: item 0: reason: missing"),
    (QUANTIZATION, _set("float_layers.0.name", "x" * 5000), "name: is longer than 2000 characters"),
    (QUANTIZATION, _set("auto_float.scans", -1), "auto_float: scans: must not be negative"),
    (QUANTIZATION, _set("auto_float.limits.min_agreement", 2), "min_agreement: must be 0 to 1, not 2"),
    (QUANTIZATION, _set("auto_float.ranking", [3]), "ranking: item 0: must be dict, not int"),
    (CALIBRATION, _set("count", -300), "calibration: count: must not be negative"),
    (CALIBRATION, _set("count", 1.5), "count: must be int, not float"),
    (CALIBRATION, _set("labels", {"glioma_tumor": -1}), "labels: must map class names to scan counts"),
    (CALIBRATION, _set("size", [224]), "size: must be [height, width] of 8 to 8192 pixels"),
    (CALIBRATION, _set("manifest_sha256", "abc"), "manifest_sha256: must be 64 lowercase hex digits"),
    (CALIBRATION, _set("folder", _set), "calibration: folder: missing"),
    (PARITY, _set("agreement", 1.5), "parity: agreement: must be 0 to 1, not 1.5"),
    (PARITY, _set("passed", 1), "passed: must be bool, not int"),
    (PARITY, _set("scans", "379"), "scans: must be int, not str"),
    (PARITY, _set("clean.scans", -5), "clean: scans: must not be negative"),
]


@pytest.mark.parametrize(("section", "change", "problem"), BAD, ids=[problem for _, _, problem in BAD])
def test_a_malformed_section_is_refused_naming_the_file_and_field(
    section: Any, change: Callable[[dict[str, Any]], None], problem: str
) -> None:
    data = json.loads(json.dumps(section.to_dict()))
    change(data)
    with pytest.raises(MetadataError, match="re-export the model") as error:
        type(section).from_dict(data, "m.tflite")
    message = str(error.value)
    assert message.startswith("m.tflite: invalid tumorscan metadata: ") and problem in message


@pytest.mark.parametrize("kind", [QuantizationSpec, CalibrationSpec, ParitySpec])
def test_a_section_that_is_not_an_object_is_refused(kind: Any) -> None:
    with pytest.raises(MetadataError, match=r"^m\.onnx: .*must be dict, not list"):
        kind.from_dict([1, 2], "m.onnx")


@pytest.mark.parametrize(
    ("name", "section", "change", "problem"),
    [
        ("quantization", QUANTIZATION, _set("auto_float.passed", "yes"), "quantization: auto_float: passed"),
        ("calibration", CALIBRATION, _set("skipped", -2), "calibration: skipped: must not be negative"),
        ("parity", PARITY, _set("max_abs_diff", "small"), "parity: max_abs_diff: must be int or float"),
    ],
)
def test_the_spec_check_covers_the_sections(
    name: str, section: Any, change: Callable[[dict[str, Any]], None], problem: str
) -> None:
    data = json.loads(PREVIOUS[0].read_text(encoding="utf-8"))
    data[name] = json.loads(json.dumps(section.to_dict()))
    change(data[name])
    with pytest.raises(MetadataError, match=r"^m\.tflite: invalid tumorscan metadata: .*re-export") as error:
        ModelSpec.from_json(json.dumps(data), "m.tflite")
    assert problem in str(error.value)


@pytest.mark.parametrize("path", PREVIOUS, ids=lambda path: path.stem)
def test_spec_json_of_earlier_versions_reads_into_typed_sections_and_back(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    spec = ModelSpec.from_json(text, path.name)
    assert isinstance(spec.quantization, QuantizationSpec) and isinstance(spec.calibration, CalibrationSpec)
    assert spec.quantization.mode == "int8" and spec.calibration.count > 0
    assert spec.to_json() == text  # the same keys and values, byte for byte
    again = ModelSpec.from_json(spec.to_json(), path.name)
    assert (again.quantization, again.calibration, again.parity) == (
        spec.quantization,
        spec.calibration,
        spec.parity,
    )


def test_the_packaged_models_spec_reads_typed_and_serialises_unchanged() -> None:
    text = tflite_metadata_entry(default_model_path().read_bytes(), METADATA_KEY)
    assert text is not None
    spec = ModelSpec.from_json(text, "default.tflite")
    assert spec.to_json().encode() == text
    assert spec.quantization is not None and spec.quantization.float_layers
    assert spec.quantization.auto_float is not None and spec.quantization.auto_float.passed
    assert spec.parity is not None and spec.parity.passed and spec.parity.clean is not None
    assert spec.calibration is not None and spec.calibration.size == spec.input.size
