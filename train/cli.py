"""`tumor-train` and `tumor-evaluate`: parse options, call the training API, print the results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tumorscan.cli_support import default_of, user_errors, version_option
from tumorscan.quiet import quiet_unless_verbose
from tumorscan.train.augment import AUGMENTATIONS
from tumorscan.train.evaluate import evaluate_model
from tumorscan.train.reporting import format_reports
from tumorscan.train.run_config import MONITORS, STRATEGIES, TrainConfig
from tumorscan.train.splits import SPLITS
from tumorscan.train.trainer import train

FOLDER = click.Path(path_type=Path, file_okay=False)


@click.command()
@click.option("--arch", required=True, help="Architecture: cnn1, cnn2 or vgg16.")
@click.option("--data", required=True, type=FOLDER, help="Training folder with one sub-folder per class.")
@click.option(
    "--out", required=True, type=FOLDER, help="Run folder for the model, reports, logs and checkpoints."
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=TrainConfig.epochs,
    show_default=True,
    help="Most epochs to train.",
)
@click.option(
    "--size",
    type=click.IntRange(min=32),
    default=TrainConfig.size[0],
    show_default=True,
    help="Input height and width.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=TrainConfig.batch_size,
    show_default=True,
    help="Global batch size.",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=TrainConfig.lr,
    show_default=True,
    help="Adam rate.",
)
@click.option(
    "--val-split",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=TrainConfig.val_split,
    show_default=True,
    help="Fraction of each class of --data held out for validation (model selection, early stopping).",
)
@click.option(
    "--split",
    type=click.Choice(SPLITS),
    default=TrainConfig.split,
    show_default=True,
    help="How validation is carved: grouped keeps near copies (the audit's perceptual-hash rule) on one "
    "side; random draws scans.",
)
@click.option(
    "--seed",
    type=int,
    default=TrainConfig.seed,
    show_default=True,
    help="Seeds weights, split, shuffling, augmentation.",
)
@click.option(
    "--augment",
    type=click.Choice(AUGMENTATIONS),
    default=TrainConfig.augment,
    show_default=True,
    help="seed: rotation up to 40 degrees and horizontal flips; strong: also zoom, shifts, brightness and "
    "contrast; shift: flips, small rotations, zoom mostly inwards, shifts, black fill and random gamma (the "
    "test source's framing and brightness); flip: horizontal flips only; none. Ignored by vgg16, which "
    "trains on cached features.",
)
@click.option(
    "--class-weights", is_flag=True, help="Weight the loss so every class counts equally (balanced)."
)
@click.option(
    "--label-smoothing",
    type=click.FloatRange(0, 1, max_open=True),
    default=TrainConfig.label_smoothing,
    show_default=True,
    help="Move this share of each label evenly onto all classes (smaller logits, finer int8 steps).",
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=TrainConfig.patience,
    show_default=True,
    help="Early-stopping epochs.",
)
@click.option(
    "--monitor",
    type=click.Choice(list(MONITORS)),
    default=TrainConfig.monitor,
    show_default=True,
    help="Best-model metric.",
)
@click.option("--weights", help="vgg16 only: imagenet (default), a weights file PATH, or none (random).")
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default=TrainConfig.strategy,
    show_default=True,
    help="default: one device; mirrored: every local GPU (one device on a CPU); multiworker: from TF_CONFIG.",
)
@click.option(
    "--test", type=FOLDER, help="Labelled test folder, reported on at the end (never used to pick a model)."
)
@click.option("--cache", type=FOLDER, help="Pixel and feature cache folder. [default: OUT/../.cache]")
@click.option(
    "--audit/--no-audit",
    default=TrainConfig.audit,
    show_default=True,
    help="Audit first: copies within --data and --test twins of --data (OUT/audit/).",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--force", is_flag=True, help="Replace the run in --out.")
@quiet_unless_verbose
@version_option
@user_errors
def train_command(size: int, **options: Any) -> None:
    """Train a classifier on a class-folder dataset and save the best model with its spec.

    Validation is carved from --data (stratified, seeded). The run folder gets model.keras (calibrated on
    validation, see tumor-calibrate), history.json, report.json/.txt, confusion_matrix.png,
    learning_curves.png, trust.json, reliability.png, train.log and run.json.
    """
    if options["resume"] and options["force"]:
        raise click.UsageError("--resume and --force exclude each other.")
    result = train(TrainConfig(size=(size, size), **options))
    if not result.reports:
        click.echo(f"Worker done after {result.epochs_run} epochs; the chief (worker 0) writes the run.")
        return
    for name, report in result.reports.items():
        click.echo(f"{name} accuracy: {report['accuracy']:.4f} ({report['support']} scans)")
    click.echo(f"Saved {result.model_path} (best epoch {result.best_epoch} of {result.epochs_run}).")


@click.command()
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--data", required=True, type=FOLDER, help="Labelled folder with one sub-folder per class.")
@click.option(
    "--audit", type=click.Path(path_type=Path, dir_okay=False), help="audit.json (tumor-audit) of --data."
)
@click.option("--out", type=FOLDER, help="Write report.json, report.txt and confusion_matrix.png here.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=default_of(evaluate_model, "batch_size"),
    show_default=True,
)
@click.option("--cache", type=FOLDER, help="Cache decoded pixels in this folder.")
@quiet_unless_verbose
@version_option
@user_errors
def evaluate_command(
    model: Path, data: Path, audit: Path | None, out: Path | None, batch_size: int, cache: Path | None
) -> None:
    """Report a saved MODEL.keras's precision, recall, f1 and accuracy on a labelled folder.

    With --audit, accuracy is also given on the clean subset: the scans without a copy in training.
    """
    result = evaluate_model(model, data, audit=audit, out=out, batch_size=batch_size, cache=cache)
    unreadable = [{"path": str(path), "reason": reason} for path, reason in result.unreadable]
    click.echo(format_reports(result.reports, {"data": unreadable}), nl=False)
    for name, report in result.reports.items():
        click.echo(f"accuracy ({name}): {report['accuracy']:.4f} on {report['support']} scans")
    if out is not None:
        click.echo(f"Wrote report.json, report.txt and confusion_matrix.png to {out}.")
