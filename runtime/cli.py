"""`tumor-infer`: classify scans with an exported model; one record per input, for people or machines."""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

import click

from .backends import BACKENDS
from .classifier import Classifier, Prediction, PredictionError, Result
from .cli_support import user_errors, version_option
from .errors import TumorscanError
from .explain import write_overlay
from .files import atomic_text_writer, output_target
from .folders import Skipped, walk_scans
from .images import load_pixels
from .models import default_model_path

PROGRESS_THRESHOLD = 20
"""Show a progress bar by default from this many scans (when stderr is a terminal)."""

GLOB_CHARACTERS = "*?["


ScanItem = Path | Skipped


def expand_scan_arguments(arguments: Sequence[str]) -> tuple[list[ScanItem], list[str]]:
    """Files, folders (recursive, sorted) and glob patterns -> (scan paths and skipped entries, warnings).

    An existing path is taken literally; otherwise an argument with *, ? or [ is a pattern (expanded here,
    `**` recursive). A path that does not exist is kept so that it gets its own error record. Every input
    given keeps its record: a file named twice is classified twice.
    """
    items: list[ScanItem] = []
    warnings: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if _is_dir(path):
            found = walk_scans(path)
            if not found:
                warnings.append(f"{argument}: folder holds no scans")
            items.extend(found)
        elif not os.path.lexists(argument) and any(c in argument for c in GLOB_CHARACTERS):
            matches = sorted(Path(m) for m in glob.glob(argument, recursive=True))
            if not matches:
                warnings.append(f"{argument}: pattern matched no files")
            for match in matches:
                items.extend(walk_scans(match) if _is_dir(match) else [match])
        else:
            items.append(path)
    return items, warnings


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # a name too long or holding NUL: it gets its own record
        return False


def _results(classifier: Classifier, items: Sequence[ScanItem]) -> Iterator[Result]:
    """One result per item, in order, each as soon as it is known (scans are classified in batches)."""
    predictions = classifier.iter_predictions(item for item in items if isinstance(item, Path))
    for item in items:
        if isinstance(item, Skipped):
            yield PredictionError(str(item.path), item.error.code, str(item.error))
        else:
            yield next(predictions)


def _record(result: Result, top_k: int, model: str) -> dict[str, object]:
    return {**result.to_dict(top_k), "model": model}


def _abstain_mark(prediction: Prediction) -> str:
    """' ABSTAIN (reasons)' after the confidence of an abstained answer, else nothing."""
    return f" ABSTAIN ({', '.join(prediction.reasons)})" if prediction.abstain else ""


def _table(results: Sequence[Result], top_k: int) -> str:
    header = ["SCAN", "LABEL", "CONFIDENCE"] + (["NEXT MOST LIKELY"] if top_k > 1 else [])
    rows = [header]
    for result in results:
        if isinstance(result, Prediction):
            row = [result.source, result.label, f"{result.confidence:.3f}" + _abstain_mark(result)]
            if top_k > 1:
                row.append(", ".join(f"{label} {p:.3f}" for label, p in result.top(top_k)[1:]))
        else:
            message = result.message.removeprefix(f"{result.source}: ")
            row = [result.source, f"ERROR {result.code}", message]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows if len(row) > i + 1) for i in range(len(header) - 1)]
    padded = (
        [cell.ljust(width) for cell, width in zip(row, widths, strict=False)] + row[len(widths) :]
        for row in rows
    )
    lines = ["  ".join(cells) for cells in padded]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _csv_line(values: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def _csv_columns(labels: Sequence[str]) -> list[str]:
    columns = ["source", "status", "label", "confidence", "top", *(f"p_{label}" for label in labels)]
    return [*columns, "abstain", "reasons", "error_code", "error_message", "model"]


def _csv_row(result: Result, top_k: int, columns: Sequence[str], model: str) -> str:
    row: dict[str, object] = {"source": result.source, "model": model}
    if isinstance(result, Prediction):
        row.update(status="ok", label=result.label, confidence=f"{result.confidence:.6f}")
        row["top"] = ";".join(f"{label}:{p:.6f}" for label, p in result.top(top_k))
        row.update({f"p_{label}": f"{p:.6f}" for label, p in result.probabilities.items()})
        row.update(abstain=result.abstain, reasons=";".join(result.reasons))
    else:
        row.update(status="error", error_code=result.code, error_message=result.message)
    return _csv_line([row.get(column, "") for column in columns])


def _render(
    output_format: str, results: Iterable[Result], top_k: int, classifier: Classifier, done: list[Result]
) -> Iterator[str]:
    """The output as text pieces: one per record for JSONL and CSV (streamed), one at the end otherwise.

    Every result is appended to `done` as it is rendered (for the summary).
    """
    model = f"{classifier.identity.file}@{classifier.identity.sha256}"
    if output_format in ("jsonl", "csv"):
        columns = _csv_columns(classifier.labels)
        if output_format == "csv":
            yield _csv_line(columns)
        for result in results:
            done.append(result)
            if output_format == "jsonl":
                yield json.dumps(_record(result, top_k, model)) + "\n"
            else:
                yield _csv_row(result, top_k, columns, model)
        return
    done.extend(results)
    if output_format == "json":
        records = [_record(result, top_k, model) for result in done]
        yield json.dumps({"model": asdict(classifier.identity), "results": records}, indent=2) + "\n"
    else:
        yield _table(done, top_k)


def _summary(results: Sequence[Result], classifier: Classifier, seconds: float) -> str:
    failures = Counter(r.code for r in results if not isinstance(r, Prediction))
    failed = sum(failures.values())
    line = f"{len(results)} scans: {len(results) - failed} predicted, {failed} failed"
    if failures:
        line += " (" + ", ".join(f"{code}: {count}" for code, count in sorted(failures.items())) + ")"
    note = classifier.abstention_unavailable
    if note is None:
        line += f", {sum(1 for r in results if isinstance(r, Prediction) and r.abstain)} abstained"
    return f"{line} in {seconds:.1f} s with {classifier.identity}" + (f"; {note}" if note else "")


@contextlib.contextmanager
def _progress(results: Iterator[Result], length: int, show: bool) -> Iterator[Iterator[Result]]:
    if not show:
        yield results
        return
    with click.progressbar(results, length=length, label="Classifying", file=sys.stderr) as bar:
        yield iter(bar)


def _sink(output: Path | None) -> contextlib.AbstractContextManager[TextIO]:
    """Standard output (flushed per piece by the caller) or an atomically written file."""
    if output is None or str(output) == "-":
        return contextlib.nullcontext(sys.stdout)
    return atomic_text_writer(output)


def _write_heatmaps(classifier: Classifier, results: Sequence[Result], folder: Path) -> str:
    """One occlusion heatmap PNG per classified scan in `folder`; returns the summary line."""
    started, written = time.perf_counter(), 0
    for result in results:
        if isinstance(result, Prediction):
            pixels = load_pixels(result.source, classifier.spec.input.size)
            heat = classifier.explain(pixels, result.label)
            name = f"{written:04d}_{Path(result.source).parent.name}_{Path(result.source).stem}.png"
            write_overlay(folder / name, pixels, heat)
            written += 1
    seconds = time.perf_counter() - started
    return f"heatmaps: {written} written to {folder} ({seconds / max(written, 1):.2f} s per scan)"


def _load(model: Path | None, backend: str | None, threads: int | None) -> Classifier:
    try:
        return Classifier.load(model or default_model_path(), backend=backend, num_threads=threads)
    except TumorscanError as exc:
        raise click.BadParameter(str(exc), param_hint="'--model'") from exc


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("scans", nargs=-1, required=True)
@click.option(
    "--model",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Exported .tflite or .onnx model (default: the packaged model).",
)
@click.option(
    "--backend", type=click.Choice(list(BACKENDS)), help="Inference runtime (default: by model type)."
)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads per inference.")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Labels per scan.")
@click.option("--json", "output_format", flag_value="json", help="One JSON document.")
@click.option("--jsonl", "output_format", flag_value="jsonl", help="One JSON record per line.")
@click.option("--csv", "output_format", flag_value="csv", help="CSV with one row per scan.")
@click.option("--parquet", "output_format", flag_value="parquet", help="Parquet shards (--engine ray).")
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    help="Write results to this file ('-': standard output). A symbolic link is written through.",
)
@click.option(
    "--abstain-threshold",
    type=click.FloatRange(0, 1),
    help="Abstain below this calibrated confidence (default: the threshold stored in the model).",
)
@click.option(
    "--explain",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write a heatmap PNG per scan here: where the model looks (occlusion; seconds per scan).",
)
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar on stderr (default: when many scans)."
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    help="ray: classify on a Ray cluster (the [ray] extra); records in shards in --output DIR.",
)
@click.option("--ray-address", help="Ray cluster to join, e.g. HOST:6379 or auto (default: a local Ray).")
@click.option(
    "--resume", is_flag=True, help="With --engine ray: skip sources already recorded in --output DIR."
)
@version_option
@user_errors
def infer_command(
    scans: tuple[str, ...],
    model: Path | None,
    backend: str | None,
    threads: int | None,
    top_k: int,
    output_format: str | None,
    output: Path | None,
    abstain_threshold: float | None,
    explain: Path | None,
    progress: bool | None,
    engine: str | None,
    ray_address: str | None,
    resume: bool,
) -> None:
    """Classify SCANS (files, folders searched recursively, or quoted glob patterns such as 'scans/**/*.png').

    Prints one record per input given: its label and confidence, or the error (with a stable code) that
    prevented it; JSONL and CSV records appear as soon as each is known. Exit status: 0 when every scan was
    classified, 1 when some failed, 2 for usage errors (no scans, missing, modified or invalid model).
    """
    if engine == "ray" or ray_address or resume or output_format == "parquet":
        from .ray_cli import infer_on_ray  # Ray is imported only here

        return infer_on_ray(click.get_current_context().params)
    output_format = output_format or "table"
    to_file = output is not None and str(output) != "-"
    if output is not None and to_file:
        try:
            output_target(output)
        except TumorscanError as exc:
            raise click.BadParameter(str(exc), param_hint="'--output'") from exc
    items, warnings = expand_scan_arguments(scans)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if not items:
        raise click.UsageError("no scans matched the given files, folders or patterns.")
    classifier = _load(model, backend, threads)
    classifier.abstain_threshold = abstain_threshold
    many = len(items) >= PROGRESS_THRESHOLD and sys.stderr.isatty()
    show_progress = many if progress is None else progress
    started = time.perf_counter()
    done: list[Result] = []
    with _progress(_results(classifier, items), len(items), show_progress) as results, _sink(output) as sink:
        for piece in _render(output_format, results, top_k, classifier, done):
            sink.write(piece)
            sink.flush()
    summary = _summary(done, classifier, time.perf_counter() - started)
    if to_file:
        click.echo(f"wrote {output}", err=True)
    click.echo(summary, err=output_format != "table" or to_file)
    if explain is not None:
        click.echo(_write_heatmaps(classifier, done, explain), err=True)
    if any(not isinstance(result, Prediction) for result in done):
        sys.exit(1)
