"""Exporting a Keras classifier to TFLite and ONNX files that describe themselves.

`export_model` loads the model safely, prepares it (baked normalisation, softmax), checks its
outputs, selects the calibration scans once for every quantizer, writes each requested
format-mode through its writer (see `tumorscan.export.formats`), reads each file's embedded spec
back, and writes a report (export_report.json and export_report.txt) next to the files.
"""

from __future__ import annotations

import itertools
import os
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tumorscan.errors import MetadataError, TumorscanError
from tumorscan.files import atomic_write_text
from tumorscan.folders import refuse_split_roots
from tumorscan.metadata import read_model_spec
from tumorscan.sections import CalibrationSpec
from tumorscan.spec import InputSpec, ModelSpec
from tumorscan.train.distance import read_distance, with_distance_output
from tumorscan.train.keras_file import file_sha256, load_keras, read_keras_spec

from .adapt import check_classifier
from .export_options import OUTPUT_CHECK_IMAGES as OUTPUT_CHECK_IMAGES
from .export_options import REPORT_JSON as REPORT_JSON
from .export_options import REPORT_TEXT as REPORT_TEXT
from .export_options import ExportedFile as ExportedFile
from .export_options import ExportOptions as ExportOptions
from .export_options import ExportReport as ExportReport
from .export_options import Log, megabytes
from .export_options import provenance as provenance
from .formats import CALIBRATION_METHODS, ExportJob, ExportTarget, parse_names
from .graph import check_output_shape, check_probabilities, model_input_size, prepare_model
from .parity import (
    ExportParity,
    ParityCheck,
    ParityReport,
    measure_parity,
    write_parity,
)

if TYPE_CHECKING:
    from tumorscan.calibration import CalibrationSet

    from .autofloat import AutoFloat


def _store_parity(exported: ExportedFile, target: ExportTarget, parity: ExportParity) -> ExportedFile:
    """Write the parity results into the file's spec; the report shows the spec read back."""
    path = Path(exported.path)
    target.write_spec(path, read_model_spec(path).with_updates(parity=parity.summary()))
    return replace(exported, spec=read_model_spec(path))


def ensure_writable(folder: Path) -> None:
    """Check, before any slow work, that `folder` can be created and written; nothing is created here.

    The folder is created by the first file written into it, once the inputs have proved valid.

    Raises:
        TumorscanError: the folder (or its nearest existing parent) is not a writable folder.
    """
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable"
    if problem is not None:
        raise TumorscanError(f"{folder}: cannot write here ({problem}); choose another --out folder.")


def _own_spec(model_path: Path, options: ExportOptions) -> ModelSpec | None:
    """The spec stored in a .keras file, refusing the options meant for models without one."""
    if model_path.suffix.lower() != ".keras" or not model_path.is_file():
        return None
    spec = read_keras_spec(model_path)
    given = [
        name
        for name, value in (
            ("--labels", options.labels),
            ("--preprocess", options.preprocess),
            ("--input-size", options.input_size),
        )
        if value is not None
    ]
    if spec is not None and given:
        raise TumorscanError(
            f"{model_path}: carries its own tumorscan spec (labels, input size, normalisation), so "
            f"{', '.join(given)} (meant for models without one) must be left out."
        )
    return spec


def _foreign_spec(model: Any, size: tuple[int, int], options: ExportOptions, source: str) -> ModelSpec:
    """The spec of a model without one, from --labels, --preprocess and its input size."""
    labels, preprocess = options.labels, options.preprocess
    if labels is None or preprocess is None:
        options_needed = {
            "--labels a,b,c (one name per output, in output order)": labels,
            "--preprocess rescale|symmetric|caffe|none (none: the graph normalises 0-255)": preprocess,
        }
        missing = " and ".join(option for option, value in options_needed.items() if value is None)
        raise MetadataError(f"{source}: carries no tumorscan spec; pass {missing}.")
    return ModelSpec(
        labels=labels,
        input=InputSpec(*size, normalization=preprocess),
        architecture=str(getattr(model, "name", "custom")),
    )


def _select_calibration(
    root: Path,
    options: ExportOptions,
    size: tuple[int, int],
    log: Log,
    progress: bool,
) -> CalibrationSet:
    from tumorscan.calibration import CalibrationWarning, select_calibration

    log(f"Selecting {options.calibration_count} calibration scans from {root} (seed {options.seed})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # reported through `log` and the report
        calibration = select_calibration(
            root,
            size,
            count=options.calibration_count,
            seed=options.seed,
            progress=progress,
        )
    for note in calibration.warnings:
        log(f"warning: {note}")
    return calibration


def _sample_pixels(calibration: CalibrationSet | None, size: tuple[int, int], seed: int) -> np.ndarray:
    """A few images to check the model's outputs on: calibration scans, or seeded noise without them."""
    if calibration is not None:
        return np.stack(list(itertools.islice(calibration.iter_pixels(), OUTPUT_CHECK_IMAGES)))
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(OUTPUT_CHECK_IMAGES, *size, 3), dtype=np.uint8)


def _write_timed(job: ExportJob, source_size: int, log: Log) -> ExportedFile:
    """Run the target's writer, time it, read the embedded spec back and log the size."""
    log(f"Writing {job.target.name} ({job.target.description})")
    start = time.perf_counter()
    path = job.target.load_writer()(job)
    seconds = time.perf_counter() - start
    size = path.stat().st_size
    spec = read_model_spec(path)
    log(f"  {path}: {megabytes(size)} in {seconds:.1f} s")
    return ExportedFile(
        target=job.target.name,
        path=str(path),
        size_bytes=size,
        size_ratio=size / source_size,
        seconds=round(seconds, 3),
        spec=spec,
    )


def _silent(message: str) -> None:
    """A log that says nothing."""


def _auto_float(
    prepared: Any, spec: ModelSpec, options: ExportOptions, manifest: Path | None, log: Log, progress: bool
) -> AutoFloat | None:
    """The float-layer search of the int8 targets, judged on the --parity folder (None when off)."""
    if not options.auto_float or options.parity_data is None:
        return None
    from .autofloat import AutoFloat, load_held_out

    log(f"Decoding {options.parity_data} to choose float layers")
    held_out = load_held_out(prepared, spec, options.parity_data, manifest, progress)
    return AutoFloat(held_out, options.parity_limits, options.max_float, log=log)


def _calibration_root(options: ExportOptions) -> Path | None:
    """Check the options against each other before any slow work; the calibration folder (None: none needed).

    Raises:
        TumorscanError: an unknown calibration method, int8 targets without --calibration, split roots,
            --auto-float without --parity, or an output folder that cannot be written.
    """
    parse_names([options.calibration_method], CALIBRATION_METHODS, "calibration method")
    calibrated = [target.name for target in options.targets if target.calibrated]
    root = options.calibration_root if calibrated else None
    if calibrated and root is None:
        raise TumorscanError(
            f"{', '.join(calibrated)} need calibration scans: pass --calibration DIR, a folder of scans "
            "like the training set."
        )
    refuse_split_roots(root, options.parity_data)
    if options.auto_float and options.parity_data is None:
        raise TumorscanError(
            "--auto-float needs a labelled folder to judge parity on: pass --parity DIR "
            "(e.g. the test split)."
        )
    ensure_writable(options.out_dir)
    return root


@dataclass(frozen=True)
class _Source:
    """The source model, loaded, checked and prepared for export, with its spec and input size."""

    path: Path
    own_spec: ModelSpec | None
    """The spec the .keras file carries (None for a model trained elsewhere)."""
    spec: ModelSpec
    input_size: tuple[int, int]
    prepared: Any
    size_bytes: int

    @property
    def name(self) -> str:
        return str(self.path)


def _load_source(model_path: Path, options: ExportOptions, log: Log) -> _Source:
    """Load the model safely, read (or build) its spec, prepare it and check its output shape."""
    source = str(model_path)
    own_spec = _own_spec(model_path, options)
    log(f"Loading {model_path}")
    model = load_keras(model_path, allow_legacy=options.allow_legacy)
    check_classifier(model, source)
    size = model_input_size(model, own_spec.input.size if own_spec else options.input_size, source)
    spec = own_spec or _foreign_spec(model, size, options, source)
    prepared = prepare_model(model, size, options.preprocess or "none", options.logits)
    check_output_shape(prepared, spec.labels, source)
    return _Source(model_path, own_spec, spec, size, prepared, model_path.stat().st_size)


@dataclass(frozen=True)
class _Calibration:
    """The scans that calibrate the int8 targets, their record for the spec and their manifest file."""

    scans: CalibrationSet | None = None
    summary: CalibrationSpec | None = None
    manifest: Path | None = None


def _choose_calibration(
    root: Path | None, source: _Source, options: ExportOptions, log: Log, progress: bool
) -> _Calibration:
    """Select the calibration scans, check the model's outputs on the first ones, write the manifest."""
    size, stem = source.input_size, source.path.stem
    calibration = None if root is None else _select_calibration(root, options, size, log, progress)
    check_probabilities(
        source.prepared, _sample_pixels(calibration, size, options.seed), options.logits, source.name
    )
    summary = None
    if calibration is not None:
        summary = calibration.describe()
        calibration.write_manifest(options.out_dir / f"{stem}-calibration.json")
    manifest = options.out_dir / f"{stem}-calibration.json" if calibration is not None else None
    return _Calibration(calibration, summary, manifest)


def _for_export(source: _Source) -> tuple[ModelSpec, Any]:
    """The spec every file embeds (source hash, tool versions) and the model to write.

    A calibrated tumorscan model gets its distance output (the input check) appended.
    """
    model_path, own_spec, prepared = source.path, source.own_spec, source.prepared
    spec = source.spec.with_updates(source_sha256=file_sha256(model_path), provenance=provenance())
    distance = read_distance(model_path) if own_spec is not None and own_spec.trust else None
    exported_model = prepared if distance is None else with_distance_output(prepared, distance, source.name)
    return spec, exported_model


def _write_files(
    source: _Source,
    spec: ModelSpec,
    exported_model: Any,
    calibration: _Calibration,
    auto_float: AutoFloat | None,
    options: ExportOptions,
    log: Log,
) -> tuple[ExportedFile, ...]:
    """Write every requested format-mode, in order, each through its writer."""
    stem, summary = source.path.stem, calibration.summary
    return tuple(
        _write_timed(
            ExportJob(
                target=target,
                model=exported_model,
                spec=spec,
                path=target.output_path(options.out_dir, stem),
                calibration=calibration.scans,
                calibration_summary=summary,
                calibration_method=options.calibration_method,
                auto_float=auto_float if target.calibrated else None,
            ),
            source.size_bytes,
            log,
        )
        for target in options.targets
    )


def _check_parity(
    source: _Source,
    spec: ModelSpec,
    files: tuple[ExportedFile, ...],
    manifest: Path | None,
    options: ExportOptions,
    log: Log,
    progress: bool,
) -> tuple[tuple[ExportedFile, ...], ParityReport | None]:
    """With --parity: measure each file against the model, write parity.*, store the results in each file."""
    if options.parity_data is None:
        return files, None
    log(f"Checking parity on {options.parity_data}")
    parity = measure_parity(
        source.prepared,
        spec,
        str(spec.source_sha256),
        source.name,
        [Path(f.path) for f in files],
        ParityCheck(
            options.parity_data,
            options.parity_audit,
            manifest,
            options.parity_limits,
            progress=progress,
        ),
    )
    write_parity(parity, options.out_dir)
    files = tuple(
        _store_parity(f, target, result)
        for f, target, result in zip(files, options.targets, parity.exports, strict=True)
    )
    return files, parity


def _write_report(
    source: _Source,
    spec: ModelSpec,
    files: tuple[ExportedFile, ...],
    calibration: _Calibration,
    parity: ParityReport | None,
    out_dir: Path,
) -> ExportReport:
    """The export report, written as export_report.json and export_report.txt in `out_dir`."""
    scans = calibration.scans
    report = ExportReport(
        source=source.name,
        source_size_bytes=source.size_bytes,
        source_sha256=str(spec.source_sha256),
        files=files,
        calibration=calibration.summary,
        calibration_notes=scans.warnings if scans else (),
        skipped_scans=scans.skipped if scans else (),
        parity=parity,
    )
    atomic_write_text(out_dir / REPORT_JSON, report.to_json())
    atomic_write_text(out_dir / REPORT_TEXT, report.to_text())
    return report


def export_model(
    model_path: Path, options: ExportOptions, log: Log = _silent, progress: bool = False
) -> ExportReport:
    """Export a Keras classifier to every requested format-mode, with the spec embedded in each file.

    Args:
        model_path: a .keras file (or, with `allow_legacy`, an .h5 file).
        options: targets, output folder, calibration and the description of foreign models.
        log: receives progress messages.
        progress: show a progress bar on stderr while calibration scans are decoded.

    Returns:
        The report, also written to export_report.json and export_report.txt in the output folder.

    Raises:
        TumorscanError: (or a subclass) for every problem with the inputs, named with what to do.
    """
    root = _calibration_root(options)
    source = _load_source(model_path, options, log)
    calibration = _choose_calibration(root, source, options, log, progress)
    spec, exported_model = _for_export(source)
    auto_float = _auto_float(source.prepared, spec, options, calibration.manifest, log, progress)
    files = _write_files(source, spec, exported_model, calibration, auto_float, options, log)
    files, parity = _check_parity(source, spec, files, calibration.manifest, options, log, progress)
    return _write_report(source, spec, files, calibration, parity, options.out_dir)
