#!/usr/bin/env python3
"""Measure how an exported model holds up: mirrored, rotated and zoomed test scans, foreign images, speed.

Through the runtime (no TensorFlow), as tumor-infer runs MODEL, with or without --mirror:
- the test folder's files: accuracy; seconds per scan with and without --mirror;
- each test scan decoded and changed (`tumorscan.train.robustness`): mirrored left-right, rotated 90, 180 and
  270 degrees, centre crops zoomed 1.5x and 2x; per change the share answered wrongly (neither abstained nor
  flagged out of distribution), flagged, abstained, and the share with the unchanged scan's label;
- the foreign images (`tumorscan.train.foreign_images`, real non-MRI images): how many are flagged out of
  distribution, and the label and confidence of each one that is not;
- the validation split the model was trained with (carved from --validation, the training folder, as
  recorded in the model): the share flagged out of distribution.

Usage: python scripts/measure_robustness.py MODEL --data TESTING --validation TRAINING [--mirror]
    --out results/robust/NAME.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tumorscan.classifier import Classifier
from tumorscan.folders import scan_dataset
from tumorscan.models import default_model_path
from tumorscan.train.foreign_images import foreign_images
from tumorscan.train.robustness import measure, table, validation_scans
from tumorscan.train.run_config import recorded_split, split_entry
from tumorscan.train.splits import SPLITS


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path, nargs="?", help="Exported model (default: the packaged one).")
    parser.add_argument("--data", type=Path, required=True, help="The labelled test folder.")
    parser.add_argument("--validation", type=Path, required=True, help="The model's training folder.")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        help="How the validation split was carved, for a model that does not record it (default: recorded).",
    )
    parser.add_argument("--mirror", action="store_true", help="Average each scan with its mirror.")
    parser.add_argument(
        "--cache", type=Path, default=Path("runs/cache"), help="Decoded-pixel cache (as tumor-train's)."
    )
    parser.add_argument("--out", type=Path, help="Write the results here as JSON.")
    arguments = parser.parse_args()
    classifier = Classifier.load(arguments.model or default_model_path())
    classifier.mirror = arguments.mirror
    if arguments.split is None and not split_entry(classifier.spec):
        taken = recorded_split(classifier.spec)
        print(
            f"note: the model records no training config; its validation split is taken as {taken}: "
            "pass --split if it was carved otherwise",
            file=sys.stderr,
        )
    test = scan_dataset(arguments.data, classifier.labels)
    validation = validation_scans(classifier, arguments.validation, arguments.cache, arguments.split)
    results = measure(classifier, test, validation, foreign_images())
    results["validation"]["split"] = arguments.split or "recorded"
    print(table(results), end="")
    if arguments.out is not None:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
