"""Parity: every exported file measured against its original `.keras` model on the same pixels.

The original runs through Keras; each export runs through the runtime's Classifier, the code a
device runs. Both see the pixels decoded once by the shared preprocessing.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.classifier import Classifier
from tumorscan.errors import DatasetError, TumorscanError
from tumorscan.files import atomic_write_text
from tumorscan.sections import CleanParity, ParityLimits, ParitySpec
from tumorscan.spec import ModelSpec
from tumorscan.train.batches import in_batches, keras_outputs
from tumorscan.train.figures import new_figure, save_png
from tumorscan.train.keras_file import file_sha256, load_keras, require_keras_spec

if TYPE_CHECKING:
    from tumorscan.train.data import CachedScans


class ParityError(TumorscanError):
    """An export cannot be compared with the given original (other source model, other labels)."""

    code = "parity_mismatch"


@dataclass(frozen=True)
class Flip:
    """A scan whose top-1 prediction differs between original and export.

    `margin` is the original's top-1 probability minus its runner-up's; `tie` says the export gave its
    two highest classes the same probability (common with 8-bit outputs), so its top-1 is the first.
    """

    scan: str
    truth: str
    original: str
    exported: str
    margin: float
    tie: bool


@dataclass(frozen=True)
class SubsetParity:
    """Original against export on one set of scans."""

    scans: int
    original_accuracy: float
    export_accuracy: float
    drop_points: float
    agreement: float
    mean_abs_diff: float
    max_abs_diff: float
    original_recall: dict[str, float]
    export_recall: dict[str, float]
    flips: list[Flip]


@dataclass(frozen=True)
class ExportParity:
    """The parity of one exported file, on the full folder and (with an audit) its clean subset."""

    file: str
    quantization: str
    subsets: dict[str, SubsetParity]
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> ParitySpec:
        """The spec's `parity` section: the compact record stored in the exported file's metadata."""
        full, clean = self.subsets["all"], self.subsets.get("clean")
        return ParitySpec(
            scans=full.scans,
            original_accuracy=round(full.original_accuracy, 4),
            export_accuracy=round(full.export_accuracy, 4),
            agreement=round(full.agreement, 4),
            max_abs_diff=round(full.max_abs_diff, 5),
            passed=self.passed,
            clean=None
            if clean is None
            else CleanParity(
                scans=clean.scans,
                original_accuracy=round(clean.original_accuracy, 4),
                export_accuracy=round(clean.export_accuracy, 4),
                agreement=round(clean.agreement, 4),
            ),
        )


@dataclass(frozen=True)
class ParityReport:
    """Parity of several exports of one original on one labelled folder."""

    original: str
    original_sha256: str
    data: str
    labels: list[str]
    limits: ParityLimits
    exports: list[ExportParity]
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    excluded: int = 0

    @property
    def passed(self) -> bool:
        return all(export.passed for export in self.exports)

    def to_json(self) -> str:
        data = asdict(self)
        data["passed"] = self.passed
        for record, export in zip(data["exports"], self.exports, strict=True):
            record["passed"] = export.passed
        return json.dumps(data, indent=1, sort_keys=True)


def compare_probabilities(
    original: NDArray[np.float32],
    exported: NDArray[np.float32],
    truth: NDArray[np.integer],
    labels: Sequence[str],
    names: Sequence[str],
) -> SubsetParity:
    """Accuracy, agreement, flips, probability differences and recall of two prediction sets."""
    original_top = original.argmax(axis=1)
    exported_top = exported.argmax(axis=1)
    original_accuracy = float(np.mean(original_top == truth)) if len(truth) else 0.0
    export_accuracy = float(np.mean(exported_top == truth)) if len(truth) else 0.0
    differences = np.abs(original - exported)
    original_two = np.sort(original, axis=1)[:, -2:]  # a flip needs two classes or more
    exported_two = np.sort(exported, axis=1)[:, -2:]
    flips = [
        Flip(
            names[i],
            labels[truth[i]],
            labels[original_top[i]],
            labels[exported_top[i]],
            margin=float(original_two[i, 1] - original_two[i, 0]),
            tie=bool(exported_two[i, 1] == exported_two[i, 0]),
        )
        for i in np.flatnonzero(original_top != exported_top).tolist()
    ]
    return SubsetParity(
        scans=len(truth),
        original_accuracy=original_accuracy,
        export_accuracy=export_accuracy,
        drop_points=100.0 * (original_accuracy - export_accuracy),
        agreement=float(np.mean(original_top == exported_top)) if len(truth) else 1.0,
        mean_abs_diff=float(differences.mean()) if differences.size else 0.0,
        max_abs_diff=float(differences.max()) if differences.size else 0.0,
        original_recall=_recall(original_top, truth, labels),
        export_recall=_recall(exported_top, truth, labels),
        flips=flips,
    )


def _recall(
    predicted: NDArray[np.integer], truth: NDArray[np.integer], labels: Sequence[str]
) -> dict[str, float]:
    recall = {}
    for index, label in enumerate(labels):
        members = truth == index
        if members.any():
            recall[label] = float(np.mean(predicted[members] == index))
    return recall


def _failures(subset: SubsetParity, limits: ParityLimits) -> list[str]:
    failures = []
    if subset.agreement < limits.min_agreement:
        failures.append(f"top-1 agreement {subset.agreement:.2%} is below {limits.min_agreement:.2%}")
    if subset.drop_points > limits.max_drop:
        failures.append(f"accuracy drops {subset.drop_points:.2f} points, more than {limits.max_drop:g}")
    if limits.max_prob_diff is not None and subset.max_abs_diff > limits.max_prob_diff:
        failures.append(
            f"a probability differs by {subset.max_abs_diff:.5f}, more than {limits.max_prob_diff:g}"
        )
    return failures


def _check_provenance(
    original_sha256: str, original_spec: ModelSpec, export: Classifier, path: Path, allow_other_source: bool
) -> None:
    spec = export.spec
    if tuple(spec.labels) != tuple(original_spec.labels):
        raise ParityError(
            f"{path}: labels {list(spec.labels)} differ from the original's {list(original_spec.labels)}; "
            "compare an export with the model it came from."
        )
    if spec.source_sha256 != original_sha256:
        message = (
            f"{path}: was exported from a model with sha256 {str(spec.source_sha256)[:12]}, not from this "
            f"original ({original_sha256[:12]})"
        )
        if not allow_other_source:
            raise ParityError(
                message + "; pass the original it came from, or --allow-other-source to compare anyway."
            )
        warnings.warn(message + "; compared anyway.", stacklevel=2)


@dataclass(frozen=True)
class ParityCheck:
    """What a parity check compares on and how; `run_parity` documents each field."""

    data: Path
    audit: Path | None = None
    exclude_manifest: Path | None = None
    limits: ParityLimits = field(default_factory=ParityLimits)
    allow_other_source: bool = False
    progress: bool = True


def run_parity(
    original: Path,
    exported: Sequence[Path],
    data: Path,
    audit: Path | None = None,
    exclude_manifest: Path | None = None,
    limits: ParityLimits = ParityLimits(),
    allow_other_source: bool = False,
    progress: bool = True,
) -> ParityReport:
    """Measure each exported file against its original `.keras` on a labelled folder.

    Args:
        original: the `.keras` model the files were exported from (with its tumorscan spec).
        exported: `.tflite` / `.onnx` files written by tumor-export.
        data: class-folder dataset (e.g. the test split).
        audit: audit.json of `data` (tumor-audit); adds the clean subset.
        exclude_manifest: a calibration manifest; scans with the same bytes are left out.
        limits: pass/fail limits.
        allow_other_source: compare files whose metadata names another source model (warns).
        progress: progress bar while decoding.

    Raises:
        ParityError: an export's labels, input or source model differ from the original.
        DatasetError: missing folder, classes the model does not know, no readable scan.
    """
    spec = require_keras_spec(
        original,
        "for a model trained elsewhere, run the check at export time with tumor-export --parity DIR.",
    )
    check = ParityCheck(data, audit, exclude_manifest, limits, allow_other_source, progress)
    return measure_parity(load_keras(original), spec, file_sha256(original), str(original), exported, check)


def _load_exports(
    exported: Sequence[Path], spec: ModelSpec, original_sha256: str, allow_other_source: bool
) -> list[Classifier]:
    """Each exported file through the runtime, once its labels, source model and input match the original."""
    classifiers = [Classifier.load(path) for path in exported]
    for path, classifier in zip(exported, classifiers, strict=True):
        _check_provenance(original_sha256, spec, classifier, path, allow_other_source)
        if classifier.spec.input != spec.input:
            raise ParityError(
                f"{path}: input spec {classifier.spec.input} differs from the original's {spec.input}."
            )
    return classifiers


def _load_subsets(
    spec: ModelSpec, check: ParityCheck
) -> tuple[CachedScans, dict[str, NDArray[np.int64]], int]:
    """The decoded folder, the rows of each subset ("all", and "clean" with an audit) and how many
    calibration scans were left out."""
    from tumorscan.train.data import load_dataset

    data, audit, exclude_manifest = check.data, check.audit, check.exclude_manifest
    scans = load_dataset(data, spec.input.size, cache_dir=None, labels=spec.labels, progress=check.progress)
    rows = np.arange(len(scans), dtype=np.int64)
    excluded = 0
    if exclude_manifest is not None:
        rows, excluded = _without_manifest(scans.sha256, rows, exclude_manifest)
    if not len(rows):
        raise DatasetError(f"{data}: no scans left to compare.")
    subsets = {"all": rows}
    if audit is not None:
        from tumorscan.train.audit import load_clean_subset

        subsets["clean"] = np.intersect1d(rows, scans.rows_in(load_clean_subset(audit)))
    return scans, subsets, excluded


def _compare_subsets(
    expected: NDArray[np.float32],
    probabilities: NDArray[np.float32],
    scans: CachedScans,
    subsets: dict[str, NDArray[np.int64]],
    labels: Sequence[str],
) -> dict[str, SubsetParity]:
    """`compare_probabilities` on each subset; the predictions are in the order of the rows of "all"."""
    position = {row: i for i, row in enumerate(subsets["all"])}
    names = scans.relative_paths()
    by_subset = {}
    for name, subset_rows in subsets.items():
        index = np.array([position[row] for row in subset_rows], dtype=np.int64)
        by_subset[name] = compare_probabilities(
            expected[index],
            probabilities[index],
            scans.label_ids[subset_rows],
            labels,
            [names[row] for row in subset_rows],
        )
    return by_subset


def measure_parity(
    model: Any,
    spec: ModelSpec,
    original_sha256: str,
    original_name: str,
    exported: Sequence[Path],
    check: ParityCheck,
) -> ParityReport:
    """`run_parity` on a loaded Keras model (taking RGB 0-255) described by `spec`."""
    classifiers = _load_exports(exported, spec, original_sha256, check.allow_other_source)
    scans, subsets, excluded = _load_subsets(spec, check)
    pixels = np.asarray(scans.pixels[subsets["all"]])
    reference = keras_outputs(model, pixels)
    results = []
    for path, classifier in zip(exported, classifiers, strict=True):
        probabilities = in_batches(classifier.probabilities, pixels)
        # compare what the runtime reports: the original's probabilities with the file's temperature
        expected = classifier.trust.calibrate(reference) if classifier.trust else reference
        by_subset = _compare_subsets(expected, probabilities, scans, subsets, spec.labels)
        quantization = classifier.spec.quantization.mode if classifier.spec.quantization else "fp32"
        results.append(
            ExportParity(str(path), quantization, by_subset, _failures(by_subset["all"], check.limits))
        )
    return ParityReport(
        original=original_name,
        original_sha256=original_sha256,
        data=str(check.data),
        labels=list(spec.labels),
        limits=check.limits,
        exports=results,
        unreadable=[(str(path), reason) for path, reason in scans.unreadable],
        excluded=excluded,
    )


def _without_manifest(
    sha256: Sequence[str], rows: NDArray[np.int64], manifest: Path
) -> tuple[NDArray[np.int64], int]:
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["entries"]
        used = {entry["sha256"] for entry in entries}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(
            f"{manifest}: not a calibration manifest written by tumor-export ({exc})."
        ) from exc
    keep = np.array([row for row in rows if sha256[row] not in used], dtype=np.int64)
    return keep, len(rows) - len(keep)


def format_parity(report: ParityReport) -> str:
    """A readable table: one row per export and subset, then the flipped scans."""
    header = (
        f"{'export':<34} {'subset':<6} {'scans':>5} {'orig acc':>8} {'export acc':>10} {'drop':>6} "
        f"{'agree':>7} {'mean|dp|':>9} {'max|dp|':>8}  result"
    )
    lines = [f"original {report.original} (sha256 {report.original_sha256[:12]}) on {report.data}", header]
    for export in report.exports:
        for name, subset in export.subsets.items():
            result = ("PASS" if export.passed else "FAIL") if name == "all" else ""
            lines.append(
                f"{Path(export.file).name:<34} {name:<6} {subset.scans:>5} {subset.original_accuracy:>8.2%} "
                f"{subset.export_accuracy:>10.2%} {subset.drop_points:>6.2f} {subset.agreement:>7.2%} "
                f"{subset.mean_abs_diff:>9.5f} {subset.max_abs_diff:>8.5f}  {result}"
            )
    lines.append(
        f"limits: agreement >= {report.limits.min_agreement:.2%}, "
        f"accuracy drop <= {report.limits.max_drop:g} points"
        + (f", |dp| <= {report.limits.max_prob_diff:g}" if report.limits.max_prob_diff is not None else "")
    )
    for export in report.exports:
        for failure in export.failures:
            lines.append(f"FAIL {Path(export.file).name}: {failure}")
        flips = export.subsets["all"].flips
        if flips:
            lines.append(f"{Path(export.file).name}: {len(flips)} flipped scans")
            lines += [
                f"  {f.scan}: truth {f.truth}, original {f.original}, export {f.exported}"
                f" (original margin {f.margin:.3f}{', tie in the export' if f.tie else ''})"
                for f in flips
            ]
    if report.unreadable:
        lines.append(f"{len(report.unreadable)} unreadable scans skipped:")
        lines += [f"  {path}: {reason}" for path, reason in report.unreadable]
    if report.excluded:
        lines.append(f"{report.excluded} calibration scans excluded")
    return "\n".join(lines)


def plot_recall(report: ParityReport, path: Path) -> None:
    """Per-class recall of the original and each export, side by side (PNG)."""
    labels = report.labels
    series = (
        [("original (Keras)", report.exports[0].subsets["all"].original_recall)] if report.exports else []
    )
    series += [(Path(e.file).name, e.subsets["all"].export_recall) for e in report.exports]
    width = 0.8 / max(len(series), 1)
    figure = new_figure(figsize=(max(6, 1.8 * len(labels) + 0.6 * len(series)), 4), layout="tight")
    axes = figure.subplots()
    positions = np.arange(len(labels))
    for index, (name, recall) in enumerate(series):
        axes.bar(positions + index * width, [recall.get(label, 0.0) for label in labels], width, label=name)
    axes.set_xticks(positions + width * (len(series) - 1) / 2, labels)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("recall")
    axes.set_title(f"Per-class recall on {Path(report.data).name}")
    axes.legend(fontsize="small")
    save_png(figure, path)


def write_parity(report: ParityReport, out: Path) -> None:
    """parity.json, parity.txt and parity_recall.png in `out`."""
    atomic_write_text(out / "parity.json", report.to_json() + "\n")
    atomic_write_text(out / "parity.txt", format_parity(report) + "\n")
    plot_recall(report, out / "parity_recall.png")
