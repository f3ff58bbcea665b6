"""The export formats and modes: one declarative table of what can be written and how.

Each row names a format, a mode, the function that writes it and whether it needs calibration
scans. Every writer has the same signature, `writer(job: ExportJob) -> Path`, and lives in
`tumorscan.export.tflite` or `tumorscan.export.onnx` (imported lazily: both pull in TensorFlow).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tumorscan.errors import MissingDependencyError, TumorscanError
from tumorscan.sections import CalibrationSpec, QuantizationSpec
from tumorscan.spec import ModelSpec

if TYPE_CHECKING:
    from tumorscan.calibration import CalibrationSet

    from .autofloat import AutoFloat

Writer = Callable[["ExportJob"], Path]

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
"""How ONNX int8 calibration picks activation ranges (TFLite's converter always uses min/max)."""
DEFAULT_CALIBRATION_METHOD = CALIBRATION_METHODS[0]


class UnknownTargetError(TumorscanError):
    """A format or mode name is unknown, or a format does not support a mode."""

    code = "unknown_target"


@dataclass(frozen=True)
class ExportTarget:
    """One model file to write: a format in a mode."""

    format: str
    mode: str
    writer: str
    """`module:function` of the writer, relative to tumorscan.export."""
    calibrated: bool
    description: str

    @property
    def suffix(self) -> str:
        """File suffix of the format (".tflite", ".onnx")."""
        return SUFFIXES[self.format]

    @property
    def name(self) -> str:
        """ "format-mode", as used in reports."""
        return f"{self.format}-{self.mode}"

    def output_path(self, folder: Path, stem: str) -> Path:
        """Where the file goes: <folder>/<stem>-<mode><suffix>."""
        return folder / f"{stem}-{self.mode}{self.suffix}"

    def load_writer(self) -> Writer:
        """Import and return the writer function."""
        module_name, function = self.writer.split(":")
        module = importlib.import_module(f"tumorscan.export.{module_name}")
        writer: Writer = getattr(module, function)
        return writer

    def write_spec(self, path: Path, spec: ModelSpec) -> None:
        """Replace the spec stored in a file this target wrote (e.g. to add parity results)."""
        module = importlib.import_module(f"tumorscan.export.{self.writer.split(':')[0]}")
        module.write_spec(path, spec)


@dataclass(frozen=True)
class ExportJob:
    """Everything a writer needs to write one file.

    Attributes:
        target: the format and mode to write.
        model: a Keras model taking RGB 0-255 float32 (N, H, W, 3) and returning class probabilities.
        spec: the model's spec without quantization or calibration; the writer adds them.
        path: the file to write (atomically).
        calibration: the scans that calibrate int8 quantization (None when no target needs them).
        calibration_summary: the spec's `calibration` section of calibrated files.
        calibration_method: ONNX calibration: minmax, entropy or percentile.
        auto_float: int8 targets: choose the layers that stay float (`tumorscan.export.autofloat`).
    """

    target: ExportTarget
    model: Any
    spec: ModelSpec
    path: Path
    calibration: CalibrationSet | None = None
    calibration_summary: CalibrationSpec | None = None
    calibration_method: str = DEFAULT_CALIBRATION_METHOD
    auto_float: AutoFloat | None = None

    def require_calibration(self) -> CalibrationSet:
        """The calibration set, which calibrated targets cannot do without."""
        if self.calibration is None:
            raise TumorscanError(
                f"{self.target.name} export needs calibration scans; pass --calibration DIR."
            )
        return self.calibration

    def file_spec(self, **quantization: Any) -> ModelSpec:
        """The spec to embed: the job's spec with this file's quantization and calibration.

        `quantization` holds the fields of `QuantizationSpec` the writer knows besides the mode.
        """
        return self.spec.with_updates(
            quantization=QuantizationSpec(mode=self.target.mode, **quantization),
            calibration=self.calibration_summary if self.target.calibrated else None,
        )


def import_optional(module: str, purpose: str) -> Any:
    """Import a dependency of the `export` extra, or raise MissingDependencyError naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".")[0], "export", purpose) from exc


SUFFIXES = {"tflite": ".tflite", "onnx": ".onnx"}

TARGETS: tuple[ExportTarget, ...] = (
    ExportTarget("tflite", "fp32", "tflite:write_fp32", False, "float32 weights and kernels"),
    ExportTarget("tflite", "fp16", "tflite:write_fp16", False, "float16 weights, float32 kernels"),
    ExportTarget("tflite", "dynamic", "tflite:write_dynamic", False, "int8 weights, float activations"),
    ExportTarget(
        "tflite", "int8", "tflite:write_int8", True, "int8 weights and kernels, uint8 input and output"
    ),
    ExportTarget("onnx", "fp32", "onnx:write_fp32", False, "float32 weights and kernels"),
    ExportTarget("onnx", "int8", "onnx:write_int8", True, "QDQ: int8 weights per channel, uint8 activations"),
)

FORMATS = tuple(dict.fromkeys(target.format for target in TARGETS))
MODES = tuple(dict.fromkeys(target.mode for target in TARGETS))


def _supported() -> str:
    return "; ".join(f"{fmt}: {', '.join(t.mode for t in TARGETS if t.format == fmt)}" for fmt in FORMATS)


def parse_names(text: str | Iterable[str], valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Split a comma-separated list (or take an iterable) of names, checking each against `valid`.

    Raises:
        UnknownTargetError: an unknown or empty name; the message lists the valid ones.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(dict.fromkeys(item.strip().lower() for item in items))
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise UnknownTargetError(f"unknown {what} {unknown or [text]}; choose from: {', '.join(valid)}.")
    return names


def select_targets(
    formats: str | Iterable[str] | None, modes: str | Iterable[str]
) -> tuple[ExportTarget, ...]:
    """The (format, mode) pairs to write, in table order.

    Args:
        formats: the formats asked for; None means every format that supports each mode.
        modes: the modes asked for.

    Raises:
        UnknownTargetError: an unknown name, or a format asked for that does not support a requested mode.
    """
    chosen_modes = parse_names(modes, MODES, "mode")
    table = {(target.format, target.mode): target for target in TARGETS}
    if formats is None:
        missing = [mode for mode in chosen_modes if not any((fmt, mode) in table for fmt in FORMATS)]
        chosen = tuple(t for t in TARGETS if t.mode in chosen_modes)
    else:
        chosen_formats = parse_names(formats, FORMATS, "format")
        missing = [
            f"{fmt} {mode}" for fmt in chosen_formats for mode in chosen_modes if (fmt, mode) not in table
        ]
        chosen = tuple(t for t in TARGETS if t.format in chosen_formats and t.mode in chosen_modes)
    if missing:
        raise UnknownTargetError(
            f"unsupported combination {', '.join(missing)}; supported modes per format: {_supported()}. "
            "Narrow --format or --mode."
        )
    return chosen
