"""Mirror averaging: a scan and its left-right mirror get exactly the same answer, and the records say so."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from numpy.typing import NDArray
from PIL import Image

from tumorscan import Classifier
from tumorscan.classifier import Prediction
from tumorscan.cli import infer_command
from tumorscan.images import load_pixels
from tumorscan.metadata import embed_tflite_metadata, read_model_spec
from tumorscan.records import read_records
from tumorscan.trust import OUT_OF_DISTRIBUTION

TINY = (32, 32)
TRUST = {
    "temperature": 1.7,
    "threshold": 0.45,
    "input_checks": {"colour": [0.0, 0.02], "contrast": [0.03, 0.5], "brightness": [0.01, 0.6]},
}


@pytest.fixture(scope="module")
def scans(sample_test: Path) -> list[NDArray[np.uint8]]:
    """The sample test scans at the tiny model's input size (so that reading them back changes nothing)."""
    return [load_pixels(path, TINY) for path in sorted(sample_test.rglob("*.jpg"))]


@pytest.fixture(scope="module")
def trusted(tflite_fp32: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a temperature, a threshold and input checks."""
    path = tmp_path_factory.mktemp("mirror") / "trusted.tflite"
    spec = read_model_spec(tflite_fp32).with_updates(trust=TRUST)
    path.write_bytes(embed_tflite_metadata(tflite_fp32.read_bytes(), spec))
    return path


def _answer(prediction: object) -> tuple[object, ...]:
    assert isinstance(prediction, Prediction)
    return prediction.label, dict(prediction.probabilities), prediction.abstain, prediction.reasons


def test_a_scan_and_its_mirror_get_the_same_answer(trusted: Path, scans: list[NDArray[np.uint8]]) -> None:
    classifier = Classifier.load(trusted)
    mirrors = [scan[:, ::-1] for scan in scans]
    plain = classifier.probabilities(np.stack(scans))
    plain_mirrors = classifier.probabilities(np.stack(mirrors))
    assert np.abs(plain - plain_mirrors).max() > 0.01  # the tiny model is not symmetric
    classifier.mirror = True
    originals, flipped = classifier.predict_many(scans), classifier.predict_many(mirrors)
    assert [_answer(p) for p in originals] == [_answer(p) for p in flipped]
    assert all(isinstance(p, Prediction) and p.mirror for p in originals + flipped)
    averaged = np.array([list(p.probabilities.values()) for p in originals])  # type: ignore[union-attr]
    assert np.allclose(averaged, (plain + plain_mirrors) / 2, atol=1e-6)  # calibrated, then averaged
    assert {p.abstain for p in originals} == {True, False}  # the threshold takes effect on the mean


def test_the_larger_distance_ratio_flags_both(
    tflite_fp32: Path, scans: list[NDArray[np.uint8]], monkeypatch: pytest.MonkeyPatch
) -> None:
    classifier = Classifier.load(tflite_fp32)
    classifier.abstain_threshold = 0.0  # abstain only when out of distribution
    backend = classifier._backend
    run = backend.run_with_distance

    def left_heavy_is_far(pixels: NDArray[np.generic]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """The real scores; a distance ratio of 2 for a left half brighter than the right, else 0.5."""
        left, right = (
            pixels[:, :, : TINY[1] // 2].mean(axis=(1, 2, 3)),
            pixels[:, :, TINY[1] // 2 :].mean(axis=(1, 2, 3)),
        )
        return run(pixels)[0], np.where(left > right, 2.0, 0.5).astype(np.float32)

    monkeypatch.setattr(backend, "run_with_distance", left_heavy_is_far)
    scan = scans[0].copy()
    scan[:, : TINY[1] // 2] = 255
    plain = classifier.predict_many([scan, scan[:, ::-1]])
    assert [p.reasons for p in plain] == [(OUT_OF_DISTRIBUTION,), ()]  # type: ignore[union-attr]
    classifier.mirror = True
    mirrored = classifier.predict_many([scan, scan[:, ::-1]])
    assert [p.reasons for p in mirrored] == [(OUT_OF_DISTRIBUTION,)] * 2  # type: ignore[union-attr]


def _write_pairs(scans: list[NDArray[np.uint8]], folder: Path) -> list[Path]:
    """Each scan and its mirror as PNG files: scan_N.png, scan_N_mirror.png."""
    paths = []
    for index, scan in enumerate(scans):
        for suffix, pixels in (("", scan), ("_mirror", scan[:, ::-1])):
            path = folder / f"scan_{index}{suffix}.png"
            Image.fromarray(np.ascontiguousarray(pixels)).save(path)
            paths.append(path)
    return paths


def _infer(*args: object) -> str:
    result = CliRunner().invoke(infer_command, [str(arg) for arg in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_tumor_infer_mirror_answers_pairs_alike_and_records_it(
    trusted: Path, scans: list[NDArray[np.uint8]], tmp_path: Path
) -> None:
    _write_pairs(scans, tmp_path)
    plain = read_records(_infer("--model", trusted, "--jsonl", tmp_path), "plain")
    assert not any(r.result.mirror for r in plain.values())  # type: ignore[union-attr]
    stdout = _infer("--model", trusted, "--jsonl", "--mirror", tmp_path)
    assert all(json.loads(line)["mirror"] is True for line in stdout.splitlines())
    records = read_records(stdout, "mirror")
    pairs = [(str(tmp_path / f"scan_{i}.png"), str(tmp_path / f"scan_{i}_mirror.png")) for i in range(8)]
    assert all(_answer(records[a].result) == _answer(records[b].result) for a, b in pairs)
    assert any(_answer(plain[a].result) != _answer(plain[b].result) for a, b in pairs)
    assert all(r.result.mirror for r in records.values())  # type: ignore[union-attr]
    rows = list(csv.DictReader(io.StringIO(_infer("--model", trusted, "--csv", "--mirror", tmp_path))))
    assert {row["mirror"] for row in rows} == {"True"}
    document = json.loads(_infer("--model", trusted, "--json", "--mirror", tmp_path))
    assert all(record["mirror"] is True for record in document["results"])


def test_the_help_says_what_mirror_does_and_that_heatmaps_stay_on_the_original() -> None:
    result = CliRunner().invoke(infer_command, ["--help"])
    text = " ".join(result.output.split())
    assert "--mirror" in text and "left-right mirror" in text and "the original scan only" in text
