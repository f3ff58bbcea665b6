#!/usr/bin/env python3
"""Time tumor-infer on DICOM slices with and without --studies (grouping, ordering, summaries).

Writes SERIES series of SLICES 256x256 16-bit MR slices of one study into a temporary folder (shuffled
names), then runs `tumor-infer --jsonl` and `tumor-infer --jsonl --studies` on the folder, alternating,
REPEATS times each, and prints a table: records by kind and the best wall time of each, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

RUN_CLI = "from tumorscan.cli import infer_command; infer_command(prog_name='tumor-infer')"


def write_study(folder: Path, series: int, slices: int, images: list[Path] | None = None) -> None:
    """One study of `series` x `slices` slices, 5 mm apart, file names in shuffled order.

    The pixels are a bright blob in noise, or the given images (greyscale, 256x256, in turn).
    """
    import numpy as np
    from PIL import Image
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    rng = np.random.default_rng(0)
    study = generate_uid()
    yy, xx = np.mgrid[:256, :256]
    base = 1000 + 800 * np.exp(-((yy - 128) ** 2 + (xx - 128) ** 2) / 3000)
    for s in range(series):
        series_uid = generate_uid()
        for index, number in enumerate(rng.permutation(slices)):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            data = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
            data.SOPClassUID, data.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
            data.StudyInstanceUID, data.SeriesInstanceUID, data.Modality = study, series_uid, "MR"
            data.SeriesNumber, data.InstanceNumber = s + 1, int(number) + 1
            data.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            data.ImagePositionPatient = [0, 0, 5.0 * float(number)]
            data.Rows = data.Columns = 256
            data.SamplesPerPixel, data.PhotometricInterpretation = 1, "MONOCHROME2"
            data.BitsAllocated, data.BitsStored, data.HighBit, data.PixelRepresentation = 16, 16, 15, 0
            if images:
                image = Image.open(images[(s * slices + index) % len(images)]).convert("L").resize((256, 256))
                pixels = np.asarray(image, dtype=np.float64) * 8
            else:
                pixels = base + rng.normal(0, 30, base.shape)
            data.PatientName, data.PatientID = "Anonymous^Bench", "BENCH-1"
            data.PixelData = pixels.astype(np.uint16).tobytes()
            data.save_as(folder / f"s{s}_{index:04d}.dcm", enforce_file_format=True)


def run(folder: Path, model: list[str], studies: bool) -> tuple[float, Counter[str]]:
    command = [sys.executable, "-c", RUN_CLI, str(folder), "--jsonl", "--no-progress", *model]
    started = time.perf_counter()
    result = subprocess.run(command + (["--studies"] if studies else []), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 1):
        raise SystemExit(f"tumor-infer failed: {result.stderr.strip()}")
    return seconds, Counter(json.loads(line)["status"] for line in result.stdout.splitlines())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=5)
    parser.add_argument("--slices", type=int, default=100, help="slices per series")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", help="model file (default: the packaged one)")
    parser.add_argument(
        "--images", type=Path, help="take the slices' pixels from the image files in this folder"
    )
    parser.add_argument("--write-only", type=Path, metavar="DIR", help="only write the study into DIR")
    args = parser.parse_args()
    model = ["--model", args.model] if args.model else []
    images = sorted(p for p in args.images.iterdir() if p.is_file()) if args.images else None
    if args.write_only:
        args.write_only.mkdir(parents=True, exist_ok=True)
        write_study(args.write_only, args.series, args.slices, images)
        return 0
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        write_study(folder, args.series, args.slices, images)
        best = {False: float("inf"), True: float("inf")}
        kinds: dict[bool, Counter[str]] = {}
        for _ in range(args.repeats):
            for studies in (False, True):
                seconds, kinds[studies] = run(folder, model, studies)
                best[studies] = min(best[studies], seconds)
    print(f"{args.series} series x {args.slices} slices, best of {args.repeats} runs each")
    print(f"{'mode':<22}{'slice records':>14}{'series':>8}{'studies':>9}{'seconds':>9}")
    for studies, name in ((False, "tumor-infer --jsonl"), (True, "  ... --studies")):
        counts = kinds[studies]
        slices = counts["ok"] + counts["error"]
        print(f"{name:<22}{slices:>14}{counts['series']:>8}{counts['study']:>9}{best[studies]:>9.2f}")
    print(f"ratio --studies / plain: {best[True] / best[False]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
