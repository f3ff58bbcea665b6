"""The model spec: the one description of a model's labels, input and provenance.

It is serialised as JSON into every exported model file and parsed back with `json.loads`; the
runtime needs nothing else to use a model correctly. Model files are untrusted: the JSON is checked
against `SPEC_SCHEMA` (size, nesting, type and range of every known field) before any of it is used;
unknown fields are ignored, so newer files still load.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

from .errors import MetadataError
from .schema import MAX_NAME, Rule, check_object, hex_digest, non_negative, schema_problems, short, side
from .sections import (
    CALIBRATION_SCHEMA,
    PARITY_SCHEMA,
    QUANTIZATION_SCHEMA,
    CalibrationSpec,
    ParitySpec,
    QuantizationSpec,
)

METADATA_KEY = "tumorscan"
"""Name of the metadata entry (TFLite metadata buffer, ONNX metadata_props key)."""

SPEC_VERSION = 1

NORMALIZATIONS = ("rescale", "symmetric", "caffe", "none")
"""What a model graph does to its 0-255 RGB input before the first layer:
rescale x/255; symmetric x/127.5-1; caffe (VGG16/ImageNet) RGB minus channel means; none."""

NORMALIZED_BY = ("graph", "runtime")
LAYOUTS = ("NHWC", "NCHW")
INPUT_DEFAULTS_LEFT_OUT = {"normalized_by": "graph", "layout": "NHWC"}
"""Input fields written only when they differ from these values."""
RESIZES = ("bilinear",)
"""Resize rules the preprocessing path knows (`tumorscan.images.RESIZE_FILTER`)."""
INPUT_DTYPES = ("uint8",)
"""Pixel types the preprocessing path produces (RGB 0-255)."""

DEFAULT_LABELS = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")


@dataclass(frozen=True)
class InputSpec:
    """What pixels a model takes: RGB uint8 values 0-255 at a fixed size."""

    height: int
    width: int
    channels: int = 3
    color: str = "RGB"
    resize: str = "bilinear"
    dtype: str = "uint8"
    normalization: str = "rescale"
    normalized_by: str = "graph"
    """Who applies `normalization`: "graph" (tumorscan exports bake it into the model) or "runtime" (a file
    made elsewhere and sealed with tumor-seal: the runtime normalises the pixels before feeding them)."""
    layout: str = "NHWC"
    """The model input's axis order: NHWC (TensorFlow) or NCHW (PyTorch and most other ONNX files)."""

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.height, self.width)


def labels_problem(labels: Sequence[str]) -> str | None:
    """What is wrong with a list of class labels (fewer than two, an empty or a repeated one), else None."""
    if len(labels) < 2:
        return f"give at least two labels, got {list(labels)}"
    if any(not label for label in labels):
        return f"a label is empty in {list(labels)}"
    for label in labels:
        if labels.count(label) > 1:
            return f"label {label!r} appears {'twice' if labels.count(label) == 2 else 'more than twice'}"
    return None


@dataclass(frozen=True)
class ModelSpec:
    """Everything a deployed model file says about itself."""

    labels: tuple[str, ...]
    input: InputSpec
    architecture: str = "custom"
    source_sha256: str | None = None
    quantization: QuantizationSpec | None = None
    calibration: CalibrationSpec | None = None
    parity: ParitySpec | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    spec_version: int = SPEC_VERSION
    integrity: dict[str, Any] | None = field(default=None, compare=False)
    """Hash of the model content this spec describes (`tumorscan.integrity`); set when embedded."""
    trust: dict[str, Any] | None = None
    """Temperature, abstention threshold and input-check ranges (`tumorscan.trust`); optional."""

    def with_updates(self, **changes: Any) -> ModelSpec:
        """Return a copy with some fields replaced."""
        return replace(self, **changes)

    def to_json(self) -> str:
        """Serialise to a compact, key-sorted JSON document."""
        data = asdict(self)
        data["labels"] = list(self.labels)
        for key, default in INPUT_DEFAULTS_LEFT_OUT.items():  # files older tumorscan versions still read
            if data["input"][key] == default:
                del data["input"][key]
        for name, section in (
            ("quantization", self.quantization),
            ("calibration", self.calibration),
            ("parity", self.parity),
        ):
            data[name] = None if section is None else section.to_dict()
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "model") -> ModelSpec:
        """Parse and validate a JSON document written by `to_json`."""
        data = parse_spec_json(text, source)
        try:
            version = int(data.get("spec_version", 0))
            if version > SPEC_VERSION:
                raise MetadataError(
                    f"{source}: metadata version {version} is newer than this tumorscan understands "
                    f"({SPEC_VERSION}); upgrade tumorscan."
                )
            input_spec = InputSpec(**data["input"])
            spec = cls(
                labels=tuple(str(label) for label in data["labels"]),
                input=input_spec,
                architecture=str(data.get("architecture", "custom")),
                source_sha256=data.get("source_sha256"),
                quantization=_section(QuantizationSpec, data.get("quantization"), source),
                calibration=_section(CalibrationSpec, data.get("calibration"), source),
                parity=_section(ParitySpec, data.get("parity"), source),
                provenance=dict(data.get("provenance") or {}),
                spec_version=version,
                integrity=data.get("integrity"),
                trust=data.get("trust"),
            )
        except MetadataError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise MetadataError(
                f"{source}: tumorscan metadata is malformed ({exc}); re-export the model."
            ) from exc
        spec.validate(source)
        return spec

    def validate(self, source: str = "model") -> None:
        """Check internal consistency; raise MetadataError naming `source` if broken."""
        problems = []
        label_problem = labels_problem(self.labels)
        if label_problem is not None:
            problems.append(label_problem)
        if self.input.height < 8 or self.input.width < 8:
            problems.append(f"input size {self.input.size} is too small")
        if self.input.channels != 3 or self.input.color != "RGB":
            problems.append("input must be 3-channel RGB")
        if self.input.normalization not in NORMALIZATIONS:
            problems.append(f"unknown normalization {self.input.normalization!r}")
        if self.input.normalized_by not in NORMALIZED_BY or self.input.layout not in LAYOUTS:
            problems.append(
                f"input normalized by {self.input.normalized_by!r} in layout {self.input.layout!r}: "
                f"expected one of {', '.join(NORMALIZED_BY)} and {', '.join(LAYOUTS)}"
            )
        if self.input.resize not in RESIZES or self.input.dtype not in INPUT_DTYPES:
            problems.append(
                f"input resize {self.input.resize!r} and pixel type {self.input.dtype!r} are not what this "
                f"tumorscan's preprocessing does ({', '.join(RESIZES)}, {', '.join(INPUT_DTYPES)}); "
                "upgrade tumorscan"
            )
        if problems:
            raise MetadataError(f"{source}: invalid tumorscan metadata: {'; '.join(problems)}.")


Section = TypeVar("Section", QuantizationSpec, CalibrationSpec, ParitySpec)


def _section(kind: type[Section], data: Any, source: str) -> Section | None:
    """A typed section of the spec, None when the file has none."""
    return None if data is None else kind.from_dict(data, source)


MAX_METADATA_BYTES = 1_000_000
MAX_NESTING = 16
MAX_LABELS = 1000


def _labels(value: list[Any]) -> str | None:
    if not 2 <= len(value) <= MAX_LABELS:
        return f"must hold 2 to {MAX_LABELS} names, not {len(value)}"
    if not all(isinstance(label, str) and 0 < len(label) <= MAX_NAME for label in value):
        return f"must be names of 1 to {MAX_NAME} characters"
    return None


INPUT_SCHEMA: dict[str, Rule] = {
    "height": Rule((int,), required=True, check=side),
    "width": Rule((int,), required=True, check=side),
    "channels": Rule((int,)),
    "color": Rule((str,), check=short),
    "resize": Rule((str,), check=short),
    "dtype": Rule((str,), check=short),
    "normalization": Rule((str,), check=short),
}

INTEGRITY_SCHEMA: dict[str, Rule] = {
    "scheme": Rule((str,), required=True, check=short),
    "sha256": Rule((str,), required=True, check=hex_digest),
    "bytes": Rule((int,), check=non_negative),
}

SPEC_SCHEMA: dict[str, Rule] = {
    "labels": Rule((list,), required=True, check=_labels),
    "input": Rule((dict,), required=True, check=check_object(INPUT_SCHEMA)),
    "architecture": Rule((str,), check=short),
    "source_sha256": Rule((str, type(None)), check=short),
    "quantization": Rule((dict, type(None)), check=check_object(QUANTIZATION_SCHEMA)),
    "calibration": Rule((dict, type(None)), check=check_object(CALIBRATION_SCHEMA)),
    "parity": Rule((dict, type(None)), check=check_object(PARITY_SCHEMA)),
    "provenance": Rule((dict, type(None))),
    "spec_version": Rule((int,)),
    "integrity": Rule((dict, type(None)), check=check_object(INTEGRITY_SCHEMA)),
    "trust": Rule((dict, type(None))),
}
"""The known metadata fields. A new optional field needs one line here (and one in ModelSpec)."""


def _nesting(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_spec_json(text: str | bytes, source: str) -> dict[str, Any]:
    """Parse metadata JSON and check it against SPEC_SCHEMA; every violation is a MetadataError.

    Raises:
        MetadataError: too large, too deeply nested, not JSON, or a field of the wrong type or range.
    """
    if len(text) > MAX_METADATA_BYTES:
        raise MetadataError(
            f"{source}: tumorscan metadata of {len(text):,} bytes is over the {MAX_METADATA_BYTES:,} limit."
        )
    try:
        data = json.loads(text)
    except RecursionError as exc:
        raise MetadataError(f"{source}: tumorscan metadata nests too deeply; re-export the model.") from exc
    except (ValueError, TypeError) as exc:
        raise MetadataError(f"{source}: tumorscan metadata is not JSON ({exc}); re-export it.") from exc
    if not isinstance(data, dict):
        raise MetadataError(f"{source}: tumorscan metadata must be a JSON object; re-export the model.")
    if _nesting(data) > MAX_NESTING:
        raise MetadataError(
            f"{source}: tumorscan metadata nests over {MAX_NESTING} levels deep; re-export the model."
        )
    problems = schema_problems(data, SPEC_SCHEMA)
    if problems:
        raise MetadataError(
            f"{source}: invalid tumorscan metadata: {'; '.join(problems)}; re-export the model."
        )
    return data
