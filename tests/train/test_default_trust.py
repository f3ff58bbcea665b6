"""The packaged default model, through the runtime, flags every non-MRI image and none of the sample scans."""

from __future__ import annotations

from pathlib import Path

from tumorscan import Classifier
from tumorscan.classifier import Prediction
from tumorscan.models import default_model_path
from tumorscan.train.nonscans import non_mri_images
from tumorscan.trust import OUT_OF_DISTRIBUTION

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "mri"


def _flagged(results: list[object]) -> list[bool]:
    assert all(isinstance(result, Prediction) for result in results)
    return [OUT_OF_DISTRIBUTION in result.reasons for result in results if isinstance(result, Prediction)]


def test_every_non_mri_image_is_flagged_out_of_distribution() -> None:
    images = non_mri_images()
    flagged = _flagged(list(Classifier.load(default_model_path()).predict_many(list(images.values()))))
    missed = [name for name, hit in zip(images, flagged, strict=True) if not hit]
    assert len(images) >= 30 and not missed


def test_the_sample_scans_are_not_flagged() -> None:
    scans = sorted(SAMPLES.rglob("*.jpg"))
    flagged = _flagged(list(Classifier.load(default_model_path()).predict_many(scans)))
    assert len(scans) >= 30 and not any(flagged)
