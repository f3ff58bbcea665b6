"""Benchmark results: what was measured per model and format (ratios: `tumorscan.export.bench.ratios`),
and how they are shown (a table on stdout, bench.json and bench.png)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tumorscan.files import atomic_write_bytes, atomic_write_text
from tumorscan.train.figures import new_figure, png_bytes

OK = "ok"
NOT_EXPORTED = "not exported"
FAILED = "failed"

INFER = "tumor-infer"
KERAS = "keras"
TFLITE_INT8 = "tflite-int8"
BASELINE = "baseline"
"""Suffix of the rows measured from the --baseline folder ("onnx-int8 baseline")."""


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call: median and 90th percentile."""

    median: float
    p90: float


@dataclass(frozen=True)
class FormatResult:
    """One model file measured in its own process (or why it was not).

    Attributes:
        format: "keras", "tflite-int8", ...
        file: the model file (where it was looked for, when not exported).
        status: "ok", "not exported" or "failed".
        error: why it failed.
        size_bytes: file size.
        backend: what ran it (keras, litert, onnxruntime).
        import_s: seconds to import the inference framework.
        load_s: seconds to load the file.
        latency_ms: the bare model call on one pre-decoded scan.
        e2e_ms: file in, label out (decoding and resizing included).
        throughput: scans per second at the batch size.
        peak_rss_mb: peak resident memory of the process, MB.
        tensorflow_imported: whether the process imported TensorFlow.
        accuracy: top-1 accuracy on the data.
        agreement: top-1 agreement with the Keras model (when measured).
        max_abs_diff: largest probability difference from the Keras model.
        source_sha256: sha256 of the .keras file an export was made from (from its metadata).
        pipeline: runtime formats: decode and many-scan timings (`bench_worker.pipeline_speed`).
    """

    format: str
    file: str | None
    status: str
    error: str | None = None
    size_bytes: int | None = None
    backend: str | None = None
    import_s: float | None = None
    load_s: float | None = None
    latency_ms: Timing | None = None
    e2e_ms: Timing | None = None
    throughput: float | None = None
    peak_rss_mb: float | None = None
    tensorflow_imported: bool | None = None
    accuracy: float | None = None
    agreement: float | None = None
    max_abs_diff: float | None = None
    source_sha256: str | None = None
    pipeline: dict[str, Any] | None = None


@dataclass(frozen=True)
class ColdStart:
    """A fresh process classifying one scan, timed from its start to its result.

    Attributes:
        name: "tumor-infer" or "keras".
        file: the model it loads.
        command: the command line.
        seconds: each timed run (after one untimed run that warms the OS file cache).
        median_s: their median.
        label: the label it printed.
        error: why it failed.
    """

    name: str
    file: str
    command: list[str]
    seconds: list[float] = field(default_factory=list)
    median_s: float | None = None
    label: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Ratio:
    """One ratio of the measurements, checked against its target (passed is None when not measurable)."""

    name: str
    description: str
    value: float | None
    comparison: str
    target: float
    unit: str
    passed: bool | None


@dataclass(frozen=True)
class ModelBench:
    """Every format of one .keras model, its cold starts and ratios."""

    model: str
    architecture: str
    input_size: tuple[int, int]
    data: str
    scans: int
    unreadable: int
    formats: tuple[FormatResult, ...]
    cold_start: dict[str, ColdStart]
    ratios: tuple[Ratio, ...] = ()
    notes: tuple[str, ...] = ()

    def result(self, name: str) -> FormatResult | None:
        """The measured row of a format, or None when it was not measured."""
        return next((row for row in self.formats if row.format == name and row.status == OK), None)


@dataclass(frozen=True)
class BenchReport:
    """A whole benchmark run: machine, settings and every model."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    models: tuple[ModelBench, ...]

    def to_json(self) -> str:
        """Indented JSON of everything."""
        return json.dumps(asdict(self), indent=1, ensure_ascii=False) + "\n"


def _number(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _megabytes(size: int | None) -> str:
    return "-" if size is None else f"{size / 1e6:.2f} MB"


def _cells(row: FormatResult) -> list[str]:
    latency, e2e = row.latency_ms, row.e2e_ms
    return [
        _megabytes(row.size_bytes),
        _number(row.import_s, "{:.2f}"),
        _number(row.load_s, "{:.2f}"),
        _number(latency.median if latency else None, "{:.2f}"),
        _number(latency.p90 if latency else None, "{:.2f}"),
        _number(e2e.median if e2e else None, "{:.2f}"),
        _number(e2e.p90 if e2e else None, "{:.2f}"),
        _number(row.throughput, "{:.1f}"),
        _number(row.peak_rss_mb, "{:.0f}"),
        _number(row.accuracy, "{:.2%}"),
        _number(row.agreement, "{:.2%}"),
    ]


HEADER = (
    "format",
    "file",
    "size",
    "import s",
    "load s",
    "ms med",
    "ms p90",
    "e2e med",
    "e2e p90",
    "scans/s",
    "RSS MB",
    "accuracy",
    "agree",
)
"""Table columns: `ms` is the bare model call on one scan, `e2e` file in, label out (ms)."""


def _format_table(bench: ModelBench) -> list[str]:
    rows: list[list[str]] = [list(HEADER)]
    for result in bench.formats:
        name = Path(result.file).name if result.file else "-"
        if result.status == OK:
            rows.append([result.format, name, *_cells(result)])
        else:
            reason = result.status if result.error is None else f"{result.status}: {result.error}"
            rows.append([result.format, name, reason])
    full = [row for row in rows if len(row) == len(HEADER)]
    widths = [max(len(row[i]) for row in full) for i in range(len(HEADER))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if i < 2 or len(row) < len(HEADER) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def _format_cold(cold: ColdStart) -> str:
    title = f"{cold.name} ({Path(cold.file).name})"
    if cold.error is not None:
        return f"  {title}: failed: {cold.error}"
    runs = ", ".join(f"{s:.2f}" for s in cold.seconds)
    return f"  {title}: {cold.median_s:.2f} s median of [{runs}] s -> {cold.label}"


def _format_pipeline(row: FormatResult) -> str:
    speed = row.pipeline or {}
    return (
        f"  {row.format}: one scan: bare call {speed['bare_ms']['median']:.2f} ms, file->label "
        f"{speed['e2e_ms']['median']:.2f} ms (full decode {speed['e2e_full_decode_ms']['median']:.2f} ms); "
        f"{speed['scans']} scans: bare calls {speed['bare_calls_s']:.2f} s, predict_many "
        f"{speed['pipeline_s']:.2f} s (serial {speed['serial_s']:.2f} s)"
    )


def _format_decoding(row: FormatResult) -> str:
    ways = (row.pipeline or {})["decode_ms"]
    return "  decoding to pixels, ms (share of scans with the rule's pixels): " + ", ".join(
        f"{name} {way['median']:.2f} ({way['same_pixels']:.0%})" for name, way in ways.items()
    )


def _format_ratio(ratio: Ratio) -> str:
    value = "n/a" if ratio.value is None else f"{ratio.value:.2f}{ratio.unit}"
    verdict = {True: "PASS", False: "FAIL", None: "n/a"}[ratio.passed]
    target = f"{ratio.comparison} {ratio.target:g}{ratio.unit}"
    return f"  {ratio.description:<46} {value:>14}   target {target:<14} {verdict}"


def format_bench(report: BenchReport) -> str:
    """The readable report: per model, a table of formats, the cold starts and the ratios."""
    settings = report.settings
    lines = [
        f"{report.machine.get('cpu', '?')}, {report.machine.get('cores', '?')} cores; "
        f"{settings['threads']} threads, {settings['runs']} runs after {settings['warmup']} warm-up, "
        f"batch {settings['batch_size']}",
        "ms: bare model call on one pre-decoded scan; e2e: file in, label out (ms); "
        "agree: top-1 agreement with Keras",
    ]
    for bench in report.models:
        height, width = bench.input_size
        lines += [
            "",
            f"{bench.model} ({bench.architecture}, {height}x{width}) on {bench.scans} scans of {bench.data}"
            + (f" ({bench.unreadable} unreadable skipped)" if bench.unreadable else ""),
            *_format_table(bench),
            "cold start, process start to label (one untimed run first):",
            *(_format_cold(cold) for cold in bench.cold_start.values()),
            "decoding and pipeline (the ways timed in turn, medians):",
            *(_format_pipeline(row) for row in bench.formats if row.pipeline),
            *[_format_decoding(row) for row in bench.formats if row.pipeline][:1],
            "ratios:",
            *(_format_ratio(ratio) for ratio in bench.ratios),
            *(f"note: {note}" for note in bench.notes),
        ]
    return "\n".join(lines) + "\n"


def plot_bench(report: BenchReport) -> bytes:
    """PNG bytes: per model, bars of latency (bare and end-to-end), file size and peak memory per format."""
    figure = new_figure(figsize=(17, 4.2 * len(report.models)), layout="tight")
    axes = figure.subplots(len(report.models), 3, squeeze=False)
    for row_axes, bench in zip(axes, report.models, strict=True):
        rows = [row for row in bench.formats if row.status == OK]
        names = [row.format for row in rows]
        positions = list(range(len(rows)))
        latency, sizes, memory = row_axes
        bare = [row.latency_ms.median if row.latency_ms else 0.0 for row in rows]
        e2e = [row.e2e_ms.median if row.e2e_ms else 0.0 for row in rows]
        bars = latency.bar([p - 0.2 for p in positions], bare, 0.4, label="model call")
        latency.bar_label(bars, fmt="%.3g", fontsize="x-small")
        bars = latency.bar([p + 0.2 for p in positions], e2e, 0.4, label="file in, label out")
        latency.bar_label(bars, fmt="%.3g", fontsize="x-small")
        latency.set_ylabel("ms per scan (median)")
        latency.legend(fontsize="small")
        bars = sizes.bar(positions, [(row.size_bytes or 0) / 1e6 for row in rows], color="tab:green")
        sizes.bar_label(bars, fmt="%.3g", fontsize="x-small")
        sizes.set_ylabel("file size (MB)")
        bars = memory.bar(positions, [row.peak_rss_mb or 0.0 for row in rows], color="tab:purple")
        memory.bar_label(bars, fmt="%.0f", fontsize="x-small")
        memory.set_ylabel("peak RSS (MB)")
        for axis, title in zip(row_axes, ("latency", "size", "memory"), strict=True):
            axis.set_xticks(positions, names, rotation=30, ha="right", fontsize="small")
            axis.set_title(f"{bench.architecture} ({bench.model}): {title}", fontsize="medium")
    return png_bytes(figure, dpi=110)


def write_bench(report: BenchReport, out: Path) -> None:
    """bench.json, bench.txt (the table) and bench.png in `out`."""
    atomic_write_text(out / "bench.json", report.to_json())
    atomic_write_text(out / "bench.txt", format_bench(report))
    atomic_write_bytes(out / "bench.png", plot_bench(report))
