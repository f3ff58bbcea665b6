#!/usr/bin/env python3
"""Measure `tumor-trust --site` on the seed's data: false alarms on the training source, power on the new one.

Every scan is run once through the exported MODEL (the runtime, as deployed); a draw of N scans is the shift
check of a folder holding those N scans (the observations of a scan do not depend on its folder).

- Training source, never trained on and kept out of the stored reference: the part of the validation
  split that calibration leaves out of the shift reference (`tumorscan.train.calibrate`). DRAWS random
  draws of --size scans; the check must call at most one in twenty shifted.
- The test scans with a copy in the training folder (training source), and the clean subset of the
  audit (the other source): the whole set, and DRAWS random draws of --small-size scans.

Usage: python scripts/measure_shift.py MODEL.tflite --data TRAINING --test TESTING --audit AUDIT.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from tumorscan.classifier import Classifier
from tumorscan.folders import scan_dataset
from tumorscan.shift import ALPHA, Observations, compare, observe_folder, reference_of
from tumorscan.train.audit import load_clean_subset, relative_name
from tumorscan.train.calibrate import shift_reference_rows
from tumorscan.train.data import load_dataset
from tumorscan.train.run_config import recorded_split
from tumorscan.train.splits import validation_split


def kept_out_validation(classifier: Classifier, data: Path, cache: Path) -> list[Path]:
    """The validation scans of `data` that the model's shift reference leaves out."""
    scans = load_dataset(data, classifier.spec.input.size, cache, labels=classifier.labels, progress=False)
    _, validation = validation_split(scans, *recorded_split(classifier.spec), progress=False)
    _, kept_out = shift_reference_rows(len(validation))
    names = scans.relative_paths()
    return [scans.root / names[int(i)] for i in validation[kept_out]]


def draws(
    classifier: Classifier, reference: Observations, observed: Observations, size: int, count: int, seed: int
) -> dict[str, Any]:
    """The check on `count` random draws of `size` scans: how many are called shifted, and the p-values."""
    rng = np.random.default_rng(seed)
    p_values = [
        compare(
            reference, observed.take(rng.choice(len(observed), size, replace=False)), classifier.labels
        ).p_value
        for _ in range(count)
    ]
    return {
        "size": size,
        "draws": count,
        "shifted": int(sum(p < ALPHA for p in p_values)),
        "p_values": [round(p, 6) for p in p_values],
    }


def measure(arguments: argparse.Namespace) -> dict[str, Any]:
    classifier = Classifier.load(arguments.model)
    reference = reference_of(classifier.spec.trust, classifier.labels, str(arguments.model))
    clean = load_clean_subset(arguments.audit)
    test = [s.path for s in scan_dataset(arguments.test, classifier.labels)]
    sets = {
        "validation kept out (training source)": kept_out_validation(
            classifier, arguments.data, arguments.cache
        ),
        "test scans with a training copy (training source)": [
            p for p in test if relative_name(p, arguments.test) not in clean
        ],
        "test clean subset (other source)": [p for p in test if relative_name(p, arguments.test) in clean],
    }
    results: dict[str, Any] = {"model": str(arguments.model), "reference_scans": len(reference), "sets": {}}
    for name, paths in sets.items():
        observed = observe_folder(classifier, paths).observations
        whole = compare(reference, observed, classifier.labels)
        results["sets"][name] = {
            "scans": len(paths),
            "whole": {"shifted": whole.shifted, "p_value": whole.p_value},
            "draws": draws(classifier, reference, observed, arguments.size, arguments.draws, arguments.seed),
            "small_draws": draws(
                classifier, reference, observed, arguments.small_size, arguments.draws, arguments.seed
            ),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="The model's training folder.")
    parser.add_argument("--test", type=Path, required=True, help="The labelled test folder.")
    parser.add_argument("--audit", type=Path, required=True, help="audit.json of --test against --data.")
    parser.add_argument(
        "--cache", type=Path, default=Path("runs/cache"), help="Decoded-pixel cache (as tumor-train's)."
    )
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--size", type=int, default=50)
    parser.add_argument("--small-size", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="Write the results here as JSON.")
    arguments = parser.parse_args()
    results = measure(arguments)
    print(f"{'set':52} {'scans':>6} {'whole: p':>10} {'draws of N shifted':>19} {'draws of n shifted':>19}")
    for name, row in results["sets"].items():
        big, small = row["draws"], row["small_draws"]
        print(
            f"{name:52} {row['scans']:>6} {row['whole']['p_value']:>10.3g} "
            f"{big['shifted']:>3}/{big['draws']} (N={big['size']}){'':5} "
            f"{small['shifted']:>3}/{small['draws']} (n={small['size']})"
        )
    if arguments.out is not None:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
