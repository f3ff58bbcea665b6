"""Command line of the export package: `tumor-export`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tumorscan.cli_support import user_errors, version_option
from tumorscan.errors import ModelError
from tumorscan.quiet import quiet_unless_verbose
from tumorscan.sections import ParityLimits
from tumorscan.signing import check_private_key, sign_file
from tumorscan.spec import NORMALIZATIONS, labels_problem

from .exporter import REPORT_JSON, REPORT_TEXT, ExportOptions, export_model
from .formats import CALIBRATION_METHODS, FORMATS, MODES, select_targets
from .parity import ParityError, format_parity, run_parity, write_parity


def _log(message: str) -> None:
    click.echo(message, err=True)


def labels_option(
    _context: click.Context, _parameter: click.Parameter, value: str | None
) -> tuple[str, ...] | None:
    if value is None:
        return None
    labels = tuple(label.strip() for label in value.split(","))
    problem = labels_problem(labels)
    if problem is not None:
        raise click.BadParameter(f"{problem}; pass one distinct name per output, e.g. a,b,c.")
    return labels


def size_option(
    _context: click.Context, _parameter: click.Parameter, value: str | None
) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        height, width = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not HEIGHTxWIDTH, e.g. 224x224.") from None
    if height < 8 or width < 8:
        raise click.BadParameter(f"{value!r} is too small; use at least 8x8.")
    return height, width


def parity_limit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The pass/fail limits shared by tumor-parity and tumor-export --parity."""
    command = click.option(
        "--max-prob-diff",
        type=click.FloatRange(min=0),
        help="Largest absolute probability difference (e.g. 1e-4 for fp32). [default: no limit]",
    )(command)
    command = click.option(
        "--max-drop",
        type=float,
        default=ParityLimits.max_drop,
        show_default=True,
        help="Largest accuracy drop, in points.",
    )(command)
    return click.option(
        "--min-agreement",
        type=click.FloatRange(0, 1),
        default=ParityLimits.min_agreement,
        show_default=True,
        help="Smallest top-1 agreement with the original.",
    )(command)


def sign_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--sign KEY, shared by tumor-export and tumor-seal."""
    return click.option(
        "--sign",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Ed25519 private key (PEM): write MODEL.sig beside each file (checked by --trusted-key).",
    )(command)


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--int8", is_flag=True, help="Export full-integer int8 (shorthand for adding int8 to --mode).")
@click.option(
    "--mode", "modes", help=f"Comma-separated modes: {', '.join(MODES)}. [default: fp32, or int8 with --int8]"
)
@click.option(
    "--format",
    "formats",
    help=f"Comma-separated formats: {', '.join(FORMATS)}. [default: every format that supports each mode]",
)
@click.option(
    "--calibration",
    type=click.Path(path_type=Path),
    help="Folder of calibration scans for int8 (e.g. the training set): class folders (stratified by "
    "folder), flat or nested; names need not match the labels.",
)
@click.option(
    "--calibration-count",
    type=click.IntRange(min=1),
    default=ExportOptions.calibration_count,
    show_default=True,
)
@click.option(
    "--seed", type=int, default=ExportOptions.seed, show_default=True, help="Calibration selection seed."
)
@click.option(
    "--calibration-method",
    type=click.Choice(CALIBRATION_METHODS),
    default=ExportOptions.calibration_method,
    show_default=True,
    help="ONNX int8 activation ranges (TFLite always uses min/max).",
)
@click.option(
    "--out", type=click.Path(path_type=Path), help="Output folder. [default: export/ beside the model]"
)
@click.option("--allow-legacy", is_flag=True, help="Accept .h5 models (they can run code on load).")
@click.option(
    "--preprocess",
    type=click.Choice(NORMALIZATIONS),
    help="Normalisation to bake into a model without a tumorscan spec "
    "(none: its graph normalises RGB 0-255 itself).",
)
@click.option(
    "--labels",
    callback=labels_option,
    help="Comma-separated class names of a model without a tumorscan spec.",
)
@click.option("--logits", is_flag=True, help="The model outputs logits: append a softmax.")
@click.option(
    "--input-size", callback=size_option, help="HEIGHTxWIDTH, for a model whose input size is dynamic."
)
@click.option(
    "--parity",
    "parity_data",
    type=click.Path(path_type=Path),
    help="Labelled folder: check each file against the model right after export and store the results "
    "in its metadata (calibration scans are left out).",
)
@click.option("--parity-audit", type=click.Path(path_type=Path), help="audit.json of the --parity folder.")
@click.option(
    "--auto-float",
    is_flag=True,
    help="int8: keep in float the layers that are faster in float, and the fewest needed to pass the "
    "parity limits on the --parity folder; the file's metadata lists them and why.",
)
@click.option(
    "--max-float",
    type=click.IntRange(min=0),
    default=ExportOptions.max_float,
    show_default=True,
    help="With --auto-float: the most layers reverted to float for parity.",
)
@sign_option
@parity_limit_options
@quiet_unless_verbose
@version_option
@user_errors
def export_command(
    model: Path,
    int8: bool,
    modes: str | None,
    formats: str,
    calibration: Path | None,
    calibration_count: int,
    seed: int,
    calibration_method: str,
    out: Path | None,
    allow_legacy: bool,
    preprocess: str | None,
    labels: tuple[str, ...] | None,
    logits: bool,
    input_size: tuple[int, int] | None,
    parity_data: Path | None,
    parity_audit: Path | None,
    auto_float: bool,
    max_float: int,
    min_agreement: float,
    max_drop: float,
    max_prob_diff: float | None,
    sign: Path | None,
) -> None:
    """Export a Keras classifier MODEL to quantized TFLite and ONNX files with their metadata inside."""
    if sign is not None:
        check_private_key(sign)
    chosen_modes = [*(modes.split(",") if modes else []), *(["int8"] if int8 else [])] or ["fp32"]
    out_dir = out or model.parent / "export"
    options = ExportOptions(
        targets=select_targets(formats, chosen_modes),
        out_dir=out_dir,
        calibration_root=calibration,
        calibration_count=calibration_count,
        seed=seed,
        calibration_method=calibration_method,
        allow_legacy=allow_legacy,
        preprocess=preprocess,
        labels=labels,
        logits=logits,
        input_size=input_size,
        parity_data=parity_data,
        parity_audit=parity_audit,
        parity_limits=ParityLimits(min_agreement, max_drop, max_prob_diff),
        auto_float=auto_float,
        max_float=max_float,
    )
    report = export_model(model, options, log=_log, progress=True)
    click.echo(report.to_text(), nl=False)
    if sign is not None:
        for file in report.files:
            _log(f"Signed {sign_file(Path(file.path), sign)}")
    _log(f"Report written to {out_dir / REPORT_TEXT} and {out_dir / REPORT_JSON}.")
    if report.parity is not None and not report.parity.passed:
        raise click.ClickException("parity limits failed (see above); the files record it in their metadata.")


@click.command()
@click.argument("original", type=click.Path(path_type=Path))
@click.argument("exported", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Labelled class-folder dataset.")
@click.option(
    "--audit",
    type=click.Path(path_type=Path),
    help="audit.json of --data (tumor-audit): adds the clean subset.",
)
@click.option(
    "--exclude-calibration",
    type=click.Path(path_type=Path),
    help="A calibration manifest (<model>-calibration.json): leave its scans out.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), help="Write parity.json, parity.txt and parity_recall.png here."
)
@click.option("--allow-other-source", is_flag=True, help="Compare files exported from another model (warns).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@parity_limit_options
@quiet_unless_verbose
@version_option
@user_errors
def parity_command(
    original: Path,
    exported: tuple[Path, ...],
    data: Path,
    audit: Path | None,
    exclude_calibration: Path | None,
    out: Path | None,
    allow_other_source: bool,
    as_json: bool,
    min_agreement: float,
    max_drop: float,
    max_prob_diff: float | None,
) -> None:
    """Check EXPORTED .tflite/.onnx files against their ORIGINAL .keras model on a labelled folder.

    Exits with status 1 when a file breaks a limit, 2 when a file cannot be compared (another model's
    export, other labels or input, an invalid file).
    """
    try:
        report = run_parity(
            original,
            exported,
            data,
            audit=audit,
            exclude_manifest=exclude_calibration,
            limits=ParityLimits(min_agreement, max_drop, max_prob_diff),
            allow_other_source=allow_other_source,
        )
    except (ParityError, ModelError) as exc:  # nothing was compared: a usage error, not a failed limit
        raise click.UsageError(str(exc)) from exc
    click.echo(report.to_json() if as_json else format_parity(report))
    if out is not None:
        write_parity(report, out)
        _log(f"Parity written to {out / 'parity.txt'}, parity.json and parity_recall.png.")
    if not report.passed:
        raise click.ClickException("parity limits failed.")
