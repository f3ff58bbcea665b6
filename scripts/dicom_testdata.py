#!/usr/bin/env python3
"""Decode every file of pydicom's own test data that holds pixel data, as tumor-infer would.

Reads the files shipped inside the installed pydicom (pydicom/data/test_files; nothing is downloaded) and
prints how many decode, then each refused file with its error code and message.
Exit status: 0 when it ran (whatever was refused).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import Counter
from pathlib import Path


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    import pydicom
    import pydicom.data

    from tumorscan.dicom import dicom_to_image
    from tumorscan.errors import TumorscanError

    folder = Path(pydicom.data.__file__).parent / "test_files"
    warnings.simplefilter("ignore")  # pydicom warns about the files that are malformed on purpose
    files = [
        path
        for path in sorted(folder.glob("**/*.dcm"))
        if "PixelData" in pydicom.dcmread(path, force=True, specific_tags=["PixelData"])
    ]
    refused: list[tuple[str, str, str]] = []
    syntaxes: Counter[str] = Counter()
    started = time.perf_counter()
    for path in files:
        syntaxes[str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.get("TransferSyntaxUID"))] += 1
        try:
            dicom_to_image(path, path.name)
        except TumorscanError as exc:
            refused.append((path.name, exc.code, str(exc).removeprefix(f"{path.name}: ")))
    seconds = time.perf_counter() - started
    print(f"pydicom {pydicom.__version__}: {len(files)} test files with pixel data, {len(syntaxes)} syntaxes")
    print(f"decoded: {len(files) - len(refused)}, refused: {len(refused)} ({seconds:.2f} s)")
    for name, code, message in refused:
        print(f"  {name}  {code}  {message[:110]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
