"""`tumor-infer`: classify scans with an exported model; one record per input, for people or machines."""

from __future__ import annotations

import csv
import glob
import io
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import click

from .backends import BACKENDS
from .classifier import Classifier, Prediction, Result
from .cli_support import user_errors, version_option
from .errors import TumorscanError
from .files import atomic_write_text
from .folders import list_scans
from .models import default_model_path

PROGRESS_THRESHOLD = 20
"""Show a progress bar by default from this many scans (when stderr is a terminal)."""

GLOB_CHARACTERS = "*?["


def expand_scan_arguments(arguments: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Files, folders (recursive, sorted) and glob patterns -> (scan paths, warnings), duplicates dropped.

    An existing path is taken literally; otherwise an argument with *, ? or [ is a pattern (expanded here,
    `**` recursive). A path that does not exist is kept so that it gets its own error record.
    """
    paths: list[Path] = []
    warnings: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = list_scans(path)
            if not found:
                warnings.append(f"{argument}: folder holds no scans")
            paths.extend(found)
        elif not path.exists() and any(c in argument for c in GLOB_CHARACTERS):
            matches = sorted(Path(m) for m in glob.glob(argument, recursive=True))
            if not matches:
                warnings.append(f"{argument}: pattern matched no files")
            for match in matches:
                paths.extend(list_scans(match) if match.is_dir() else [match])
        else:
            paths.append(path)
    return list(dict.fromkeys(paths)), warnings


def _records(results: Sequence[Result], top_k: int, model: str) -> list[dict[str, object]]:
    return [{**result.to_dict(top_k), "model": model} for result in results]


def _table(results: Sequence[Result], top_k: int) -> str:
    header = ["SCAN", "LABEL", "CONFIDENCE"] + (["NEXT MOST LIKELY"] if top_k > 1 else [])
    rows = [header]
    for result in results:
        if isinstance(result, Prediction):
            row = [result.source, result.label, f"{result.confidence:.3f}"]
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


def _csv(results: Sequence[Result], top_k: int, labels: Sequence[str], model: str) -> str:
    columns = ["source", "status", "label", "confidence", "top", *(f"p_{label}" for label in labels)]
    columns += ["error_code", "error_message", "model"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for result in results:
        row: dict[str, object] = {"source": result.source, "model": model}
        if isinstance(result, Prediction):
            row.update(status="ok", label=result.label, confidence=f"{result.confidence:.6f}")
            row["top"] = ";".join(f"{label}:{p:.6f}" for label, p in result.top(top_k))
            row.update({f"p_{label}": f"{p:.6f}" for label, p in result.probabilities.items()})
        else:
            row.update(status="error", error_code=result.code, error_message=result.message)
        writer.writerow(row)
    return buffer.getvalue()


def _render(output_format: str, results: Sequence[Result], top_k: int, classifier: Classifier) -> str:
    model = f"{classifier.identity.file}@{classifier.identity.sha256}"
    if output_format == "json":
        document = {"model": asdict(classifier.identity), "results": _records(results, top_k, model)}
        return json.dumps(document, indent=2) + "\n"
    if output_format == "jsonl":
        return "".join(json.dumps(record) + "\n" for record in _records(results, top_k, model))
    if output_format == "csv":
        return _csv(results, top_k, classifier.labels, model)
    return _table(results, top_k)


def _summary(results: Sequence[Result], classifier: Classifier, seconds: float) -> str:
    failures = Counter(r.code for r in results if not isinstance(r, Prediction))
    failed = sum(failures.values())
    line = f"{len(results)} scans: {len(results) - failed} predicted, {failed} failed"
    if failures:
        line += " (" + ", ".join(f"{code}: {count}" for code, count in sorted(failures.items())) + ")"
    return f"{line} in {seconds:.1f} s with {classifier.identity}"


def _classify(classifier: Classifier, paths: list[Path], show_progress: bool) -> list[Result]:
    results: Iterator[Result] = classifier.iter_predictions(paths)
    if not show_progress:
        return list(results)
    with click.progressbar(results, length=len(paths), label="Classifying", file=sys.stderr) as bar:
        return list(bar)


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
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write results to this file.")
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar on stderr (default: when many scans)."
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
    progress: bool | None,
) -> None:
    """Classify SCANS (files, folders searched recursively, or quoted glob patterns such as 'scans/**/*.png').

    Prints one row per scan: its label and confidence, or the error that prevented it. Exit status: 0 when
    every scan was classified, 1 when some failed, 2 for usage errors (no scans, missing or invalid model).
    """
    output_format = output_format or "table"
    paths, warnings = expand_scan_arguments(scans)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if not paths:
        raise click.UsageError("no scans matched the given files, folders or patterns.")
    classifier = _load(model, backend, threads)
    many = len(paths) >= PROGRESS_THRESHOLD and sys.stderr.isatty()
    show_progress = many if progress is None else progress
    started = time.perf_counter()
    results = _classify(classifier, paths, show_progress)
    text = _render(output_format, results, top_k, classifier)
    summary = _summary(results, classifier, time.perf_counter() - started)
    if output is not None:
        atomic_write_text(output, text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)
    click.echo(summary, err=output_format != "table" or output is not None)
    if any(not isinstance(result, Prediction) for result in results):
        sys.exit(1)
