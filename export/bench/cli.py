"""`tumor-bench`: the command line of the benchmark (`tumorscan.export.bench.run`)."""

from __future__ import annotations

from pathlib import Path

import click

from tumorscan.cli_support import user_errors, version_option
from tumorscan.quiet import quiet_unless_verbose

from ..exporter import ensure_writable
from ..formats import parse_names
from .report import format_bench, write_bench
from .run import BENCH_FORMATS, BenchOptions, run_bench


def _log(message: str) -> None:
    click.echo(message, err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument(
    "models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Labelled class-folder dataset (e.g. the test split): accuracy, agreement and the timed scans.",
)
@click.option(
    "--exports",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the exported <stem>-<mode>.tflite/.onnx files. [default: export/ beside each model]",
)
@click.option(
    "--formats",
    default=",".join(BENCH_FORMATS),
    show_default=True,
    help="Comma-separated formats to measure.",
)
@click.option(
    "--runs", type=click.IntRange(min=1), default=BenchOptions.runs, show_default=True, help="Timed calls."
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=BenchOptions.warmup,
    show_default=True,
    help="Untimed calls first.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=BenchOptions.batch_size,
    show_default=True,
    help="Images per throughput call.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=BenchOptions.threads,
    show_default=True,
    help="CPU threads of every runtime.",
)
@click.option(
    "--cold-runs",
    type=click.IntRange(min=0),
    default=BenchOptions.cold_runs,
    show_default=True,
    help="Timed fresh processes per cold start (after one untimed run); 0 skips cold starts.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write bench.json, bench.txt and bench.png here.",
)
@click.option(
    "--baseline",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of other exports of the same models (e.g. all-int8, beside --auto-float files in "
    "--exports): their int8 files are measured too, side by side.",
)
@quiet_unless_verbose
@version_option
@user_errors
def bench_command(
    models: tuple[Path, ...],
    data: Path,
    exports: Path | None,
    formats: str,
    runs: int,
    warmup: int,
    batch_size: int,
    threads: int,
    cold_runs: int,
    out: Path | None,
    baseline: Path | None,
) -> None:
    """Measure MODELS (.keras) against their exported TFLite and ONNX files, side by side.

    Each format runs in a fresh process: size, load time, latency of the model call and of file in,
    label out, throughput, peak memory, accuracy and agreement with Keras; then the cold start of
    tumor-infer against Keras, and the ratios that matter, each against its target.
    """
    if out is not None:
        ensure_writable(out)
    options = BenchOptions(
        data=data,
        exports=exports,
        formats=parse_names(formats, BENCH_FORMATS, "format"),
        runs=runs,
        warmup=warmup,
        batch_size=batch_size,
        threads=threads,
        cold_runs=cold_runs,
        progress=True,
        baseline=baseline,
    )
    report = run_bench(models, options, log=_log)
    click.echo(format_bench(report), nl=False)
    if out is not None:
        write_bench(report, out)
        _log(f"Wrote {out / 'bench.json'}, bench.txt and bench.png.")
