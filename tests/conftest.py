"""Fixtures shared by every test: the committed sample scans and tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

DATA = Path(__file__).parent / "data"
SAMPLE_TRAIN = DATA / "mri" / "train"
SAMPLE_TEST = DATA / "mri" / "test"
LABELS = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
TINY_SIZE = (32, 32)


@pytest.fixture(scope="session")
def sample_train() -> Path:
    """Class-folder sample of real training scans (6 per class; names with spaces and parentheses)."""
    return SAMPLE_TRAIN


@pytest.fixture(scope="session")
def sample_test() -> Path:
    """Class-folder sample of real test scans (2 per class)."""
    return SAMPLE_TEST


@pytest.fixture(scope="session")
def tiny_keras_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cnn2 at 32x32, briefly fitted on the sample scans, saved as .keras with its spec inside."""
    import keras
    import numpy as np

    from tumorscan.folders import scan_dataset
    from tumorscan.images import load_pixels
    from tumorscan.spec import InputSpec, ModelSpec
    from tumorscan.train.architectures import build_model
    from tumorscan.train.keras_file import save_keras

    keras.utils.set_random_seed(0)
    scans = scan_dataset(SAMPLE_TRAIN)
    x = np.stack([load_pixels(s.path, TINY_SIZE) for s in scans])
    y = np.array([LABELS.index(s.label) for s in scans])
    model = build_model("cnn2", input_size=TINY_SIZE)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=8, batch_size=8, verbose=0)
    spec = ModelSpec(labels=LABELS, input=InputSpec(*TINY_SIZE, normalization="rescale"), architecture="cnn2")
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    save_keras(model, path, spec)
    return path


@pytest.fixture(scope="session")
def calibrated(tiny_keras_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model after tumor-calibrate on the sample scans (half of them for validation)."""
    from click.testing import CliRunner

    from tumorscan.train.calibrate_cli import calibrate_command

    out = tmp_path_factory.mktemp("calibrated")
    args = [str(tiny_keras_model), "--data", str(SAMPLE_TRAIN), "--out", str(out), "--val-split", "0.5"]
    result = CliRunner().invoke(calibrate_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out / "model.keras"
