"""`tumor-audit`: audit a dataset folder, optionally against its training folder."""

from __future__ import annotations

import time
from pathlib import Path

import click

from tumorscan.cli_support import user_errors, version_option
from tumorscan.quiet import quiet_unless_verbose
from tumorscan.train.audit import NEAR_THRESHOLD, audit_dataset

FOLDER = click.Path(path_type=Path, file_okay=False)


@click.command()
@click.argument("folder", type=FOLDER)
@click.option(
    "--reference",
    type=FOLDER,
    help="Training folder: scans of FOLDER copying one of its scans are reported and left out of clean.txt.",
)
@click.option("--out", type=FOLDER, help="Write audit.json, audit.txt and clean.txt to this folder.")
@click.option(
    "--near-threshold",
    type=click.IntRange(0, 255),
    default=NEAR_THRESHOLD,
    show_default=True,
    help="Largest perceptual-hash distance (bits of 256) at which two scans count as copies.",
)
@click.option(
    "--exact-only", is_flag=True, help="Look for byte-identical copies only (faster, no imagehash)."
)
@quiet_unless_verbose
@version_option
@user_errors
def audit_command(
    folder: Path, reference: Path | None, out: Path | None, near_threshold: int, exact_only: bool
) -> None:
    """Count the scans of FOLDER per class, name unreadable ones and find duplicates.

    FOLDER holds one sub-folder per class. With --reference, scans that are exact or near copies
    of reference scans are listed, and the rest form the clean subset that tumor-evaluate and
    tumor-parity can report on separately.
    """
    started = time.perf_counter()
    report = audit_dataset(folder, reference, near_threshold=None if exact_only else near_threshold)
    click.echo(report.summary_text(), nl=False)
    click.echo(f"Audited in {time.perf_counter() - started:.1f} s.", err=True)
    if out is not None:
        written = report.write(out)
        click.echo(f"Wrote {', '.join(path.name for path in written)} to {out}.")
