"""DICOM studies built in the tests (MR slices with study, series and instance UIDs) and a tiny model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from tumorscan.metadata import embed_tflite_metadata
from tumorscan.sections import QuantizationSpec

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PAT-0042"
SliceWriter = Callable[..., Path]


def write_slice(
    path: Path,
    study_uid: str,
    series_uid: str,
    number: int | None,
    position: float = 0.0,
    *,
    sop_uid: str | None = None,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    seed: int = 0,
    **attributes: Any,
) -> Path:
    """One 48x48 16-bit MR slice of a series, at `position` mm along the slice normal (z)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID, dataset.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
    dataset.PatientName, dataset.PatientID = PATIENT_NAME, PATIENT_ID
    dataset.PatientBirthDate, dataset.PatientSex = "19700101", "F"
    dataset.StudyDate, dataset.StudyTime, dataset.AccessionNumber = "20260101", "101010", "ACC1"
    dataset.StudyID, dataset.ReferringPhysicianName = "1", ""
    dataset.Modality, dataset.SeriesNumber = "MR", 1
    dataset.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid])
    if number is not None:
        dataset.InstanceNumber = number
    dataset.ImageOrientationPatient = list(orientation)
    normal = np.cross(orientation[:3], orientation[3:])
    dataset.ImagePositionPatient = [float(v) for v in normal * position]
    dataset.PixelSpacing = [1, 1]
    dataset.SliceThickness = 1
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :48]
    pixels = 1000 + 800 * np.exp(-((yy - 24) ** 2 + (xx - 24) ** 2) / 200) + rng.normal(0, 30, (48, 48))
    dataset.Rows, dataset.Columns = 48, 48
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 0
    for name, value in attributes.items():
        setattr(dataset, name, value)
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path


def write_series(
    folder: Path, study_uid: str, count: int, series_uid: str | None = None, **kw: Any
) -> list[Path]:
    """`count` slices of one series, 5 mm apart, written in shuffled order (names don't follow it)."""
    series_uid = series_uid or generate_uid()
    order = np.random.default_rng(count).permutation(count)
    return [
        write_slice(
            folder / f"{series_uid[-6:]}_{i:04d}.dcm",
            study_uid,
            series_uid,
            int(n) + 1,
            5.0 * n,
            seed=i,
            **kw,
        )
        for i, n in enumerate(order)
    ]


@pytest.fixture
def slice_writer() -> SliceWriter:
    return write_slice


@pytest.fixture
def series_writer() -> Callable[..., list[Path]]:
    return write_series


@pytest.fixture(scope="session")
def tiny_tflite(tiny_keras_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny cnn2 as float32 TFLite with its spec embedded (it cannot abstain)."""
    import tensorflow as tf

    from tumorscan.train.keras_file import load_keras, read_keras_spec

    spec = read_keras_spec(tiny_keras_model)
    assert spec is not None
    converter = tf.lite.TFLiteConverter.from_keras_model(load_keras(tiny_keras_model))
    path = tmp_path_factory.mktemp("tflite") / "tiny_fp32.tflite"
    spec = spec.with_updates(quantization=QuantizationSpec("fp32"))
    path.write_bytes(embed_tflite_metadata(bytes(converter.convert()), spec))
    return path
