"""Seeded fuzzing of every kind of input: only typed errors come out, one result per input, and fast."""

from __future__ import annotations

import contextlib
import io
import os
import random
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tumorscan import Classifier, errors
from tumorscan.classifier import Prediction, PredictionError
from tumorscan.folders import Skipped, walk_scans

SEED = 12
ROUNDS = 40
"""Mutants per kind of input; the whole test stays within a few seconds."""

DICOM_ATTRIBUTES = (
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "PhotometricInterpretation",
    "RescaleSlope",
    "RescaleIntercept",
    "WindowCenter",
    "WindowWidth",
)
HOSTILE_VALUES = ("NaN", "NaN!", "abc", "x#1!", "inf", "-inf", "1e308", "-1", "0", "", "1\\2\\x", "9" * 40)


def _typed_codes() -> set[str]:
    classes: list[type[errors.TumorscanError]] = [errors.TumorscanError]
    found = set()
    while classes:
        cls = classes.pop()
        found.add(cls.code)
        classes.extend(cls.__subclasses__())
    return found - {errors.UnexpectedError.code}


def _mutate(data: bytes, rng: random.Random) -> bytes:
    mutable = bytearray(data)
    action = rng.choice(("flip", "truncate", "insert", "zero"))
    if action == "truncate":
        return bytes(mutable[: rng.randrange(len(mutable))])
    if action == "insert":
        position = rng.randrange(len(mutable))
        return bytes(mutable[:position] + rng.randbytes(rng.randrange(1, 64)) + mutable[position:])
    for _ in range(rng.randrange(1, 16)):
        position = rng.randrange(min(len(mutable), 2048))  # headers live at the start
        mutable[position] = 0 if action == "zero" else rng.randrange(256)
    return bytes(mutable)


def _image_bytes(rng: random.Random, sample: Path) -> list[bytes]:
    png = io.BytesIO()
    Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64)).save(png, format="PNG")
    seeds = [sample.read_bytes(), png.getvalue()]
    return [_mutate(rng.choice(seeds), rng) for _ in range(ROUNDS)]


def _dicom_bytes(rng: random.Random) -> list[bytes]:
    from pydicom import dcmread, examples

    base = examples.get_path("mr")
    assert base is not None
    mutants = []
    for _ in range(ROUNDS):
        dataset = dcmread(base)
        for attribute in rng.sample(DICOM_ATTRIBUTES, rng.randrange(1, 4)):
            dataset.add_new(attribute, "LO", rng.choice(HOSTILE_VALUES))
        buffer = io.BytesIO()
        dataset.save_as(buffer)
        mutants.append(buffer.getvalue())
    mutants += [_mutate(Path(base).read_bytes(), rng) for _ in range(ROUNDS)]
    return mutants


def _file_names(rng: random.Random, folder: Path, sample: Path) -> list[str]:
    pieces = ["x" * 300, "é", "\n", " ", "(1)", "..", "\udcff", "a\x00b", "-", "*", "?", "[", "/", "~"]
    folder.mkdir()
    names = []
    for index in range(ROUNDS):
        stem = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 4)))
        name = str(folder / f"{index}{stem}{rng.choice(['.jpg', '.dcm', '.png', '', '.JPG'])}")
        with contextlib.suppress(OSError, ValueError):  # names refused here still go to the classifier
            Path(name).write_bytes(sample.read_bytes())
        names.append(name)
    return names


def _folder_entries(rng: random.Random, folder: Path, sample: Path) -> list[str]:
    targets = ["", ".", "..", "missing.jpg", "0.jpg", "sub", "/dev/null", str(sample)]
    (folder / "sub").mkdir(parents=True)
    names = []
    for index in range(ROUNDS):
        name = folder / f"{index}.{rng.choice(['jpg', 'dcm', 'png'])}"
        kind = rng.choice(("link", "fifo", "folder", "file"))
        if kind == "link":
            name.symlink_to(rng.choice(targets) or name.name)
        elif kind == "fifo":
            os.mkfifo(name)
        elif kind == "folder":
            name.mkdir()
        else:
            name.write_bytes(rng.randbytes(rng.randrange(0, 200)))
        names.append(str(name))
    return names


def test_fuzzed_inputs_give_only_typed_errors(tflite_fp32: Path, sample_test: Path, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    sample = next(iter(sorted(sample_test.rglob("*.jpg"))))
    (tmp_path / "walked" / "deep").mkdir(parents=True)
    _folder_entries(rng, tmp_path / "walked" / "deep", sample)
    (tmp_path / "walked" / "deep" / "up").symlink_to("..")
    found = walk_scans(tmp_path / "walked")
    skipped = [item for item in found if isinstance(item, Skipped)]
    walked = [item for item in found if not isinstance(item, Skipped)]
    assert skipped and all(item.error.code == "link_loop" for item in skipped)
    sources: list[object] = [
        *_image_bytes(rng, sample),
        *_dicom_bytes(rng),
        *_file_names(rng, tmp_path / "names", sample),
        *_folder_entries(rng, tmp_path / "entries", sample),
        *walked,
        np.full((4, 4), np.inf),
        np.zeros((0, 5, 3)),
        np.array([["a"]]),
        42,
        None,
    ]
    classifier = Classifier.load(tflite_fp32)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        results = classifier.predict_many(sources)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    assert len(results) == len(sources)
    codes = _typed_codes()
    untyped = [r for r in results if isinstance(r, PredictionError) and r.code not in codes]
    assert untyped == [], untyped[:3]
    assert all(isinstance(r, (Prediction, PredictionError)) for r in results)
    assert sum(isinstance(r, PredictionError) for r in results) > len(sources) // 2
    assert seconds < 20, f"fuzzing took {seconds:.1f} s"


@pytest.mark.parametrize("name", ["unreadable_file", "link_loop", "empty_image", "bad_dicom_attribute"])
def test_new_codes_are_typed(name: str) -> None:
    assert name in _typed_codes()
