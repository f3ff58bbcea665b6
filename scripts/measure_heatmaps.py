#!/usr/bin/env python3
"""Measure the heatmaps of `tumor-infer --explain`: seconds per scan, deletion and insertion curves.

COUNT scans drawn from a labelled folder (the same number from each class, seeded) are explained for the
class the model predicts: by the occlusion of the previous version, the one now, variants of it (METHODS),
and a random map (the floor). For each map, `tumorscan.explain_quality` removes the hottest pixels first and
reads the class's calibrated probability: the area under the deletion curve (pixels to black, as in RISE;
and to the blurred scan) is low, and the area under the insertion curve (from the blurred scan) high, for a
map that finds what the model uses. No tumour outlines are needed. Each substrate favours the maps made by
occluding with it, so all three are printed. Also: how much of each map lies in the image's outer 16 px (at
224), where the head's outline and the background are, and on how many scans the hottest pixel does. Seconds
per scan are wall time on this machine as it is (its load average is recorded).

    python scripts/measure_heatmaps.py runtime/models/default.tflite \\
        --data Testing --count 30 --out results/trust/heatmap_quality.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.classifier import Classifier
from tumorscan.explain import DEFAULT_OCCLUSION, Occlusion
from tumorscan.explain_quality import CURVES, Probability, curve_areas
from tumorscan.folders import scan_dataset

METHODS: dict[str, Occlusion | None] = {
    "before: black 32 px squares, probability, blocks": Occlusion(
        patch=1 / 7, stride=1 / 14, fill="black", score="probability", smooth=False
    ),
    "now: blurred 24 px squares, log-odds, bilinear": DEFAULT_OCCLUSION,
    "now, black fill": replace(DEFAULT_OCCLUSION, fill="black"),
    "now, mean-colour fill": replace(DEFAULT_OCCLUSION, fill="mean"),
    "now, probability drops": replace(DEFAULT_OCCLUSION, score="probability"),
    "now, 14 px steps": replace(DEFAULT_OCCLUSION, stride=1 / 16),
    "random map": None,
}
"""The methods compared (None: a map of uniform noise, seeded)."""
EDGE = 1 / 14
"""The band along the image's border whose share of each map is reported (16 px at 224: 26.5% of the area)."""


def drawn_scans(data: Path, labels: tuple[str, ...], count: int, seed: int) -> list[Path]:
    """`count` scans of `data`, as many from each class as can be (the first classes one more), sorted."""
    rng = np.random.default_rng(seed)
    scans = scan_dataset(data, labels)
    chosen: list[Path] = []
    for index, label in enumerate(labels):
        paths = [scan.path for scan in scans if scan.label == label]
        wanted = count // len(labels) + (index < count % len(labels))
        chosen += [paths[int(i)] for i in sorted(rng.choice(len(paths), wanted, replace=False))]
    return chosen


def probability_of(classifier: Classifier, label: str) -> Probability:
    """The calibrated probability of `label` for a batch of pixels."""
    target = classifier.labels.index(label)

    def probability(batch: NDArray[np.uint8]) -> NDArray[np.float64]:
        return classifier.probabilities(batch)[:, target].astype(np.float64)

    return probability


def edge(heat: NDArray[np.floating]) -> tuple[float, bool]:
    """Share of the map's positive part in the outer EDGE of the side (the head's outline and the background
    in most scans), and whether the hottest pixel lies there."""
    band = np.ones(heat.shape, dtype=bool)
    width = round(min(heat.shape) * EDGE)
    band[width:-width, width:-width] = False
    positive = np.clip(heat, 0, None)
    return float(positive[band].sum() / max(positive.sum(), 1e-12)), bool(band.flat[np.argmax(heat)])


def measure_method(
    classifier: Classifier, scans: list[tuple[NDArray[np.uint8], str]], method: Occlusion | None, seed: int
) -> dict[str, Any]:
    """Seconds and curve areas of one method over the scans (means, and every scan's values)."""
    seconds, areas, edges = [], {name: list[float]() for name in CURVES}, []
    rng = np.random.default_rng(seed)
    for pixels, label in scans:
        started = time.perf_counter()
        heat = rng.random(pixels.shape[:2]) if method is None else classifier.explain(pixels, label, method)
        seconds.append(time.perf_counter() - started)
        found = curve_areas(probability_of(classifier, label), pixels, heat, seed)
        for name, value in found.items():
            areas[name].append(value)
        edges.append(edge(heat))
    passes = method.passes(*classifier.spec.input.size) if method else 0
    result: dict[str, Any] = {
        "method": asdict(method) if method else None,
        "passes": passes,
        "seconds_per_scan": statistics.mean(seconds),
        "ms_per_pass": 1000 * statistics.mean(seconds) / passes if passes else None,
    }
    result.update({name: statistics.mean(values) for name, values in areas.items()})
    result["edge_share"] = statistics.mean(share for share, _ in edges)
    result["hottest_at_edge"] = sum(hottest for _, hottest in edges)
    result["per_scan"] = {"seconds": seconds, **areas, "edge_share": [share for share, _ in edges]}
    return result


def measure(arguments: argparse.Namespace) -> dict[str, Any]:
    classifier = Classifier.load(arguments.model)
    paths = drawn_scans(arguments.data, classifier.labels, arguments.count, arguments.seed)
    scans = []
    for path in paths:
        pixels = classifier.read(path)
        scans.append((pixels, classifier.predict(pixels).label))
    results: dict[str, Any] = {
        "model": str(arguments.model),
        "identity": str(classifier.identity),
        "scans": [path.relative_to(arguments.data).as_posix() for path in paths],
        "explained": [label for _, label in scans],
        "seed": arguments.seed,
        "cores": len(os.sched_getaffinity(0)),
        "load_average_before": os.getloadavg()[0],
        "methods": {},
    }
    for name, method in METHODS.items():
        results["methods"][name] = row = measure_method(classifier, scans, method, arguments.seed)
        print(
            f"{name:50} {row['passes']:>6} {row['seconds_per_scan']:>8.2f} "
            + " ".join(f"{row[curve]:>13.3f}" for curve in CURVES)
            + f" {row['edge_share']:>10.3f} {row['hottest_at_edge']:>5}/{len(scans)}",
            flush=True,
        )
    results["load_average_after"] = os.getloadavg()[0]
    return results


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("model", type=Path, help="a .tflite or .onnx file exported by tumorscan")
    parser.add_argument("--data", type=Path, required=True, help="a class-folder dataset (e.g. Testing)")
    parser.add_argument("--count", type=int, default=30, help="scans to explain (default: 30)")
    parser.add_argument("--seed", type=int, default=0, help="draws the scans, breaks ties (default: 0)")
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    arguments = parser.parse_args()
    curves = " ".join(f"{curve:>13}" for curve in CURVES)
    print(f"{'method':50} {'passes':>6} {'s/scan':>8} {curves} {'edge share':>10} {'hottest at edge':>15}")
    results = measure(arguments)
    if arguments.out is not None:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
