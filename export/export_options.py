"""What an export is asked (`ExportOptions`) and what it gives back (`ExportedFile`, `ExportReport`).

`tumorscan.export.exporter` runs the export; the commands, the benchmark and the tests share these.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

from tumorscan import __version__
from tumorscan.sections import CalibrationSpec, ParityLimits
from tumorscan.spec import ModelSpec

from .formats import DEFAULT_CALIBRATION_METHOD, ExportTarget
from .parity import ParityReport, format_parity

REPORT_JSON = "export_report.json"
REPORT_TEXT = "export_report.txt"
OUTPUT_CHECK_IMAGES = 8
"""How many calibration scans (or noise images, without calibration) check the model's outputs."""

PROVENANCE_PACKAGES = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")

Log = Callable[[str], None]


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how.

    Attributes:
        targets: the format-modes to write (see `formats.select_targets`).
        out_dir: the output folder.
        calibration_root: folder of calibration scans, any layout (needed by int8 targets).
        calibration_count: how many calibration scans to use.
        seed: calibration selection seed.
        calibration_method: ONNX int8 calibration: minmax, entropy or percentile.
        allow_legacy: accept .h5 / SavedModel files.
        preprocess: normalisation to bake in front of a model without a tumorscan spec.
        labels: class names of a model without a tumorscan spec.
        logits: the model outputs logits; append a softmax.
        input_size: (height, width) when the model's input size is dynamic.
        parity_data: labelled folder to check each file against the model on, right after export;
            the results are stored in each file's metadata.
        parity_audit: audit.json of `parity_data`, to add its clean subset to the check.
        parity_limits: pass/fail limits of the check.
        auto_float: int8 targets keep the layers float that are faster in float or needed to pass
            parity on `parity_data` (`tumorscan.export.autofloat`), at most `max_float` for parity.
        max_float: the most layers reverted to float for parity.
    """

    targets: tuple[ExportTarget, ...]
    out_dir: Path
    calibration_root: Path | None = None
    calibration_count: int = 300
    seed: int = 0
    calibration_method: str = DEFAULT_CALIBRATION_METHOD
    allow_legacy: bool = False
    preprocess: str | None = None
    labels: tuple[str, ...] | None = None
    logits: bool = False
    input_size: tuple[int, int] | None = None
    parity_data: Path | None = None
    parity_audit: Path | None = None
    parity_limits: ParityLimits = field(default_factory=ParityLimits)
    auto_float: bool = False
    max_float: int = 4


@dataclass(frozen=True)
class ExportedFile:
    """One written model file, as reported."""

    target: str
    path: str
    size_bytes: int
    size_ratio: float
    """File size over the source .keras size."""
    seconds: float
    spec: ModelSpec
    """The spec read back from the file."""

    @property
    def summary(self) -> str:
        """One line on the embedded metadata: labels, input, quantization, calibration."""
        shape, quantization, calibration = self.spec.input, self.spec.quantization, self.spec.calibration
        parts = [f"{len(self.spec.labels)} labels", f"{shape.height}x{shape.width} {shape.normalization}"]
        if quantization is not None:
            parts += [
                f"weights {quantization.weights}",
                f"in {quantization.input_dtype} out {quantization.output_dtype}",
            ]
            if calibration is not None:
                parts.append(f"calibrated on {calibration.count} ({quantization.calibration_method})")
        return ", ".join(parts)


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote, from which source and calibration."""

    source: str
    source_size_bytes: int
    source_sha256: str
    files: tuple[ExportedFile, ...]
    calibration: CalibrationSpec | None = None
    calibration_notes: tuple[str, ...] = ()
    skipped_scans: tuple[tuple[str, str], ...] = ()
    parity: ParityReport | None = None

    def to_json(self) -> str:
        """Indented JSON of the whole report; each file's spec as embedded in it."""
        data = asdict(self)
        for record, exported in zip(data["files"], self.files, strict=True):
            record["spec"] = json.loads(exported.spec.to_json())
        data["calibration"] = self.calibration.to_dict() if self.calibration else None
        return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"

    def to_text(self) -> str:
        """A table of the files (size, ratio to the .keras, time, metadata), then calibration notes."""
        rows = [("file", "size", "ratio", "time", "metadata")]
        rows += [
            (
                Path(f.path).name,
                megabytes(f.size_bytes),
                f"{f.size_ratio:.2f}x",
                f"{f.seconds:.1f} s",
                f.summary,
            )
            for f in self.files
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        lines = [
            f"source: {self.source} ({megabytes(self.source_size_bytes)}, sha256 {self.source_sha256[:12]})"
        ]
        for row in rows:
            lines.append(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
                + "  "
                + row[-1]
            )
        if self.calibration:
            lines.append(
                f"calibration: {self.calibration.count} scans from {self.calibration.folder} "
                f"(seed {self.calibration.seed}, manifest sha256 {self.calibration.manifest_sha256[:12]})"
            )
        lines += [f"warning: {note}" for note in self.calibration_notes]
        lines += [f"skipped scan: {name}: {reason}" for name, reason in self.skipped_scans]
        if self.parity is not None:
            lines.append(format_parity(self.parity))
        return "\n".join(lines) + "\n"


def megabytes(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 10_000 else f"{size / 1e3:.1f} kB"


def provenance() -> dict[str, Any]:
    """Versions of the tools that wrote a file (tumorscan: `tumorscan.__version__`) and the UTC date."""
    versions: dict[str, Any] = {"tumorscan": __version__}
    for package in PROVENANCE_PACKAGES:
        try:
            versions[package] = package_metadata.version(package)
        except package_metadata.PackageNotFoundError:
            continue
    return {"tools": versions, "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
