"""Adapting a trained model to a new site: fine-tuning on the site's labelled scans mixed with source scans.

The recipe is recorded in the adapted model and is deterministic for a given seed (up to TensorFlow's own
CPU nondeterminism). Each step: a fresh copy of the original model; the site's scans (each class
repeated up to the largest class when `balance`, the whole set `site_repeat` times) together with
`source_per_class` training scans per class (never validation scans, so that forgetting stays
measurable); the seed's loss with the original run's label smoothing; Adam at `lr` for `epochs`; optionally
only the dense head trained (`freeze`), and the result mixed in weight space with the original
(`mix` < 1: WiSE-FT, Wortsman et al. 2022), which trades site accuracy for less forgetting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.train.augment import AUGMENTATIONS, make_augmenter
from tumorscan.train.batches import keras_outputs

FREEZES = ("none", "convolutions")


@dataclass(frozen=True)
class AdaptRecipe:
    """How a model is adapted to a site (see the module docstring)."""

    epochs: int = 3
    lr: float = 3e-4
    site_repeat: int = 3
    balance: bool = True
    source_per_class: int = 100
    augment: str = "none"
    freeze: str = "none"
    mix: float = 1.0
    batch_size: int = 32
    seed: int = 0

    def validate(self) -> None:
        """Raises ValueError for values outside their range."""
        if self.augment not in AUGMENTATIONS:
            raise ValueError(
                f"unknown augmentation {self.augment!r}; choose one of {', '.join(AUGMENTATIONS)}."
            )
        if self.freeze not in FREEZES:
            raise ValueError(f"unknown freeze {self.freeze!r}; choose one of {', '.join(FREEZES)}.")
        if not 0 < self.mix <= 1:
            raise ValueError(f"mix must be in (0, 1], got {self.mix}.")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Pool:
    """Pixels and class ids to draw training rows from (a site's scans, or the source's training part)."""

    pixels: NDArray[np.uint8]
    label_ids: NDArray[np.int32]


def site_rows(
    label_ids: NDArray[np.int32], rows: NDArray[np.int64], recipe: AdaptRecipe
) -> NDArray[np.int64]:
    """The site rows of one epoch: each class topped up to the largest when balancing, all `site_repeat` x."""
    if not recipe.balance:
        return np.tile(rows, recipe.site_repeat)
    rng = np.random.default_rng(recipe.seed)
    classes = [rows[label_ids[rows] == c] for c in np.unique(label_ids[rows])]
    largest = max(len(members) for members in classes)
    balanced = [
        np.concatenate([np.tile(m, largest // len(m)), rng.choice(m, largest % len(m), replace=False)])
        for m in classes
    ]
    return np.tile(np.concatenate(balanced), recipe.site_repeat)


def source_rows(
    label_ids: NDArray[np.int32], rows: NDArray[np.int64], recipe: AdaptRecipe
) -> NDArray[np.int64]:
    """`source_per_class` rows of each class from `rows` (all of a smaller class), seeded."""
    rng = np.random.default_rng(recipe.seed + 1)
    chosen = [
        rng.choice(members, min(len(members), recipe.source_per_class), replace=False)
        for members in (rows[label_ids[rows] == c] for c in np.unique(label_ids[rows]))
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def _training_set(
    site: Pool,
    held_in: NDArray[np.int64],
    source: Pool | None,
    source_train: NDArray[np.int64] | None,
    recipe: AdaptRecipe,
) -> tuple[NDArray[np.uint8], NDArray[np.int32]]:
    """Pixels and labels of one epoch, site and source rows together."""
    rows = np.sort(
        site_rows(site.label_ids, held_in, recipe)
    )  # in file order: memory-map reads stay sequential
    pixels, labels = [site.pixels[rows]], [site.label_ids[rows]]
    if source is not None and source_train is not None and recipe.source_per_class:
        mixed = source_rows(source.label_ids, source_train, recipe)
        pixels.append(np.asarray(source.pixels[mixed]))
        labels.append(source.label_ids[mixed])
    return np.concatenate(pixels), np.concatenate(labels)


def _freeze(model: Any, freeze: str) -> None:
    """Leave only the dense layers trainable with freeze="convolutions"."""
    if freeze == "convolutions":
        for layer in model.layers:
            layer.trainable = type(layer).__name__ == "Dense"


def _mix(model: Any, original: list[Any], share: float) -> None:
    """Weights of `model` moved back towards `original`: share * adapted + (1 - share) * original."""
    if share < 1:
        model.set_weights(
            [share * a + (1 - share) * o for a, o in zip(model.get_weights(), original, strict=True)]
        )


def fine_tune(
    model: Any,
    site: Pool,
    held_in: NDArray[np.int64],
    source: Pool | None,
    source_train: NDArray[np.int64] | None,
    recipe: AdaptRecipe,
    label_smoothing: float,
) -> Any:
    """Adapt `model` (a fresh copy of the original, changed in place) on the site's `held_in` rows."""
    import keras
    import tensorflow as tf

    from tumorscan.train.losses import training_loss

    keras.utils.set_random_seed(recipe.seed)
    original = model.get_weights()
    pixels, labels = _training_set(site, held_in, source, source_train, recipe)
    dataset = tf.data.Dataset.from_tensor_slices((pixels, labels)).shuffle(len(labels), seed=recipe.seed)
    dataset = dataset.batch(recipe.batch_size)
    augment = make_augmenter(recipe.augment, recipe.seed)
    if augment is not None:
        dataset = dataset.map(lambda x, y: (augment(tf.cast(x, tf.float32)), y))
    else:
        dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), y))
    _freeze(model, recipe.freeze)
    model.compile(optimizer=keras.optimizers.Adam(recipe.lr), loss=training_loss(label_smoothing))
    model.fit(dataset.prefetch(2), epochs=recipe.epochs, verbose=0)
    _mix(model, original, recipe.mix)
    return _inference_copy(model)


def _inference_copy(model: Any) -> Any:
    """The adapted weights in an uncompiled copy: a saved file holds no training loss, stock layers only."""
    for layer in model.layers:
        layer.trainable = True
    copy = type(model).from_config(model.get_config())  # clone_model would keep the compile config
    copy.set_weights(model.get_weights())
    return copy


def probabilities(model: Any, pixels: NDArray[np.uint8], rows: NDArray[np.int64]) -> NDArray[np.float32]:
    """The model's probabilities on `pixels[rows]`."""
    return keras_outputs(model, pixels, rows)
