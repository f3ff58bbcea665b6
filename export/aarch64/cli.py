"""Run tumor-infer on emulated Raspberry Pi CPUs and check its predictions against x86.

The Raspberry Pi 4 has Cortex-A72 cores, the Pi 5 Cortex-A76 cores (which add the dot-product
instructions that int8 kernels use). Both run Raspberry Pi OS bookworm (64-bit): Debian bookworm
arm64 with Python 3.11. This script builds, in a cache folder, a Debian bookworm arm64 root file
system, qemu-aarch64 and the manylinux aarch64 wheels of the runtime's dependencies (the versions
the x86 environment has), installs the wheel built from this checkout into it, runs the same
`tumor-infer --jsonl` command under qemu-aarch64 for each CPU, and compares with a native x86 run
(or an expectation file): the top-1 label must be identical and each probability within one
quantization step of the model's output (float outputs: 1e-4).

Needs: a Debian-based x86_64 host with apt-get, dpkg-deb and the Debian archive keyring, a Debian
mirror (default: the one in the system's APT sources) and PyPI, and a Python with tumorscan installed to
run it (it reads the records through `tumorscan.records`). No root privileges are needed.
Exit status: 0 all predictions match, 1 a mismatch, 2 the check could not run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tumorscan.errors import MetadataError
from tumorscan.records import Record, RecordError, read_records

from .compare import compare_run, model_tolerance, read_expectation
from .guest import CPUS, EmulatedCpu, Emulator, infer, scan_arguments
from .host import CheckError, Log, check_host, python_json
from .report import (
    alignment_line,
    loadable_on_pi5,
    model_heading,
    reference_name,
    results_line,
    setup_lines,
    summary_lines,
    table_rows,
)
from .root import RootBuilder, build_wheel, runtime_pins, shared_library_alignment

CACHE_VARIABLE = "TUMORSCAN_AARCH64_CACHE"
SAMPLE_SCANS = ("tests/data/mri/train", "tests/data/mri/test", "tests/data/dicom")
"""The sample MRI scans, and a JPEG Lossless and a JPEG-LS DICOM file (the [dicom] extra's decoders)."""
PROBE_DEFAULT_MODEL = """
import json
from tumorscan.models import default_model_path
print(json.dumps(str(default_model_path())))
"""


@dataclass(frozen=True)
class CheckOptions:
    """What the check runs, where, and against what.

    Attributes:
        repo: the checkout: its files make the wheel, tumor-infer runs in it, the defaults lie in it.
        models: model files to check (none: the packaged model).
        scans: scan folders.
        cpus: the emulated CPUs, each once, in the order given.
        expect: tumor-infer --jsonl output to compare with instead of a native x86 run.
        cache: folder of the arm64 environment and the results (absolute).
        mirror: Debian mirror URL (None: the one in the system's APT sources).
        x86_python: x86 Python with tumorscan installed: builds the wheel, runs the reference.
    """

    repo: Path
    models: tuple[Path, ...]
    scans: tuple[Path, ...]
    cpus: tuple[str, ...]
    expect: Path | None
    cache: Path
    mirror: str | None
    x86_python: Path


def build_parser(repo: Path) -> argparse.ArgumentParser:
    """The command line of scripts/check_aarch64.py, its defaults in the checkout `repo`."""
    parser = argparse.ArgumentParser(
        prog="check_aarch64.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        type=Path,
        metavar="PATH",
        action="append",
        help="model (.tflite or .onnx) to check; repeat for several (default: the packaged model)",
    )
    parser.add_argument(
        "--scans",
        type=Path,
        metavar="FOLDER",
        action="append",
        help="scan folder; repeat for several (default: tests/data/mri/train and tests/data/mri/test)",
    )
    parser.add_argument("--cpu", choices=sorted(CPUS), action="append", help="emulated CPU (default: both)")
    parser.add_argument(
        "--expect",
        type=Path,
        metavar="FILE",
        help="compare with this tumor-infer --jsonl output (run from the repository root on the same "
        "folders) instead of a native x86 run; one model only",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        metavar="FOLDER",
        default=Path(os.environ.get(CACHE_VARIABLE, repo / ".cache" / "aarch64")),
        help=f"folder for the arm64 environment and the results (default: ${CACHE_VARIABLE} or "
        ".cache/aarch64)",
    )
    parser.add_argument(
        "--mirror", metavar="URL", help="Debian mirror URL (default: the one in the system's APT sources)"
    )
    parser.add_argument(
        "--x86-python",
        type=Path,
        metavar="PYTHON",
        default=repo / ".venv" / "bin" / "python",
        help="x86 Python with tumorscan installed: builds the wheel, runs the reference "
        "(default: .venv/bin/python)",
    )
    return parser


def parse_options(argv: list[str] | None, repo: Path) -> CheckOptions:
    """The options of a command line (None: sys.argv's); exits with status 2 on a usage error."""
    args = build_parser(repo).parse_args(argv)
    return CheckOptions(
        repo=repo,
        models=tuple(args.model or ()),
        scans=tuple(args.scans or (repo / folder for folder in SAMPLE_SCANS)),
        cpus=tuple(dict.fromkeys(args.cpu or CPUS)),
        expect=args.expect,
        cache=args.cache.resolve(),
        mirror=args.mirror,
        x86_python=args.x86_python,
    )


def resolve_models(options: CheckOptions) -> dict[Path, Path | None]:
    """Each model file -> what to pass as --model (None: the packaged model, found by each side itself)."""
    if not options.models:
        return {Path(python_json(options.x86_python, PROBE_DEFAULT_MODEL)): None}
    models: dict[Path, Path | None] = {}
    for model in options.models:
        if not model.is_file():
            raise CheckError(f"{model}: no such model file")
        models[model.resolve()] = model.resolve()
    if options.expect is not None and len(models) != 1:
        raise CheckError("--expect holds one model's results: pass a single --model")
    return models


def _print(lines: Iterable[str]) -> None:
    for line in lines:
        print(line)


def reference_records(
    options: CheckOptions, model: Path | None, scans: list[str], results: Path
) -> dict[str, Record]:
    """The --expect file's records, or those of a native x86 run (kept in `results`)."""
    if options.expect is not None:
        return read_expectation(options.expect)
    python = [str(options.x86_python)]
    return read_records(infer(python, None, model, scans, results / "x86_64.jsonl", options.repo), "x86_64")


def check_model(
    options: CheckOptions,
    emulator: Emulator,
    cpus: list[EmulatedCpu],
    scans: list[str],
    path: Path,
    model: Path | None,
) -> bool:
    """Run one model natively (unless --expect) and on each CPU; print its table; True when all match."""
    results = options.cache / "results" / path.name
    tolerance, why = model_tolerance(options.x86_python, path)
    reference = reference_records(options, model, scans, results)
    _print(model_heading(path.name, model is None, tolerance, why))
    all_ok = True
    for cpu in cpus:
        started = time.monotonic()
        output = infer(
            emulator.command(cpu.name),
            emulator.environment(),
            model,
            scans,
            results / f"{cpu.name}.jsonl",
            options.repo,
        )
        outcome = compare_run(reference, output, cpu.name, tolerance)
        all_ok &= outcome.ok
        _print(table_rows(cpu, outcome, time.monotonic() - started))
    print(results_line(results))
    return all_ok


def prepare_emulator(options: CheckOptions, mirror: str) -> tuple[Emulator, str, list[str]]:
    """The arm64 environment with the checkout's wheel and its pinned dependencies installed.

    Returns:
        The environment, the wheel's file name and the pinned requirements.
    """
    builder = RootBuilder(
        Emulator(options.cache), mirror, options.x86_python, Log(options.cache / "setup.log")
    )
    builder.prepare()
    with tempfile.TemporaryDirectory() as folder:
        wheel = build_wheel(options.repo, options.x86_python, Path(folder), builder.log)
        pins = runtime_pins(wheel, options.x86_python)
        return builder.install(wheel, pins), wheel.name, pins


def check(options: CheckOptions) -> int:
    """Run the check, print its report; 0 when every prediction matches and every library loads on a Pi 5."""
    started = time.monotonic()
    mirror = check_host(options.x86_python, options.mirror)
    models = resolve_models(options)
    scans = scan_arguments(list(options.scans), options.repo)
    emulator, wheel, pins = prepare_emulator(options, mirror)
    cpus = [emulator.probe(cpu) for cpu in options.cpus]
    setup_seconds = time.monotonic() - started

    reference = reference_name(options.expect, options.x86_python)
    _print(setup_lines(emulator.qemu_version(), cpus[0].python, wheel, pins, reference, scans))
    libraries, alignment = shared_library_alignment([emulator.site, emulator.package])
    print(alignment_line(libraries, alignment))
    all_ok = all([check_model(options, emulator, cpus, scans, path, model) for path, model in models.items()])
    aligned = loadable_on_pi5(alignment)
    _print(summary_lines(setup_seconds, time.monotonic() - started, all_ok, aligned))
    return 0 if all_ok and aligned else 1


def main(repo: Path, argv: list[str] | None = None) -> int:
    """scripts/check_aarch64.py in the checkout `repo`: exit status 0 all match, 1 a mismatch, 2 no check."""
    options = parse_options(argv, repo)
    try:
        return check(options)
    except (CheckError, RecordError, MetadataError) as exc:
        print(f"check_aarch64: {exc}", file=sys.stderr)
        return 2
