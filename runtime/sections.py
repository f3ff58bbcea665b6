"""The spec's typed sections: how a file was quantized, what calibrated it, how close it is to its original.

Each section has one writer in the export: `quantization` the format writers (and the float-layer
search), `calibration` the calibration set, `parity` the parity check. Everything else reads them by
attribute. `to_dict` gives the JSON stored in the spec, with the keys files have always had (optional
fields left out while unset); `from_dict` checks a parsed section against its schema (also part of the
spec's own, `tumorscan.spec.SPEC_SCHEMA`) and ignores unknown keys, so newer files still load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Self

from .errors import MetadataError
from .schema import (
    MAX_NAME,
    MAX_SIDE,
    NUMBER,
    Rule,
    check_items,
    check_object,
    hex_digest,
    non_negative,
    schema_problems,
    share,
    short,
    side,
    text,
)


def _json(value: Any) -> Any:
    """A section's field value as JSON: nested sections through their `to_dict`, tuples as lists."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_json(item) for item in value]
    if isinstance(value, dict):
        return dict(value)
    return value


def _record(section: Any) -> dict[str, Any]:
    """The fields of a section that are set (not None), as JSON."""
    values = ((item.name, getattr(section, item.name)) for item in fields(section))
    return {name: _json(value) for name, value in values if value is not None}


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `data` that name fields of `cls` (unknown keys are ignored)."""
    names = {item.name for item in fields(cls)}
    return {name: value for name, value in data.items() if name in names}


def _check(data: Any, schema: dict[str, Rule], section: str, source: str) -> None:
    """Raise MetadataError naming `source` when `data` is not an object conforming to `schema`."""
    if not isinstance(data, dict):
        problems = [f"must be dict, not {type(data).__name__}"]
    else:
        problems = schema_problems(data, schema)
    if problems:
        raise MetadataError(
            f"{source}: invalid tumorscan metadata: {section}: {'; '.join(problems)}; re-export the model."
        )


class _Section:
    """A spec section or record: `to_dict` gives the JSON stored in the spec, the fields that are set."""

    def to_dict(self) -> dict[str, Any]:
        return _record(self)


class _Flat(_Section):
    """A section of plain JSON values: `parse` takes a checked dict."""

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        """From a dict already checked against the section's schema."""
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class ParityLimits(_Flat):
    """Pass/fail limits: top-1 agreement at least `min_agreement`, accuracy drop at most `max_drop` points,
    and, when set, no probability further than `max_prob_diff` from the original's."""

    min_agreement: float = 0.99
    max_drop: float = 1.0
    max_prob_diff: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every limit, `max_prob_diff` null when unset."""
        return {item.name: getattr(self, item.name) for item in fields(self)}


@dataclass(frozen=True)
class FloatLayer(_Flat):
    """A layer kept in float in an int8 file, and why."""

    name: str
    op: str
    reason: str


@dataclass(frozen=True)
class RankedLayer(_Flat):
    """A quantized layer as ranked by its own quantization error (`error` says how it was measured)."""

    name: str
    op: str
    error: str


@dataclass(frozen=True)
class ParityPoint(_Flat):
    """Top-1 agreement with the original and accuracy drop (points) of one candidate file."""

    agreement: float
    drop_points: float


@dataclass(frozen=True)
class AutoFloatRecord(_Section):
    """How the float layers of an int8 file were chosen (`tumorscan.export.autofloat`)."""

    held_out: str
    """The labelled folder the candidates were judged on."""
    scans: int
    limits: ParityLimits
    max_float: int
    all_int8: ParityPoint
    chosen: ParityPoint
    passed: bool
    ranking: tuple[RankedLayer, ...]
    """The worst-ranked layers, worst first."""

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> AutoFloatRecord:
        """From a checked dict (`AUTO_FLOAT_SCHEMA`)."""
        return cls(
            **{
                **_known(cls, data),
                "limits": ParityLimits.parse(data["limits"]),
                "all_int8": ParityPoint.parse(data["all_int8"]),
                "chosen": ParityPoint.parse(data["chosen"]),
                "ranking": tuple(RankedLayer.parse(layer) for layer in data["ranking"]),
            }
        )


@dataclass(frozen=True)
class QuantizationSpec(_Section):
    """How a file's weights, kernels, input and output are quantized. Only `mode` is always set."""

    mode: str
    """The export mode: fp32, fp16, dynamic or int8 (`tumorscan.export.formats`)."""
    weights: str | None = None
    activations: str | None = None
    kernels: str | None = None
    """TFLite: the op sets the kernels come from."""
    format: str | None = None
    """ONNX int8: QDQ."""
    opset: int | None = None
    per_channel: bool | None = None
    calibration_method: str | None = None
    input_dtype: str | None = None
    input_scale: float | None = None
    input_zero_point: int | None = None
    output_dtype: str | None = None
    output_scale: float | None = None
    """Set for a quantized output: one step of its values."""
    output_zero_point: int | None = None
    float_layers: tuple[FloatLayer, ...] | None = None
    """int8 with the float-layer search: the layers kept in float, and why."""
    auto_float: AutoFloatRecord | None = None

    @classmethod
    def from_dict(cls, data: Any, source: str = "model") -> QuantizationSpec:
        """Check and parse the spec's `quantization` entry.

        Raises:
            MetadataError: a field of the wrong type or range, naming `source`.
        """
        _check(data, QUANTIZATION_SCHEMA, "quantization", source)
        values = _known(cls, data)
        if data.get("float_layers") is not None:
            values["float_layers"] = tuple(FloatLayer.parse(layer) for layer in data["float_layers"])
        if data.get("auto_float") is not None:
            values["auto_float"] = AutoFloatRecord.parse(data["auto_float"])
        return cls(**values)


@dataclass(frozen=True)
class CalibrationSpec(_Section):
    """The scans that calibrated an int8 file (`tumorscan.calibration.CalibrationSet`)."""

    count: int
    labels: dict[str, int]
    """Scans per class folder."""
    seed: int
    size: tuple[int, int]
    """(height, width) the scans were decoded at."""
    skipped: int
    """Scans that could not be decoded."""
    manifest_sha256: str
    """Hash of the manifest written next to the exported files (<model>-calibration.json)."""
    folder: str
    """Name of the folder the scans came from."""

    @classmethod
    def from_dict(cls, data: Any, source: str = "model") -> CalibrationSpec:
        """Check and parse the spec's `calibration` entry.

        Raises:
            MetadataError: a field missing or of the wrong type or range, naming `source`.
        """
        _check(data, CALIBRATION_SCHEMA, "calibration", source)
        height, width = data["size"]
        return cls(**{**_known(cls, data), "labels": dict(data["labels"]), "size": (height, width)})


@dataclass(frozen=True)
class CleanParity(_Flat):
    """Parity on the clean subset of the parity folder (scans without a copy in training)."""

    scans: int
    original_accuracy: float
    export_accuracy: float
    agreement: float


@dataclass(frozen=True)
class ParitySpec(_Section):
    """A file measured against its original model on a labelled folder (`tumorscan.export.parity`)."""

    scans: int
    original_accuracy: float
    export_accuracy: float
    agreement: float
    """Share of scans given the original's top-1 label."""
    max_abs_diff: float
    """Largest probability difference from the original."""
    passed: bool
    """The file met the parity limits."""
    clean: CleanParity | None = None

    @classmethod
    def from_dict(cls, data: Any, source: str = "model") -> ParitySpec:
        """Check and parse the spec's `parity` entry.

        Raises:
            MetadataError: a field missing or of the wrong type or range, naming `source`.
        """
        _check(data, PARITY_SCHEMA, "parity", source)
        clean = data.get("clean")
        return cls(**{**_known(cls, data), "clean": None if clean is None else CleanParity.parse(clean)})


def _size(value: list[Any]) -> str | None:
    sides = len(value) == 2 and all(type(item) is int and side(item) is None for item in value)
    return None if sides else f"must be [height, width] of 8 to {MAX_SIDE} pixels"


def _counts(value: dict[str, Any]) -> str | None:
    if not all(len(name) <= MAX_NAME for name in value):
        return f"class names must be at most {MAX_NAME} characters"
    if not all(type(count) is int and count >= 0 for count in value.values()):
        return "must map class names to scan counts (whole numbers, not negative)"
    return None


LIMITS_SCHEMA: dict[str, Rule] = {
    "min_agreement": Rule(NUMBER, required=True, check=share),
    "max_drop": Rule(NUMBER, required=True),
    "max_prob_diff": Rule((*NUMBER, type(None)), check=non_negative),
}
FLOAT_LAYER_SCHEMA: dict[str, Rule] = {
    "name": Rule((str,), required=True, check=text),
    "op": Rule((str,), required=True, check=short),
    "reason": Rule((str,), required=True, check=text),
}
RANKED_LAYER_SCHEMA: dict[str, Rule] = {
    "name": Rule((str,), required=True, check=text),
    "op": Rule((str,), required=True, check=short),
    "error": Rule((str,), required=True, check=short),
}
PARITY_POINT_SCHEMA: dict[str, Rule] = {
    "agreement": Rule(NUMBER, required=True, check=share),
    "drop_points": Rule(NUMBER, required=True),
}
AUTO_FLOAT_SCHEMA: dict[str, Rule] = {
    "held_out": Rule((str,), required=True, check=text),
    "scans": Rule((int,), required=True, check=non_negative),
    "limits": Rule((dict,), required=True, check=check_object(LIMITS_SCHEMA)),
    "max_float": Rule((int,), required=True, check=non_negative),
    "all_int8": Rule((dict,), required=True, check=check_object(PARITY_POINT_SCHEMA)),
    "chosen": Rule((dict,), required=True, check=check_object(PARITY_POINT_SCHEMA)),
    "passed": Rule((bool,), required=True),
    "ranking": Rule((list,), required=True, check=check_items(RANKED_LAYER_SCHEMA)),
}
QUANTIZATION_SCHEMA: dict[str, Rule] = {
    "mode": Rule((str,), required=True, check=short),
    "weights": Rule((str,), check=short),
    "activations": Rule((str,), check=short),
    "kernels": Rule((str,), check=short),
    "format": Rule((str,), check=short),
    "opset": Rule((int,), check=non_negative),
    "per_channel": Rule((bool,)),
    "calibration_method": Rule((str,), check=short),
    "input_dtype": Rule((str,), check=short),
    "input_scale": Rule(NUMBER, check=non_negative),
    "input_zero_point": Rule((int,)),
    "output_dtype": Rule((str,), check=short),
    "output_scale": Rule(NUMBER, check=non_negative),
    "output_zero_point": Rule((int,)),
    "float_layers": Rule((list,), check=check_items(FLOAT_LAYER_SCHEMA)),
    "auto_float": Rule((dict,), check=check_object(AUTO_FLOAT_SCHEMA)),
}
CALIBRATION_SCHEMA: dict[str, Rule] = {
    "count": Rule((int,), required=True, check=non_negative),
    "labels": Rule((dict,), required=True, check=_counts),
    "seed": Rule((int,), required=True),
    "size": Rule((list,), required=True, check=_size),
    "skipped": Rule((int,), required=True, check=non_negative),
    "manifest_sha256": Rule((str,), required=True, check=hex_digest),
    "folder": Rule((str,), required=True, check=text),
}
CLEAN_PARITY_SCHEMA: dict[str, Rule] = {
    "scans": Rule((int,), required=True, check=non_negative),
    "original_accuracy": Rule(NUMBER, required=True, check=share),
    "export_accuracy": Rule(NUMBER, required=True, check=share),
    "agreement": Rule(NUMBER, required=True, check=share),
}
PARITY_SCHEMA: dict[str, Rule] = {
    **CLEAN_PARITY_SCHEMA,
    "max_abs_diff": Rule(NUMBER, required=True, check=share),
    "passed": Rule((bool,), required=True),
    "clean": Rule((dict,), check=check_object(CLEAN_PARITY_SCHEMA)),
}
