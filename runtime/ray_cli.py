"""`tumor-infer --engine ray`: the same command on a Ray cluster, records sharded in an output folder.

`tumor-infer` hands its options here only when `--engine ray` (or an option that belongs to it) is given,
so a plain run never imports this module, `tumorscan.ray` or Ray.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import click

from .errors import ModelError
from .quiet import quiet_native_stderr
from .ray import NoSourcesError, RayJob, RayRun, classify_on_ray

PROGRESS_SECONDS = 10.0
"""Without a terminal, a progress line this often (a cluster job's log)."""


def _job(options: Mapping[str, Any]) -> RayJob:
    """The job the options describe, or a usage error (exit status 2) for options that do not fit Ray."""
    if options["engine"] != "ray":
        raise click.UsageError("--ray-address, --resume and --parquet go with --engine ray.")
    output = options["output"]
    if output is None or str(output) == "-":
        raise click.UsageError("--engine ray writes record shards to a folder: pass --output DIR (or a URI).")
    if options["output_format"] not in (None, "jsonl", "parquet"):
        raise click.UsageError("--engine ray writes --jsonl (the default) or --parquet shards.")
    if options["explain"] is not None:
        raise click.UsageError("--explain runs without --engine ray (heatmaps take seconds per scan).")
    if options["mirror"]:
        raise click.UsageError("--mirror runs without --engine ray.")
    return RayJob(
        sources=options["scans"],
        output=str(output),
        model=options["model"],
        output_format=options["output_format"] or "jsonl",
        address=options["ray_address"],
        resume=options["resume"],
        backend=options["backend"],
        threads=options["threads"] or 1,
        top_k=options["top_k"],
        abstain_threshold=options["abstain_threshold"],
    )


class Progress:
    """A bar on a terminal; otherwise a line every PROGRESS_SECONDS; or nothing."""

    def __init__(self, show: bool | None) -> None:
        self.tty = sys.stderr.isatty()
        self.show = self.tty if show is None else show
        self.bar: Any = None
        self.done = 0
        self.started = self.last = time.perf_counter()

    def __call__(self, count: int, total: int) -> None:
        if not self.show:
            return
        self.done += count
        if self.tty:
            if self.bar is None:
                self.bar = click.progressbar(length=total, label="Classifying on Ray", file=sys.stderr)
            self.bar.update(count)
        elif time.perf_counter() - self.last >= PROGRESS_SECONDS or self.done == total:
            self.last = time.perf_counter()
            rate = self.done / max(self.last - self.started, 1e-9)
            click.echo(f"classified {self.done}/{total} ({rate:.0f} scans/s)", err=True)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.render_finish()


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def summary(run: RayRun, model: str, output: str, seconds: float) -> str:
    """tumor-infer's one summary line, with the cluster, what was already recorded and where it went."""
    counts = dict(run.outcomes)
    predicted, abstained = counts.pop("predicted", 0), counts.pop("abstained", 0)
    failed = sum(counts.values())
    line = f"{predicted + abstained + failed} scans: {predicted + abstained} predicted, {failed} failed"
    if counts:
        line += " (" + ", ".join(f"{code}: {count}" for code, count in sorted(counts.items())) + ")"
    if run.can_abstain:
        line += f", {abstained} abstained"
    cluster = f"{_count(run.nodes, 'node')}, {_count(run.cpus, 'CPU')}"
    line += f" in {seconds:.1f} s with {model} on Ray ({cluster})"
    line += f"; {run.already_done} already recorded; {_count(run.shards, 'shard')} written to {output}"
    return line + (f"; {run.abstention_note}" if run.abstention_note else "")


def infer_on_ray(options: Mapping[str, Any]) -> None:
    """Run tumor-infer's options on Ray; exit status 1 when some scans failed, as tumor-infer does."""
    job = _job(options)
    progress = Progress(options["progress"])
    started = time.perf_counter()
    try:
        with quiet_native_stderr():  # Ray's C++ start-up and actor lines
            run = classify_on_ray(job, progress)
    except ModelError as exc:
        raise click.BadParameter(str(exc), param_hint="'--model'") from exc
    except NoSourcesError as exc:
        raise click.UsageError(str(exc)) from exc
    finally:
        progress.finish()
    for warning in run.listed.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(summary(run, run.model, job.output, time.perf_counter() - started), err=True)
    if any(name not in ("predicted", "abstained") for name in run.outcomes):
        sys.exit(1)
