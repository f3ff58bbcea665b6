"""Train a classifier the way a user elsewhere would, to prove that `tumor-export` takes it.

Plain Keras and TensorFlow only (no tumorscan training code): a small functional CNN on
`image_dataset_from_directory`, inputs scaled to [-1, 1] outside the model, a Dense(4) of logits as its last
layer and its outputs given as a one-element list. It saves `model.keras` and reports the Keras original's
accuracy on the test split, fed the way the exported files are: pixels through `tumorscan.images.load_pixels`
at the model size, then scaled to [-1, 1], so that a later comparison measures the export, not a different
JPEG decoder or resize.

    python scripts/train_foreign_model.py --data .../Training --test .../Testing --out runs/foreign
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import NDArray

from tumorscan.images import load_pixels

SUFFIXES = {".jpg", ".jpeg", ".png"}


def build_model(size: int, classes: int) -> keras.Model:
    """A small functional CNN whose call returns a one-element list of logits."""
    inputs = keras.Input((size, size, 3))
    x = inputs
    for filters in (16, 32, 64, 96):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    logits = keras.layers.Dense(classes)(x)
    return keras.Model(inputs, [logits])


def symmetric(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Scale RGB 0-255 to [-1, 1], outside the model."""
    return images / 127.5 - 1.0, labels


def test_accuracy(model: keras.Model, test: Path, labels: list[str], size: int) -> dict[str, object]:
    """Accuracy of the Keras model on a class-folder split, pixels from `load_pixels` scaled to [-1, 1]."""
    paths, truth = [], []
    for index, label in enumerate(labels):
        for path in sorted((test / label).iterdir()):
            if path.suffix.lower() in SUFFIXES:
                paths.append(path)
                truth.append(index)
    pixels = np.stack([load_pixels(path, (size, size)) for path in paths]).astype(np.float32)
    outputs = model.predict(pixels / 127.5 - 1.0, batch_size=64, verbose=0)
    logits: NDArray[np.float32] = np.asarray(outputs[0] if isinstance(outputs, list) else outputs)
    predicted = logits.argmax(axis=1)
    expected = np.asarray(truth)
    per_class = {label: float((predicted[expected == i] == i).mean()) for i, label in enumerate(labels)}
    return {"scans": len(paths), "accuracy": float((predicted == expected).mean()), "recall": per_class}


def main() -> None:
    """Train, save `model.keras` and `keras_test.json` under --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Training class folders.")
    parser.add_argument("--test", type=Path, required=True, help="Test class folders.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    train = keras.utils.image_dataset_from_directory(
        args.data,
        image_size=(args.size, args.size),
        batch_size=None,
        seed=args.seed,
        label_mode="categorical",
    )
    labels: list[str] = list(train.class_names)
    train = train.map(symmetric).cache().shuffle(4096, seed=args.seed).batch(32).prefetch(tf.data.AUTOTUNE)
    model = build_model(args.size, len(labels))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=[keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=args.label_smoothing)],
        metrics=[["accuracy"]],
    )
    start = time.monotonic()
    history = model.fit(train, epochs=args.epochs, verbose=2)
    seconds = time.monotonic() - start
    model.save(args.out / "model.keras")
    report = {
        "labels": labels,
        "size": args.size,
        "epochs": args.epochs,
        "train_seconds": round(seconds, 1),
        "train_accuracy": float(history.history["accuracy"][-1]),
        "test": test_accuracy(model, args.test, labels, args.size),
        "feed": "tumorscan.images.load_pixels at the model size, then x / 127.5 - 1",
    }
    (args.out / "keras_test.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
