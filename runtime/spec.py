"""The model spec: the one description of a model's labels, input and provenance.

It is serialised as JSON into every exported model file and parsed back with `json.loads`; the
runtime needs nothing else to use a model correctly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .errors import MetadataError

METADATA_KEY = "tumorscan"
"""Name of the metadata entry (TFLite metadata buffer, ONNX metadata_props key)."""

SPEC_VERSION = 1

NORMALIZATIONS = ("rescale", "symmetric", "caffe", "none")
"""What a model graph does to its 0-255 RGB input before the first layer:
rescale x/255; symmetric x/127.5-1; caffe (VGG16/ImageNet) RGB minus channel means; none."""

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

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.height, self.width)


@dataclass(frozen=True)
class ModelSpec:
    """Everything a deployed model file says about itself."""

    labels: tuple[str, ...]
    input: InputSpec
    architecture: str = "custom"
    source_sha256: str | None = None
    quantization: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    spec_version: int = SPEC_VERSION
    trust: dict[str, Any] | None = None
    """Temperature, abstention threshold and input-check ranges (`tumorscan.trust`); optional."""

    def with_updates(self, **changes: Any) -> ModelSpec:
        """Return a copy with some fields replaced."""
        return replace(self, **changes)

    def to_json(self) -> str:
        """Serialise to a compact, key-sorted JSON document."""
        data = asdict(self)
        data["labels"] = list(self.labels)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "model") -> ModelSpec:
        """Parse and validate a JSON document written by `to_json`."""
        try:
            data = json.loads(text)
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
                quantization=data.get("quantization"),
                calibration=data.get("calibration"),
                parity=data.get("parity"),
                provenance=dict(data.get("provenance") or {}),
                spec_version=version,
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
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            problems.append(f"labels must be at least two distinct names, got {list(self.labels)}")
        if self.input.height < 8 or self.input.width < 8:
            problems.append(f"input size {self.input.size} is too small")
        if self.input.channels != 3 or self.input.color != "RGB":
            problems.append("input must be 3-channel RGB")
        if self.input.normalization not in NORMALIZATIONS:
            problems.append(f"unknown normalization {self.input.normalization!r}")
        if problems:
            raise MetadataError(f"{source}: invalid tumorscan metadata: {'; '.join(problems)}.")
