"""How a model's answers hold up when a scan is mirrored, rotated or zoomed; what it says to foreign images.

Everything runs through the runtime (`tumorscan.Classifier`, no TensorFlow), as deployed. A changed scan is
made from the scan decoded at full size and turned upright, then read by `load_pixels` like any image; its
reference, `original`, is that same decoded scan unchanged. An answer is wrong when it is given (neither
abstained nor flagged out of distribution) and is not the scan's class; `flagged` counts the
out-of-distribution reason (`tumorscan.trust`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from tumorscan.classifier import Classifier, Prediction
from tumorscan.errors import DatasetError
from tumorscan.folders import LabelledScan
from tumorscan.images import ImageSource, decode_scan, upright
from tumorscan.train.data import load_dataset
from tumorscan.train.negatives import centre_crop
from tumorscan.train.run_config import recorded_split
from tumorscan.train.splits import validation_split
from tumorscan.trust import OUT_OF_DISTRIBUTION

Transform = Callable[[Image.Image], Image.Image]


VARIANTS: dict[str, Transform] = {
    "original": lambda image: image,
    "mirrored": ImageOps.mirror,
    "rotated_90": lambda image: image.transpose(Image.Transpose.ROTATE_90),
    "rotated_180": lambda image: image.transpose(Image.Transpose.ROTATE_180),
    "rotated_270": lambda image: image.transpose(Image.Transpose.ROTATE_270),
    "zoomed_1.5x": centre_crop(1.5),
    "zoomed_2x": centre_crop(2.0),
}
"""Changes of a scan by name (rotations counter-clockwise, in degrees)."""


@dataclass(frozen=True)
class Answers:
    """What a model said to some images, one row each."""

    labels: NDArray[np.str_]
    confidence: NDArray[np.float64]
    abstained: NDArray[np.bool_]
    flagged: NDArray[np.bool_]

    @property
    def given(self) -> NDArray[np.bool_]:
        """Answers neither abstained nor flagged out of distribution."""
        return ~self.abstained & ~self.flagged


def answers(classifier: Classifier, sources: Iterable[ImageSource]) -> Answers:
    """The classifier's answers to `sources`.

    Raises:
        DatasetError: an image could not be classified (the first failure is named).
    """
    results = classifier.predict_many(sources)
    failed = [r for r in results if not isinstance(r, Prediction)]
    if failed:
        raise DatasetError(f"{len(failed)} images could not be classified, first: {failed[0].message}")
    predictions = [r for r in results if isinstance(r, Prediction)]
    return Answers(
        np.array([p.label for p in predictions], dtype=np.str_),
        np.array([p.confidence for p in predictions], dtype=np.float64),
        np.array([bool(p.abstain) for p in predictions], dtype=bool),
        np.array([OUT_OF_DISTRIBUTION in p.reasons for p in predictions], dtype=bool),
    )


def _share(values: NDArray[np.bool_]) -> float:
    return round(float(values.mean()), 4) if len(values) else 0.0


def summary(found: Answers, truth: Sequence[str], reference: Answers | None = None) -> dict[str, Any]:
    """Accuracy, shares given wrong, flagged and abstained, and (against `reference`) the same label."""
    correct = found.labels == np.array(truth, dtype=np.str_)
    row: dict[str, Any] = {
        "scans": len(found.labels),
        "accuracy": _share(correct),
        "answered_wrong": _share(found.given & ~correct),
        "flagged": _share(found.flagged),
        "abstained": _share(found.abstained),
    }
    if reference is not None:
        row["same_label_as_original"] = _share(found.labels == reference.labels)
    return row


def changed(paths: Sequence[Path], transform: Transform) -> Iterator[Image.Image]:
    """Each scan decoded at full size, upright, then changed by `transform` (read lazily)."""
    for path in paths:
        yield transform(upright(decode_scan(path)))


def timed_answers(classifier: Classifier, paths: Sequence[Path]) -> tuple[Answers, float]:
    """The answers to scan files read as tumor-infer reads them, and the seconds per scan."""
    started = time.perf_counter()
    found = answers(classifier, paths)
    return found, (time.perf_counter() - started) / max(1, len(paths))


def variant_summaries(classifier: Classifier, scans: Sequence[LabelledScan]) -> dict[str, dict[str, Any]]:
    """`summary` of every variant of the scans, each against the unchanged decoded scan."""
    paths, truth = [scan.path for scan in scans], [scan.label for scan in scans]
    reference = answers(classifier, changed(paths, VARIANTS["original"]))
    rows = {"original": summary(reference, truth)}
    for name, transform in VARIANTS.items():
        if name != "original":
            rows[name] = summary(answers(classifier, changed(paths, transform)), truth, reference)
    return rows


def validation_scans(
    classifier: Classifier, data: Path, cache: Path | None, method: str | None = None
) -> list[LabelledScan]:
    """The scans of training folder `data` in the validation split the model records (`recorded_split`).

    `method` ("random" or "grouped") overrides how the split was carved, for a model that does not record it.
    """
    scans = load_dataset(data, classifier.spec.input.size, cache, labels=classifier.labels, progress=False)
    fraction, seed, recorded = recorded_split(classifier.spec)
    _, rows = validation_split(scans, fraction, seed, method or recorded, progress=False)
    return [LabelledScan(scans.paths[row], scans.labels[scans.label_ids[row]]) for row in rows]


def foreign_summary(classifier: Classifier, images: Mapping[str, Image.Image]) -> dict[str, Any]:
    """How many foreign images are flagged out of distribution; each one that is not, with its answer."""
    found = answers(classifier, list(images.values()))
    missed = [
        {
            "image": name,
            "label": str(found.labels[index]),
            "confidence": round(float(found.confidence[index]), 4),
            "abstained": bool(found.abstained[index]),
        }
        for index, name in enumerate(images)
        if not found.flagged[index]
    ]
    return {"images": len(images), "flagged": int(found.flagged.sum()), "not_flagged": missed}


def measure(
    classifier: Classifier,
    test: Sequence[LabelledScan],
    validation: Sequence[LabelledScan],
    foreign: Mapping[str, Image.Image],
) -> dict[str, Any]:
    """Every measurement with `classifier.mirror` as set; the test files' speed with and without mirroring."""
    mirror = classifier.mirror
    paths, truth = [scan.path for scan in test], [scan.label for scan in test]
    seconds, tested = {}, {}
    for mode in (False, True):
        classifier.mirror = mode
        found, seconds["mirror" if mode else "plain"] = timed_answers(classifier, paths)
        tested[mode] = summary(found, truth)
    classifier.mirror = mirror
    return {
        "model": f"{classifier.identity.file}@{classifier.identity.sha256}",
        "mirror": mirror,
        "test_files": tested[mirror],
        "variants": variant_summaries(classifier, test),
        "validation": summary(
            answers(classifier, [scan.path for scan in validation]), [scan.label for scan in validation]
        ),
        "foreign": foreign_summary(classifier, foreign),
        "seconds_per_scan": {mode: round(value, 5) for mode, value in seconds.items()},
    }


COLUMNS = {
    "scans": "scans",
    "accuracy": "accuracy",
    "same_label_as_original": "same label",
    "answered_wrong": "wrong",
    "flagged": "flagged",
    "abstained": "abstained",
}
"""Table columns: result key -> header."""


def _cell(value: object) -> str:
    return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def table(results: Mapping[str, Any]) -> str:
    """The results as aligned text: one row per set of scans, then the foreign images and the speed."""
    rows = {"test files": results["test_files"], **results["variants"], "validation": results["validation"]}
    lines = [f"{'set':14}" + "".join(f"{header:>11}" for header in COLUMNS.values())]
    for name, row in rows.items():
        lines.append(f"{name:14}" + "".join(f"{_cell(row.get(key)):>11}" for key in COLUMNS))
    foreign = results["foreign"]
    lines.append(f"foreign images flagged out of distribution: {foreign['flagged']}/{foreign['images']}")
    lines += [
        f"  not flagged: {row['image']}: {row['label']} {row['confidence']:.3f}"
        + (" (abstained)" if row["abstained"] else "")
        for row in foreign["not_flagged"]
    ]
    speed = results["seconds_per_scan"]
    lines.append(f"seconds per scan: {speed['plain']:.4f} plain, {speed['mirror']:.4f} with --mirror")
    return "\n".join(lines) + "\n"
