"""`tumor-adapt`: adapt a model to a new site with a few of its labelled scans."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tumorscan.cli_support import user_errors, version_option
from tumorscan.export.exporter import ExportOptions, export_model
from tumorscan.export.formats import select_targets
from tumorscan.quiet import quiet_unless_verbose
from tumorscan.train.augment import AUGMENTATIONS
from tumorscan.train.site import AdaptOptions, Log, adapt_site
from tumorscan.train.site_adapt import FREEZES, AdaptRecipe

FOLDER = click.Path(path_type=Path, file_okay=False)


def _recipe_options(command: Any) -> Any:
    """The recipe's options (defaults from `AdaptRecipe`)."""
    options = [
        click.option("--epochs", type=click.IntRange(min=1), default=AdaptRecipe.epochs, show_default=True),
        click.option(
            "--lr", type=click.FloatRange(min=0, min_open=True), default=AdaptRecipe.lr, show_default=True
        ),
        click.option(
            "--site-repeat",
            type=click.IntRange(min=1),
            default=AdaptRecipe.site_repeat,
            show_default=True,
            help="Times the site's scans are repeated per epoch.",
        ),
        click.option(
            "--balance/--no-balance",
            default=AdaptRecipe.balance,
            show_default=True,
            help="Repeat each site class up to the largest one.",
        ),
        click.option(
            "--source-per-class",
            type=click.IntRange(min=0),
            default=AdaptRecipe.source_per_class,
            show_default=True,
            help="Training scans per class mixed in (with --data).",
        ),
        click.option(
            "--augment", type=click.Choice(AUGMENTATIONS), default=AdaptRecipe.augment, show_default=True
        ),
        click.option(
            "--freeze",
            type=click.Choice(FREEZES),
            default=AdaptRecipe.freeze,
            show_default=True,
            help="convolutions: train the dense head only.",
        ),
        click.option(
            "--mix",
            type=click.FloatRange(0, 1, min_open=True),
            default=AdaptRecipe.mix,
            show_default=True,
            help="Share of the adapted weights mixed with the original's (1: adapted only).",
        ),
        click.option("--seed", type=int, default=AdaptRecipe.seed, show_default=True),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command()
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--site", required=True, type=FOLDER, help="The site's labelled scans, one sub-folder per class."
)
@click.option("--out", required=True, type=FOLDER, help="Write model.keras, site_report.* and export/ here.")
@click.option(
    "--data",
    type=FOLDER,
    help="The model's training folder: its training part is mixed in, its validation part shows forgetting.",
)
@click.option(
    "--folds",
    type=click.IntRange(min=0),
    default=AdaptOptions.folds,
    show_default=True,
    help="Grouped folds estimating what adaptation buys and fitting the site threshold (0: skip).",
)
@click.option(
    "--target-accuracy",
    type=click.FloatRange(0, 1, min_open=True),
    default=AdaptOptions.target_accuracy,
    show_default=True,
    help="The site threshold's promised precision.",
)
@_recipe_options
@click.option(
    "--export/--no-export",
    default=True,
    show_default=True,
    help="Export int8 TFLite and ONNX.",
)
@click.option("--cache", type=FOLDER, help="Cache decoded pixels in this folder.")
@click.option("--force", is_flag=True, help="Replace --out if it holds files.")
@quiet_unless_verbose
@version_option
@user_errors
def adapt_command(
    model: Path,
    site: Path,
    out: Path,
    data: Path | None,
    folds: int,
    target_accuracy: float,
    export: bool,
    cache: Path | None,
    force: bool,
    **recipe: Any,
) -> None:
    """Adapt MODEL.keras to a new site with its labelled scans (--site), and measure what that buys.

    With --folds K (default 5), K grouped folds over the site's scans first estimate accuracy before and
    after adaptation on scans each fold's model never saw, and fit the site's temperature and abstention
    threshold on them (site_report.json, site_report.png). Then the model is adapted on every site scan,
    saved with its provenance (OUT/model.keras) and exported as int8 TFLite and ONNX, parity checked.
    """
    options = AdaptOptions(
        model=model,
        site=site,
        out=out,
        data=data,
        folds=folds,
        target_accuracy=target_accuracy,
        recipe=AdaptRecipe(**recipe),
        cache=cache,
        force=force,
    )
    finish = export_adapted(options) if export else None
    result = adapt_site(options, lambda message: click.echo(message, err=True), finish)
    if result.report is not None:
        click.echo(format_pooled(result.report), nl=False)
    click.echo(f"Wrote {', '.join(str(p.relative_to(out)) for p in result.files)} to {out}.")


def format_pooled(report: dict[str, Any]) -> str:
    """The pooled held-out metrics before and after, one line per subset and stage."""
    lines = [
        f"{'held-out scans':22} {'scans':>6} {'accuracy':>9} {'answered':>9} {'acc.answered':>13} {'ECE':>6}"
    ]
    for subset, stages in report["pooled"].items():
        for stage, row in stages.items():
            answered = "-" if row["accuracy_answered"] is None else f"{row['accuracy_answered']:.3f}"
            lines.append(
                f"{subset + ' ' + stage:22} {row['scans']:>6} {row['accuracy']:>9.3f} "
                f"{row['answered']:>9.3f} {answered:>13} {row['ece']:>6.3f}"
            )
    validation = report["source_validation"]
    if validation is not None:
        lines.append(
            f"source validation accuracy {validation['before']:.3f} before; largest drop over folds "
            f"{validation['largest_drop']:.3f}"
        )
    return "\n".join(lines) + "\n"


def export_adapted(options: AdaptOptions) -> Callable[[Path, Log], list[Path]]:
    """The export stage: int8 TFLite and ONNX of the adapted model, parity checked on the site's scans."""

    def export(model: Path, log: Log) -> list[Path]:
        exported = ExportOptions(
            targets=select_targets(["tflite", "onnx"], ["int8"]),
            out_dir=model.parent / "export",
            calibration_root=options.data or options.site,
            parity_data=options.site,
        )
        return [Path(f.path) for f in export_model(model, exported, log).files]

    return export
