"""The foreign image set: real non-MRI images from installed packages, the same every time, offline."""

from __future__ import annotations

import hashlib
import socket

import numpy as np
import pytest
from PIL import Image

from tumorscan.train.foreign_images import DICOM_FILES, MATPLOTLIB_SAMPLES, SKIMAGE_SAMPLES, foreign_images


def _fingerprint(images: dict[str, Image.Image]) -> dict[str, tuple[str, tuple[int, int], str]]:
    return {
        name: (image.mode, image.size, hashlib.sha256(image.tobytes()).hexdigest())
        for name, image in images.items()
    }


def test_the_set_loads_offline_and_is_the_same_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise OSError("no network in this test")

    with monkeypatch.context() as offline:
        offline.setattr(socket.socket, "connect", refuse)
        first = foreign_images()
    assert _fingerprint(first) == _fingerprint(foreign_images())
    assert list(first) == sorted(first)
    sources = len(DICOM_FILES) + len(SKIMAGE_SAMPLES) + len(MATPLOTLIB_SAMPLES)
    assert len(first) >= 30 and sources >= 20
    assert {name.split("_")[0] for name in first} == {"dicom", "skimage", "matplotlib"}
    colour = [name for name, image in first.items() if image.mode == "RGB"]
    assert len(colour) >= 8 and {image.mode for image in first.values()} == {"L", "RGB"}
    for name in colour:  # each colour image has a grey twin of the same size and content
        grey = first[f"{name}_grey"]
        assert grey.mode == "L" and grey.size == first[name].size
        assert np.array_equal(np.asarray(grey), np.asarray(first[name].convert("L")))
        spread = np.ptp(np.asarray(first[name], dtype=np.int16), axis=2)
        assert spread.max() > 0  # really in colour
    assert len(first) == len(DICOM_FILES) + len(SKIMAGE_SAMPLES) + len(MATPLOTLIB_SAMPLES) + len(colour)
    assert all(min(image.size) >= 100 for image in first.values())  # all big enough to be resized down
