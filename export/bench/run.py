"""`tumor-bench`: every format of a model measured side by side, on this machine, in one run.

For each `.keras` model and each format (Keras itself; TFLite fp32, fp16, dynamic and int8; ONNX
fp32 and int8), a fresh worker process (`tumorscan.export.bench.worker`) loads the file and measures
import and load time, the latency of the bare model call on one pre-decoded scan, the end-to-end
latency (file in, label out), throughput at a batch size and its peak memory, then saves its
probabilities on every scan of the data, from which accuracy and agreement with Keras follow. The
runtime formats run through `tumorscan.Classifier`, the code a device runs, and never import
TensorFlow. Cold start: `tumor-infer` on one scan as a fresh process, against Keras doing the same.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import PIL
from numpy.typing import NDArray

from tumorscan.errors import TumorscanError
from tumorscan.folders import refuse_split_roots
from tumorscan.spec import ModelSpec
from tumorscan.train.keras_file import file_sha256, require_keras_spec

from ..exporter import provenance
from ..formats import TARGETS, parse_names
from ..parity import compare_probabilities
from .ratios import compute_ratios
from .report import (
    BASELINE,
    FAILED,
    INFER,
    KERAS,
    NOT_EXPORTED,
    OK,
    TFLITE_INT8,
    BenchReport,
    ColdStart,
    FormatResult,
    ModelBench,
    Timing,
)

if TYPE_CHECKING:
    from tumorscan.train.data import CachedScans

BENCH_FORMATS = (KERAS, *(target.name for target in TARGETS))
"""What can be measured: "keras" and every export target ("tflite-int8", "onnx-fp32", ...)."""

WORKER_MODULE = "tumorscan.export.bench.worker"
WORKER_TIMEOUT_S = 3600
COLD_START_TIMEOUT_S = 600
ERROR_LINES = 3
"""How many last lines of a failed process's stderr the report keeps."""

INFER_SCRIPT = "import sys; from tumorscan.cli import infer_command; sys.exit(infer_command())"
"""What the `tumor-infer` console script runs."""

Log = Callable[[str], None]


@dataclass(frozen=True)
class BenchOptions:
    """How to benchmark.

    Attributes:
        data: labelled class-folder dataset: accuracy, agreement, and the scans that are timed.
        exports: folder of the exported files; None: `export/` beside each model (tumor-export's default).
        formats: which of BENCH_FORMATS to measure.
        runs: timed calls per latency, after `warmup` untimed ones.
        warmup: untimed calls before each latency.
        batch_size: images per call for throughput and accuracy.
        threads: CPU threads of every runtime (TFLite, onnxruntime, TensorFlow).
        cold_runs: timed fresh processes per cold start, after one untimed run; 0 skips cold starts.
        progress: progress bar while the data is decoded.
        baseline: folder of other exports of the same model (e.g. all-int8 beside --auto-float files):
            each int8 file there is measured too, as "<format> baseline".
    """

    data: Path
    exports: Path | None = None
    formats: tuple[str, ...] = BENCH_FORMATS
    runs: int = 50
    warmup: int = 5
    batch_size: int = 16
    threads: int = 2
    cold_runs: int = 3
    progress: bool = False
    baseline: Path | None = None


class WorkerError(TumorscanError):
    """A benchmark process failed; the message ends with its last error lines."""

    code = "bench_worker_failed"


def _silent(message: str) -> None:
    """A log that says nothing."""


def format_file(model: Path, folder: Path, name: str) -> Path:
    """Where a format of `model` lives: the .keras itself, or <folder>/<stem>-<mode>.<suffix>."""
    if name == KERAS:
        return model
    target = next(target for target in TARGETS if target.name == name)
    return target.output_path(folder, model.stem)


def machine_info() -> dict[str, Any]:
    """CPU model, cores, OS, Python, package versions and the UTC date."""
    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), cpu)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = provenance()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {**info["tools"], "numpy": np.__version__, "pillow": PIL.__version__},
        "date_utc": info["date_utc"],
    }


def _environment() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}


def _last_lines(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-ERROR_LINES:]) or "no error output"


def run_worker(job: dict[str, Any], job_path: Path) -> dict[str, Any]:
    """Run one measurement job in a fresh worker process and return what it printed.

    Raises:
        WorkerError: the process failed, timed out or printed no result.
    """
    job_path.write_text(json.dumps(job), encoding="utf-8")
    try:
        done = subprocess.run(
            [sys.executable, "-m", WORKER_MODULE, str(job_path)],
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT_S,
            env=_environment(),
        )
    except subprocess.TimeoutExpired as exc:
        raise WorkerError(f"{job['model']}: no result within {WORKER_TIMEOUT_S} s.") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise WorkerError(f"exit status {done.returncode}: {_last_lines(done.stderr)}")
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except ValueError as exc:
        raise WorkerError(f"printed no result: {_last_lines(done.stdout)}") from exc
    return result


def _measure(
    name: str, path: Path, job: dict[str, Any], workdir: Path
) -> tuple[FormatResult, NDArray[np.float32] | None]:
    """One format's row, and its probabilities on the data (None when it could not be measured)."""
    if not path.is_file():
        return FormatResult(name, str(path), NOT_EXPORTED), None
    probabilities = workdir / f"{name}.npy"
    job = {**job, "format": name, "model": str(path), "probabilities": str(probabilities)}
    size = path.stat().st_size
    try:
        measured = run_worker(job, workdir / f"{name}.json")
    except WorkerError as exc:
        return FormatResult(name, str(path), FAILED, error=str(exc), size_bytes=size), None
    row = FormatResult(
        format=name,
        file=str(path),
        status=OK,
        size_bytes=size,
        backend=measured["backend"],
        import_s=measured["import_s"],
        load_s=measured["load_s"],
        latency_ms=Timing(**measured["latency_ms"]),
        e2e_ms=Timing(**measured["e2e_ms"]),
        throughput=measured["throughput"],
        peak_rss_mb=measured["peak_rss_mb"],
        tensorflow_imported=measured["tensorflow_imported"],
        source_sha256=measured["source_sha256"],
        pipeline=measured.get("pipeline"),
    )
    return row, np.load(probabilities)


def _progress_line(row: FormatResult) -> str:
    if row.status != OK or row.latency_ms is None or row.e2e_ms is None:
        return f"  {row.status}" + (f": {row.error}" if row.error else f" ({row.file})")
    return (
        f"  load {row.load_s:.2f} s, model call {row.latency_ms.median:.2f} ms, "
        f"file to label {row.e2e_ms.median:.2f} ms, peak RSS {row.peak_rss_mb:.0f} MB"
    )


def _with_quality(
    rows: Sequence[FormatResult],
    probabilities: dict[str, NDArray[np.float32]],
    truth: NDArray[np.int32],
    labels: Sequence[str],
    names: Sequence[str],
) -> list[FormatResult]:
    """Rows with accuracy, and agreement with Keras when Keras was measured."""
    reference = probabilities.get(KERAS)
    results = []
    for row in rows:
        found = probabilities.get(row.format)
        if found is None:
            results.append(row)
        elif reference is None:
            results.append(replace(row, accuracy=float(np.mean(found.argmax(axis=1) == truth))))
        else:
            parity = compare_probabilities(reference, found, truth, labels, names)
            results.append(
                replace(
                    row,
                    accuracy=parity.export_accuracy,
                    agreement=parity.agreement,
                    max_abs_diff=parity.max_abs_diff,
                )
            )
    return results


def cold_start(
    name: str, file: Path, command: list[str], runs: int, label_of: Callable[[str], str]
) -> ColdStart:
    """Time a fresh process from its start to its result: one untimed run, then `runs` timed ones.

    `label_of` reads the label from the last line the command prints.
    """
    seconds: list[float] = []
    last_line = ""
    for attempt in range(runs + 1):
        started = time.perf_counter()
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=COLD_START_TIMEOUT_S, env=_environment()
            )
        except subprocess.TimeoutExpired:
            return ColdStart(name, str(file), command, error=f"no result within {COLD_START_TIMEOUT_S} s")
        elapsed = time.perf_counter() - started
        if done.returncode != 0 or not done.stdout.strip():
            return ColdStart(
                name, str(file), command, error=f"exit status {done.returncode}: {_last_lines(done.stderr)}"
            )
        last_line = done.stdout.strip().splitlines()[-1]
        if attempt:
            seconds.append(elapsed)
    return ColdStart(name, str(file), command, seconds, statistics.median(seconds), label_of(last_line))


def _cold_starts(rows: Sequence[FormatResult], scan: Path, options: BenchOptions) -> dict[str, ColdStart]:
    """tumor-infer on the int8 TFLite file (else the first measured export), and Keras, on one scan."""
    if not options.cold_runs:
        return {}
    measured = {row.format: Path(str(row.file)) for row in rows if row.status == OK}
    exports = [name for name in (TFLITE_INT8, *measured) if name in measured and name != KERAS]
    threads = str(options.threads)
    cold = {}
    if exports:
        file = measured[exports[0]]
        command = [sys.executable, "-c", INFER_SCRIPT, "--model", str(file), "--threads", threads]
        command += ["--jsonl", str(scan)]
        cold[INFER] = cold_start(
            INFER, file, command, options.cold_runs, lambda line: str(json.loads(line)["label"])
        )
    if KERAS in measured:
        file = measured[KERAS]
        command = [sys.executable, "-m", WORKER_MODULE, "keras-predict", str(file), str(scan), threads]
        cold[KERAS] = cold_start(KERAS, file, command, options.cold_runs, str.strip)
    return cold


def _keras_spec(model: Path) -> ModelSpec:
    return require_keras_spec(model, "benchmark models saved by tumor-train.")


def _notes(model: Path, folder: Path, rows: Sequence[FormatResult]) -> list[str]:
    """Warnings: no exports at all, or exports made from another model."""
    notes = []
    if all(row.status == NOT_EXPORTED for row in rows if row.format != KERAS):
        notes.append(f"no exported files in {folder}; run tumor-export {model} first, or pass --exports DIR.")
    exported = [row for row in rows if row.source_sha256 is not None]
    if exported:
        sha256 = file_sha256(model)
        notes += [
            f"{Path(str(row.file)).name} was exported from another model "
            f"(sha256 {str(row.source_sha256)[:12]}, "
            f"not {sha256[:12]}); re-export it for a fair comparison."
            for row in exported
            if row.source_sha256 != sha256
        ]
    return notes


def _files_to_measure(model: Path, folder: Path, options: BenchOptions) -> list[tuple[str, Path]]:
    """(name, file) of each requested format, then of each int8 format's baseline (with --baseline)."""
    measured = [(name, format_file(model, folder, name)) for name in options.formats]
    if options.baseline is not None:
        measured += [
            (f"{name} {BASELINE}", format_file(model, options.baseline, name))
            for name in options.formats
            if name.endswith("-int8")
        ]
    return measured


def _measure_formats(
    model: Path,
    folder: Path,
    scans: CachedScans,
    size: tuple[int, int],
    options: BenchOptions,
    log: Log,
) -> tuple[list[FormatResult], dict[str, NDArray[np.float32]]]:
    """Measure each format (and its baseline) in turn, the decoded scans shared through a temporary file.

    Returns:
        A row per format, and the probabilities of each format that gave them.
    """
    height, width = size
    timed_scans = [str(scans.paths[i % len(scans)]) for i in range(options.warmup + options.runs)]
    rows: list[FormatResult] = []
    probabilities: dict[str, NDArray[np.float32]] = {}
    with tempfile.TemporaryDirectory(prefix="tumor-bench-") as temporary:
        workdir = Path(temporary)
        pixels = workdir / "pixels.u8"
        np.ascontiguousarray(scans.pixels).tofile(pixels)
        job = {
            "pixels": str(pixels),
            "count": len(scans),
            "size": [height, width],
            "scans": timed_scans,
            "all_scans": [str(path) for path in scans.paths],
            "runs": options.runs,
            "warmup": options.warmup,
            "batch_size": options.batch_size,
            "threads": options.threads,
        }
        measured = _files_to_measure(model, folder, options)
        for index, (name, path) in enumerate(measured, start=1):
            log(f"{model}: {name} ({index}/{len(measured)})")
            row, found = _measure(name, path, job, workdir)
            log(_progress_line(row))
            rows.append(row)
            if found is not None:
                probabilities[name] = found
    return rows, probabilities


def bench_model(model: Path, options: BenchOptions, log: Log = _silent) -> ModelBench:
    """Measure every requested format of one .keras model (see the module docstring).

    Raises:
        MetadataError: the model holds no tumorscan spec.
        DatasetError: the data folder is missing, empty or has classes the model does not know.
    """
    from tumorscan.train.data import load_dataset

    spec = _keras_spec(model)
    folder = options.exports or model.parent / "export"
    height, width = spec.input.size
    log(f"Decoding {options.data} at {height}x{width}")
    scans = load_dataset(options.data, spec.input.size, labels=spec.labels, progress=options.progress)
    rows, probabilities = _measure_formats(model, folder, scans, (height, width), options, log)
    rows = _with_quality(rows, probabilities, scans.label_ids, spec.labels, scans.relative_paths())
    log(f"{model}: cold starts on {scans.paths[0].name}")
    bench = ModelBench(
        model=str(model),
        architecture=spec.architecture,
        input_size=(height, width),
        data=str(options.data),
        scans=len(scans),
        unreadable=len(scans.unreadable),
        formats=tuple(rows),
        cold_start=_cold_starts(rows, scans.paths[0], options),
        notes=tuple(_notes(model, folder, rows)),
    )
    return replace(bench, ratios=compute_ratios(bench))


def run_bench(models: Sequence[Path], options: BenchOptions, log: Log = _silent) -> BenchReport:
    """Benchmark each model in turn (see `bench_model`); machine and settings recorded alongside."""
    parse_names(options.formats, BENCH_FORMATS, "format")
    refuse_split_roots(options.data)
    settings = {
        key: str(value) if isinstance(value, Path) else value for key, value in asdict(options).items()
    }
    del settings["progress"]
    return BenchReport(
        machine=machine_info(),
        settings=settings,
        models=tuple(bench_model(model, options, log) for model in models),
    )
