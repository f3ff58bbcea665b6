#!/usr/bin/env python3
"""Write tests/data/golden.json: the original Keras model's probabilities on the committed sample scans.

The golden-output test checks the packaged default model against this file without TensorFlow.
Usage: scripts/make_golden.py ORIGINAL.keras [--default runtime/models/default.tflite]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tumorscan.folders import scan_dataset
from tumorscan.images import load_pixels
from tumorscan.metadata import read_model_spec
from tumorscan.train.batches import keras_outputs
from tumorscan.train.keras_file import file_sha256, load_keras, require_keras_spec
from tumorscan.trust import Trust

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data" / "mri"
GOLDEN = ROOT / "tests" / "data" / "golden.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original", type=Path)
    parser.add_argument("--default", type=Path, default=ROOT / "runtime" / "models" / "default.tflite")
    args = parser.parse_args()
    spec = require_keras_spec(args.original, "pass the model tumor-train saved.")
    exported = read_model_spec(args.default)
    sha256 = file_sha256(args.original)
    if exported.source_sha256 != sha256:
        raise SystemExit(f"{args.default} was not exported from {args.original}.")
    scans = [scan for split in ("train", "test") for scan in scan_dataset(SAMPLES / split, spec.labels)]
    pixels = np.stack([load_pixels(scan.path, spec.input.size) for scan in scans])
    probabilities = keras_outputs(load_keras(args.original), pixels)
    trust = Trust.from_spec(spec)
    probabilities = trust.calibrate(probabilities) if trust else probabilities  # what the runtime reports
    golden = {
        "original_sha256": sha256,
        "labels": list(spec.labels),
        "scans": [
            {
                "path": scan.path.relative_to(SAMPLES).as_posix(),
                "truth": scan.label,
                "probabilities": [round(float(p), 6) for p in row],
            }
            for scan, row in zip(scans, probabilities, strict=True)
        ],
    }
    GOLDEN.write_text(json.dumps(golden, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN} ({len(scans)} scans)")


if __name__ == "__main__":
    main()
