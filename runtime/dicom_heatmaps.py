"""`--dicom-heatmaps`: the heatmap overlays of a study as DICOM Secondary Capture images in that study.

For a study with an answer, each slice that carries it (answered, same label) gets one RGB Secondary
Capture (highdicom): the slice beside the occlusion heatmap of that label (`tumorscan.explain`), at the
model's input size, in one new series of the study (number 9902), referencing its slice (Source Image
Sequence). The patient and study modules are
copied from the slice; the patient orientation is the slice's (from ImageOrientationPatient: the
dominant axis of its rows and columns). A study that abstains gets none. Each takes an occlusion run
(197 forward passes at 224 px).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .classifier import Classifier, Prediction
from .dicom_sr import StudyResults, source_dataset
from .errors import TumorscanError
from .explain import overlay_image
from .files import atomic_writer
from .images import load_pixels

HEATMAP_SERIES_NUMBER = 9902
AXES = (("L", "R"), ("P", "A"), ("H", "F"))
"""DICOM patient directions: +x left, +y posterior, +z head (and the opposite letters)."""


def _direction(vector: tuple[float, ...]) -> str:
    axis = max(range(3), key=lambda i: abs(vector[i]))
    return AXES[axis][0 if vector[axis] > 0 else 1]


def _orientation(dataset: Any) -> tuple[str, str]:
    values = [float(v) for v in dataset.get("ImageOrientationPatient") or ()]
    if len(values) != 6:
        raise TumorscanError(
            f"{dataset.SOPInstanceUID}: no ImageOrientationPatient; no heatmap image for it."
        )
    return _direction(tuple(values[:3])), _direction(tuple(values[3:]))


def _reference(source: Any) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    return item


def write_heatmaps(results: StudyResults, classifier: Classifier, folder: Path) -> list[Path]:
    """One Secondary Capture per slice carrying the study's answer, as FOLDER/<study>/<SOP UID>.dcm.

    Raises:
        TumorscanError: a slice cannot be read again, has no orientation, or highdicom refused the image.
    """
    import highdicom as hd

    label = results.study.get("label")
    series_uid, written = hd.UID(), list[Path]()
    for outputs in results.slices.values() if label else []:
        for output in outputs:
            prediction = output.result
            if not isinstance(prediction, Prediction) or prediction.abstain or prediction.label != label:
                continue
            source = source_dataset(output)
            pixels = load_pixels(output.header.path if output.header else "", classifier.spec.input.size)
            image = overlay_image(pixels, classifier.explain(pixels, label))
            try:
                capture = hd.sc.SCImage.from_ref_dataset(
                    source, image, "RGB", 8, "PATIENT", series_uid, HEATMAP_SERIES_NUMBER, hd.UID(),
                    len(written) + 1, "tumorscan", patient_orientation=_orientation(source),
                    series_description=f"tumorscan heatmaps: {label}",
                )  # fmt: skip
            except (ValueError, TypeError, AttributeError) as exc:
                raise TumorscanError(
                    f"{output.header and output.header.path}: no heatmap image ({exc})."
                ) from exc
            capture.SourceImageSequence = [_reference(source)]
            path = folder / results.study_uid / f"{capture.SOPInstanceUID}.dcm"
            with atomic_writer(path) as stream:
                capture.save_as(stream, enforce_file_format=True)
            written.append(path)
    return written
