#!/usr/bin/env python3
"""Check a built tumorscan wheel: the packaged model is in, no tests, results or caches are, under 15 MB.

Usage: scripts/check_wheel.py dist/tumorscan-*.whl (run by .ci/run after `python -m build`).
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path, PurePosixPath

MAX_BYTES = 15_000_000
"""The wheel's size limit; the packaged int8 model alone is 12.9 MB."""

FORBIDDEN_PARTS = {"tests", "results", "runs", "scripts", "__pycache__", ".cache", ".pytest_cache"}
"""Folders that must not ship: tests and their data, run outputs, development scripts, caches."""

FORBIDDEN_SUFFIXES = {".pyc", ".pyo", ".keras", ".onnx", ".log"}

REQUIRED = {"tumorscan/models/default.tflite", "tumorscan/py.typed", "tumorscan/_version.py"}


def problems(wheel: Path) -> list[str]:
    """What is wrong with the wheel (empty: nothing)."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    found = []
    for name in names:
        path = PurePosixPath(name)
        if set(path.parts) & FORBIDDEN_PARTS or path.suffix in FORBIDDEN_SUFFIXES:
            found.append(f"{wheel.name} holds {name}")
    found += [f"{wheel.name} lacks {name}" for name in sorted(REQUIRED - set(names))]
    size = wheel.stat().st_size
    if size >= MAX_BYTES:
        found.append(f"{wheel.name} is {size / 1e6:.2f} MB, over {MAX_BYTES / 1e6:.0f} MB")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    args = parser.parse_args()
    found = problems(args.wheel)
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        raise SystemExit(f"wheel check failed: {len(found)} problem(s)")
    with zipfile.ZipFile(args.wheel) as archive:
        count = len(archive.namelist())
    print(f"wheel check passed: {args.wheel.name}, {args.wheel.stat().st_size / 1e6:.2f} MB, {count} files")


if __name__ == "__main__":
    main()
