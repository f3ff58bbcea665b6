"""Sanity checks for the heatmaps (Adebayo et al. 2018, "Sanity Checks for Saliency Maps") on a tiny model.

The model sees dark noise with one bright square, and the square's half of the image is the class, so
the evidence is known. Exported to TFLite, its map (the runtime's, as `tumor-infer --explain` makes it)
must be hottest on the square. A map that does not depend on what the model learned fails the checks
below: the same architecture with its weights re-initialised from the top layer down (cascading model
randomisation) or trained on shuffled labels (data randomisation) must give a map whose Spearman rank
correlation with the trained one is below BOUND, while the trained model's maps of the same square on
fresh noise stay above it (so the bound separates "another model" from "the same model, other pixels").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.stats import spearmanr

from tumorscan import Classifier
from tumorscan.metadata import embed_tflite_metadata
from tumorscan.spec import InputSpec, ModelSpec

SIZE, SIDE = 32, 8
LABELS = ("left", "right")
SQUARES = {"left": (18, 3), "right": (4, 20)}
"""Top and left of the square in the scans explained, by class."""
BOUND = 0.5
"""Spearman rank correlation below which two maps count as different: they share under a quarter of their
rank variance (rho squared < 0.25). Measured: randomised and shuffled-label maps -0.03 to 0.29 against the
trained one; the trained model's maps on fresh noise 0.84 to 0.87. Signed maps are compared: with absolute
values, re-initialising only the top layer still gives about 0.5 (the trained lower layers still react to
the square, as the paper saw for some methods)."""


def _scan(top: int, left: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    """Noise in 0-59 with a bright SIDE x SIDE square."""
    pixels = rng.integers(0, 60, (SIZE, SIZE, 3)).astype(np.uint8)
    pixels[top : top + SIDE, left : left + SIDE] = 230
    return pixels


def _training_set(count: int, rng: np.random.Generator) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Scans with the square anywhere; the label is the half holding it (0 left, 1 right)."""
    labels = rng.integers(0, 2, count)
    tops = rng.integers(0, SIZE - SIDE + 1, count)
    lefts = rng.integers(0, SIZE // 2 - SIDE + 1, count) + labels * (SIZE // 2)
    return np.stack([_scan(t, x, rng) for t, x in zip(tops, lefts, strict=True)]), labels


def _fitted(labels_shuffled: bool) -> Any:
    import keras

    keras.utils.set_random_seed(0)
    pixels, labels = _training_set(512, np.random.default_rng(0))
    if labels_shuffled:
        labels = np.random.default_rng(1).permutation(labels)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(len(LABELS), activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(pixels.astype(np.float32), labels, epochs=5, batch_size=32, verbose=0)
    return model


def _exported(model: Any, path: Path) -> Classifier:
    import tensorflow as tf

    spec = ModelSpec(labels=LABELS, input=InputSpec(SIZE, SIZE))
    path.write_bytes(
        embed_tflite_metadata(bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert()), spec)
    )
    return Classifier.load(path)


def _maps(classifier: Classifier, seed: int = 2) -> dict[str, NDArray[np.float32]]:
    """The map of each class on a scan with its square (SQUARES), background noise drawn from `seed`."""
    rng = np.random.default_rng(seed)
    return {label: classifier.explain(_scan(*SQUARES[label], rng), label) for label in LABELS}


def _rho(first: NDArray[np.float32], second: NDArray[np.float32]) -> float:
    return float(spearmanr(first.ravel(), second.ravel()).statistic)


class Trained(NamedTuple):
    model: Any
    """The Keras model."""
    classifier: Classifier
    """Its TFLite export."""
    maps: dict[str, NDArray[np.float32]]
    """By class, its map on a scan with the square where SQUARES says."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The tiny model trained on the square's position, exported, and its maps."""
    model = _fitted(labels_shuffled=False)
    classifier = _exported(model, tmp_path_factory.mktemp("sanity") / "trained.tflite")
    return Trained(model, classifier, _maps(classifier))


def test_the_trained_map_is_hottest_on_the_evidence(trained: Trained) -> None:
    for label, heat in trained.maps.items():
        top, left = SQUARES[label]
        assert trained.classifier.predict(_scan(top, left, np.random.default_rng(2))).label == label
        row, column = np.unravel_index(np.argmax(heat), heat.shape)
        assert top <= row < top + SIDE and left <= column < left + SIDE, (label, row, column)
        positive = np.clip(heat, 0, None)  # the square is 1/16 of the scan and holds about 0.6 of this
        assert positive[top : top + SIDE, left : left + SIDE].sum() > 0.4 * positive.sum()


def test_the_bound_keeps_the_same_model_on_other_noise(trained: Trained) -> None:
    again = _maps(trained.classifier, seed=3)
    for label in LABELS:
        assert _rho(trained.maps[label], again[label]) > BOUND


@pytest.mark.parametrize("depth", [1, 2, 3], ids=["dense", "dense+conv2", "all"])
def test_cascading_randomisation_changes_the_map(trained: Trained, depth: int, tmp_path: Path) -> None:
    import keras

    model = keras.models.clone_model(trained.model)
    model.set_weights(trained.model.get_weights())
    layers = [layer for layer in model.layers if layer.weights][::-1][:depth]
    for index, layer in enumerate(layers):
        kernel, bias = layer.weights
        kernel.assign(keras.initializers.GlorotUniform(seed=10 + index)(kernel.shape))
        bias.assign(np.zeros(bias.shape, dtype=np.float32))
    randomised = _maps(_exported(model, tmp_path / "randomised.tflite"))
    for label in LABELS:
        assert _rho(trained.maps[label], randomised[label]) < BOUND


def test_data_randomisation_changes_the_map(trained: Trained, tmp_path: Path) -> None:
    shuffled = _maps(_exported(_fitted(labels_shuffled=True), tmp_path / "shuffled.tflite"))
    for label in LABELS:
        assert _rho(trained.maps[label], shuffled[label]) < BOUND
