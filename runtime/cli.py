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
from typing import TYPE_CHECKING, TextIO

import click

from .backends import BACKENDS
from .classifier import Classifier, Prediction, PredictionError, Result
from .cli_support import user_errors, version_option
from .errors import ModelError, TumorscanError
from .files import atomic_text_writer, output_target
from .folders import Skipped, walk_scans
from .heatmaps import write_heatmaps
from .models import default_model_path
from .names import csv_cell, display_width, not_utf8, pad, printable
from .report_html import write_report
from .study_output import StudyOutput, dicom_results, study_mode, study_pieces

PROGRESS_THRESHOLD = 20
"""Show a progress bar by default from this many scans (when stderr is a terminal)."""

GLOB_CHARACTERS = "*?["


ScanItem = Path | Skipped
if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


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


Outcome = tuple[Path, Result, "NDArray[np.uint8] | None"]
"""One input's path, its result, and the pixels the model saw (kept only for heatmaps)."""


def _results(classifier: Classifier, items: Sequence[ScanItem], keep_pixels: bool) -> Iterator[Outcome]:
    """One outcome per item, in order, each as soon as it is known (scans are classified in batches)."""
    paths = [item for item in items if isinstance(item, Path)]
    predictions = classifier.iter_with_pixels(paths)
    for item in items:
        if isinstance(item, Skipped):
            yield item.path, PredictionError(str(item.path), item.error.code, str(item.error)), None
        else:
            result, pixels = next(predictions)
            yield item, result, pixels if keep_pixels else None


def _record(outcome: Outcome, top_k: int, model: str) -> dict[str, object]:
    path, result, _ = outcome
    record = {**result.to_dict(top_k), "model": model}
    if not_utf8(path):  # the source shows such bytes as \xNN escapes: the flag tells them from a real name
        record["source_not_utf8"] = True
    return record


def _abstain_mark(prediction: Prediction) -> str:
    """' ABSTAIN (reasons)' after the confidence of an abstained answer, else nothing."""
    return f" ABSTAIN ({', '.join(prediction.reasons)})" if prediction.abstain else ""


def _table(results: Sequence[Result], top_k: int) -> str:
    """Aligned columns by display width; names and messages with visible escapes (one line per scan)."""
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
        rows.append([printable(cell) for cell in row])
    widths = [max(display_width(row[i]) for row in rows if len(row) > i + 1) for i in range(len(header) - 1)]
    padded = (
        [pad(cell, width) for cell, width in zip(row, widths, strict=False)] + row[len(widths) :]
        for row in rows
    )
    lines = ["  ".join(cells) for cells in padded]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _csv_line(values: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([csv_cell(value) for value in values])
    return buffer.getvalue()


def _csv_columns(labels: Sequence[str]) -> list[str]:
    columns = ["source", "status", "label", "confidence", "top", *(f"p_{label}" for label in labels)]
    columns += ["abstain", "reasons", "error_code", "error_message", "model", "source_not_utf8", "mirror"]
    return columns


def _csv_row(outcome: Outcome, top_k: int, columns: Sequence[str], model: str) -> str:
    path, result, _ = outcome
    row: dict[str, object] = {"source": result.source, "model": model, "source_not_utf8": not_utf8(path)}
    if isinstance(result, Prediction):
        row.update(status="ok", label=result.label, confidence=f"{result.confidence:.6f}")
        row["top"] = ";".join(f"{label}:{p:.6f}" for label, p in result.top(top_k))
        row.update({f"p_{label}": f"{p:.6f}" for label, p in result.probabilities.items()})
        row.update(abstain=result.abstain, reasons=";".join(result.reasons), mirror=result.mirror)
    else:
        row.update(status="error", error_code=result.code, error_message=result.message)
    return _csv_line([row.get(column, "") for column in columns])


def _write(pieces: Iterable[str], output: Path | None) -> None:
    """Write the output as its pieces come; a model failing on real scans is a model (usage) error."""
    try:
        with _sink(output) as sink:
            for piece in pieces:
                sink.write(piece)
                sink.flush()
    except ModelError as exc:  # the model failed on real scans: a model problem, like one found at load
        raise click.BadParameter(f"{exc} The model cannot be used.", param_hint="'--model'") from exc


def _pieces(
    classifier: Classifier,
    items: Sequence[ScanItem],
    output_format: str,
    top_k: int,
    keep_pixels: bool,
    show_progress: bool,
    done: list[Outcome],
) -> Iterator[str]:
    """The output of a plain run, every outcome appended to `done`."""
    outcomes = _results(classifier, items, keep_pixels)
    with _progress(outcomes, len(items), show_progress) as shown:
        yield from _render(output_format, shown, top_k, classifier, done)


def _study_pieces(
    classifier: Classifier,
    items: Sequence[ScanItem],
    output_format: str,
    top_k: int,
    keep_patient_ids: bool,
    done: list[Outcome],
    outputs: list[StudyOutput],
) -> Iterator[str]:
    """The output of a --studies run (`tumorscan.study_output`), every slice's outcome appended to `done`."""
    results: list[Result] = []
    yield from study_pieces(classifier, items, output_format, top_k, keep_patient_ids, results, outputs)
    done.extend((Path(result.source), result, None) for result in results)


def _render(
    output_format: str, outcomes: Iterable[Outcome], top_k: int, classifier: Classifier, done: list[Outcome]
) -> Iterator[str]:
    """The output as text pieces: one per record for JSONL and CSV (streamed), one at the end otherwise.

    Every outcome is appended to `done` as it is rendered (for the summary and the heatmaps).
    """
    model = f"{classifier.identity.file}@{classifier.identity.sha256}"
    if output_format in ("jsonl", "csv"):
        columns = _csv_columns(classifier.labels)
        if output_format == "csv":
            yield _csv_line(columns)
        for outcome in outcomes:
            done.append(outcome)
            if output_format == "jsonl":
                yield json.dumps(_record(outcome, top_k, model)) + "\n"
            else:
                yield _csv_row(outcome, top_k, columns, model)
        return
    done.extend(outcomes)
    if output_format == "json":
        records = [_record(outcome, top_k, model) for outcome in done]
        yield json.dumps({"model": asdict(classifier.identity), "results": records}, indent=2) + "\n"
    else:
        yield _table([result for _, result, _ in done], top_k)


def _summary(results: Sequence[Result], classifier: Classifier, seconds: float) -> str:
    failures = Counter(r.code for r in results if not isinstance(r, Prediction))
    failed = sum(failures.values())
    line = f"{len(results)} scans: {len(results) - failed} predicted, {failed} failed"
    if failures:
        line += " (" + ", ".join(f"{code}: {count}" for code, count in sorted(failures.items())) + ")"
    note = classifier.abstention_unavailable
    if note is None:
        line += f", {sum(1 for r in results if isinstance(r, Prediction) and r.abstain)} abstained"
    if classifier.mirror:
        line += ", each averaged with its mirror"
    return f"{line} in {seconds:.1f} s with {classifier.identity}" + (f"; {note}" if note else "")


@contextlib.contextmanager
def _progress(outcomes: Iterator[Outcome], length: int, show: bool) -> Iterator[Iterator[Outcome]]:
    if not show:
        yield outcomes
        return
    with click.progressbar(outcomes, length=length, label="Classifying", file=sys.stderr) as bar:
        yield iter(bar)


def _sink(output: Path | None) -> contextlib.AbstractContextManager[TextIO]:
    """Standard output (flushed per piece by the caller) or an atomically written file."""
    if output is None or str(output) == "-":
        return contextlib.nullcontext(sys.stdout)
    return atomic_text_writer(output)


def _check_output(output: Path, model: Path | None, items: Sequence[ScanItem]) -> None:
    """Refuse an --output that is a folder, special or read-only file, the model, or one of the inputs."""
    try:
        output_target(output)
    except TumorscanError as exc:
        raise click.BadParameter(str(exc), param_hint="'--output'") from exc
    if not os.path.exists(output):
        return
    inputs = [("the model", model)] if model is not None else []
    inputs += [("an input scan", item) for item in items if isinstance(item, Path)]
    for role, path in inputs:
        with contextlib.suppress(OSError, ValueError):
            if os.path.samefile(output, path):
                raise click.BadParameter(
                    f"{output} is {role}; writing results there would destroy it. Choose another file.",
                    param_hint="'--output'",
                )


def _load(
    model: Path | None, backend: str | None, threads: int | None, trusted: tuple[Path, ...]
) -> Classifier:
    keys = list(trusted) or None
    try:
        return Classifier.load(model or default_model_path(), backend, threads, trusted_keys=keys)
    except TumorscanError as exc:
        raise click.BadParameter(str(exc), param_hint="'--model'") from exc


def _scan_items(scans: Sequence[str], output: Path | None, model: Path | None) -> list[ScanItem]:
    """The inputs the arguments name (warnings on stderr); an output file that is one of them is refused."""
    items, warnings = expand_scan_arguments(scans)
    if output is not None:
        _check_output(output, model, items)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if not items:
        raise click.UsageError("no scans matched the given files, folders or patterns.")
    return items


def _heatmaps_and_report(
    classifier: Classifier, done: Sequence[Outcome], explain: Path | None, report: Path | None
) -> bool:
    """The --explain heatmaps, then the --report page (with them); True when some heatmap failed."""
    heatmaps_failed, overlays = False, dict[int, bytes]()
    if explain is not None:
        heatmaps_failed = write_heatmaps(classifier, done, explain, overlays)
    if report is not None:
        write_report(report, done, classifier.labels, classifier.identity, overlays)
        click.echo(f"wrote report {report}", err=True)
    return heatmaps_failed


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
    "--mirror",
    is_flag=True,
    help="Average each scan with its left-right mirror (one batch of two; about twice the time): a scan and "
    'its mirror get the same answer; records say "mirror": true. --explain maps the original scan only.',
)
@click.option(
    "--explain",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write a heatmap PNG per scan here: where the model looks (occlusion; seconds per scan).",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write one self-contained HTML page to look at the results: thumbnails, answers, abstentions, "
    "errors, sortable and filterable (heatmaps too with --explain).",
)
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar on stderr (default: when many scans)."
)
@click.option(
    "--trusted-key",
    "trusted_keys",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Ed25519 public key (PEM) whose signature (MODEL.sig) the model must carry; repeatable.",
)
@click.option(
    "--studies",
    is_flag=True,
    help="Group DICOM files by study and series: slice records in order, then a summary record per series "
    "and per study (with --jsonl or --json).",
)
@click.option(
    "--keep-patient-ids", is_flag=True, help="With --studies: keep patient names and IDs in the records."
)
@click.option(
    "--dicom-sr",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write one DICOM Structured Report per study here, for a PACS (implies --studies).",
)
@click.option(
    "--dicom-heatmaps",
    is_flag=True,
    help="With --dicom-sr: also the heatmaps of the slices carrying each study's answer, as DICOM images.",
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
    mirror: bool,
    explain: Path | None,
    report: Path | None,
    progress: bool | None,
    trusted_keys: tuple[Path, ...],
    studies: bool,
    keep_patient_ids: bool,
    dicom_sr: Path | None,
    dicom_heatmaps: bool,
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
    studies = study_mode(output_format, studies, dicom_sr, dicom_heatmaps)
    to_file = output is not None and str(output) != "-"
    items = _scan_items(scans, output if to_file else None, model)
    classifier = _load(model, backend, threads, trusted_keys)
    classifier.abstain_threshold, classifier.mirror = abstain_threshold, mirror
    many = len(items) >= PROGRESS_THRESHOLD and sys.stderr.isatty()
    show_progress = (many if progress is None else progress) and not studies
    started = time.perf_counter()
    done: list[Outcome] = []
    outputs: list[StudyOutput] = []
    pieces = _pieces(classifier, items, output_format, top_k, bool(explain or report), show_progress, done)
    if studies:
        pieces = _study_pieces(classifier, items, output_format, top_k, keep_patient_ids, done, outputs)
    _write(pieces, output)
    results = [result for _, result, _ in done]
    if to_file:
        click.echo(f"wrote {output}", err=True)
    heatmaps_failed = _heatmaps_and_report(classifier, done, explain, report)
    for message in dicom_results(outputs, classifier, dicom_sr, dicom_heatmaps):
        click.echo(message, err=True)
    summary = _summary(results, classifier, time.perf_counter() - started)  # heatmaps and reports included
    click.echo(summary, err=output_format != "table" or to_file)
    if heatmaps_failed or any(not isinstance(result, Prediction) for result in results):
        sys.exit(1)
