"""`tumor-calibrate`: fit the trust entry (temperature, threshold, input checks) of a saved `.keras` model."""

from __future__ import annotations

from pathlib import Path

import click

from tumorscan.cli_support import user_errors, version_option
from tumorscan.quiet import quiet_unless_verbose
from tumorscan.train.calibrate import DEFAULT_TARGET_ACCURACY, calibrate_keras
from tumorscan.train.run_config import TrainConfig

FOLDER = click.Path(path_type=Path, file_okay=False)
SHIFTED_EXIT = 3
"""Exit status of `tumor-trust --site` when the site's scans are shifted (1 and 2 stay errors)."""


@click.command()
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--data", required=True, type=FOLDER, help="The labelled training folder (one sub-folder per class)."
)
@click.option(
    "--out", required=True, type=FOLDER, help="Write model.keras, trust.json and reliability.png here."
)
@click.option(
    "--val-split",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help=f"Validation fraction of --data. [default: the model's training run, else {TrainConfig.val_split}]",
)
@click.option(
    "--seed", type=int, help=f"Split seed. [default: the model's training run, else {TrainConfig.seed}]"
)
@click.option(
    "--target-accuracy",
    type=click.FloatRange(0, 1, min_open=True),
    default=DEFAULT_TARGET_ACCURACY,
    show_default=True,
    help="The answered validation scans must be at least this accurate.",
)
@click.option("--cache", type=FOLDER, help="Cache decoded pixels in this folder.")
@quiet_unless_verbose
@version_option
@user_errors
def calibrate_command(
    model: Path,
    data: Path,
    out: Path,
    val_split: float | None,
    seed: int | None,
    target_accuracy: float,
    cache: Path | None,
) -> None:
    """Calibrate MODEL.keras on the validation split of --data and save a copy that carries the result.

    The copy's spec holds the temperature, the abstention threshold and the input-check ranges; tumor-export
    carries them into every exported file and tumor-infer applies them.
    """
    fit = calibrate_keras(model, data, out, val_split, seed, target_accuracy, cache)
    entry, measured = fit.entry, fit.entry["validation"]
    click.echo(
        f"temperature {entry['temperature']}, threshold {entry['threshold']:.4f}; validation ECE "
        f"{measured['ece_before']:.4f} -> {measured['ece_after']:.4f}, NLL {measured['nll_before']:.4f} -> "
        f"{measured['nll_after']:.4f}; answered {measured['coverage']:.1%} at accuracy "
        f"{measured['accuracy_answered'] or 0:.1%}; out-of-distribution checks flag "
        f"{measured['flagged_out_of_distribution']:.1%} of validation scans"
    )
    click.echo(f"Wrote model.keras, trust.json and reliability.png to {out}.")


@click.command()
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--data", type=FOLDER, help="Labelled test folder (one sub-folder per class).")
@click.option(
    "--site",
    type=FOLDER,
    help="Instead of --data: an unlabelled folder of a new site's scans, checked for shift.",
)
@click.option(
    "--audit",
    type=click.Path(path_type=Path, dir_okay=False),
    help="audit.json of --data: adds its clean subset.",
)
@click.option(
    "--out",
    required=True,
    type=FOLDER,
    help="Write trust_report.json and risk_coverage.png (--site: shift_report.json and shift.png) here.",
)
@click.option(
    "--abstain-threshold",
    type=click.FloatRange(0, 1),
    help="Report at this threshold instead of the model's.",
)
@quiet_unless_verbose
@version_option
@user_errors
def trust_command(
    model: Path,
    data: Path | None,
    site: Path | None,
    audit: Path | None,
    out: Path,
    abstain_threshold: float | None,
) -> None:
    """Trust report of an exported MODEL (.tflite or .onnx), run through the runtime as deployed.

    With --data: accuracy against the share of scans answered (risk_coverage.png), the table at the model's
    abstention threshold on --data and its clean subset, ECE, and the answers to the non-MRI image set.

    With --site: whether a new site's unlabelled scans differ from the model's validation scans (a two-sample
    test per statistic, Bonferroni-corrected); exit status 3 when they do.
    """
    if (data is None) == (site is None):
        raise click.UsageError(
            "pass either --data (a labelled folder) or --site (a site's unlabelled scans)."
        )
    if site is not None:
        _site_check(model, site, out)
        return
    from tumorscan.train.trust_report import format_trust_report, trust_report

    assert data is not None
    report = trust_report(model, data, audit, out, abstain_threshold)
    click.echo(format_trust_report(report), nl=False)
    click.echo(f"Wrote trust_report.json and risk_coverage.png to {out}.")


def _site_check(model: Path, site: Path, out: Path) -> None:
    """The --site mode of tumor-trust."""
    from tumorscan.train.site_check import check_site, format_site_report

    report, document, written = check_site(model, site, out)
    click.echo(format_site_report(report), nl=False)
    if document["unreadable"]:
        click.echo(f"{len(document['unreadable'])} scans could not be read (listed in the report).", err=True)
    click.echo(f"Wrote {', '.join(p.name for p in written)} to {out}.")
    if report.shifted:
        raise SystemExit(SHIFTED_EXIT)
