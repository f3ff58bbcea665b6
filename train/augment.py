"""Online augmentation, applied in the tf.data pipeline (never inside the exported model graph).

- "seed": the seed project's generator: random rotation up to 40 degrees and horizontal flips,
  filling with the nearest pixels.
- "strong": "seed" plus zoom in and out by up to 20%, translation by up to 10%, brightness and
  contrast jitter.
- "shift": aimed at the shift the audit shows between the training and test sources (the test
  gliomas fill more of the frame and are brighter): horizontal flips, rotation up to 15 degrees,
  zoom in by up to 35% (out by up to 10%), translation by up to 8%, all filling with black like an
  MRI background, and a random gamma that brightens or darkens tissue while keeping black black.
- "flip": horizontal flips only. Radiological and neurological displays are mirror images of each
  other, so a scan and its mirror are both valid and must get the same answer.
- "none": no augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

AUGMENTATIONS = ("seed", "strong", "shift", "flip", "none")

ROTATION_DEGREES = 40
ZOOM = 0.2
TRANSLATION = 0.1
BRIGHTNESS = 0.2
CONTRAST = 0.2

SHIFT_ROTATION_DEGREES = 15
SHIFT_ZOOM_IN = 0.35
SHIFT_ZOOM_OUT = 0.1
SHIFT_TRANSLATION = 0.08
SHIFT_GAMMA = 1.8  # gamma drawn log-uniformly from [1/1.8, 1.8]


def augmentation_layers(name: str, seed: int = 0) -> list[Any]:
    """The steps of augmentation `name` (pixels in 0-255), in order: Keras random layers and `RandomGamma`.

    Raises:
        ValueError: unknown name.
    """
    from keras import layers

    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; choose one of: {', '.join(AUGMENTATIONS)}.")
    if name == "none":
        return []
    if name == "flip":
        return [layers.RandomFlip("horizontal", seed=seed + 1)]
    if name == "shift":
        return [
            layers.RandomFlip("horizontal", seed=seed + 1),
            layers.RandomRotation(SHIFT_ROTATION_DEGREES / 360, fill_mode="constant", seed=seed),
            layers.RandomZoom((-SHIFT_ZOOM_IN, SHIFT_ZOOM_OUT), fill_mode="constant", seed=seed + 2),
            layers.RandomTranslation(
                SHIFT_TRANSLATION, SHIFT_TRANSLATION, fill_mode="constant", seed=seed + 3
            ),
            RandomGamma(SHIFT_GAMMA, seed=seed + 4),
        ]
    chosen = [
        layers.RandomRotation(ROTATION_DEGREES / 360, fill_mode="nearest", seed=seed),
        layers.RandomFlip("horizontal", seed=seed + 1),
    ]
    if name == "strong":
        chosen += [
            layers.RandomZoom((-ZOOM, ZOOM), fill_mode="nearest", seed=seed + 2),
            layers.RandomTranslation(TRANSLATION, TRANSLATION, fill_mode="nearest", seed=seed + 3),
            layers.RandomBrightness(BRIGHTNESS, value_range=(0, 255), seed=seed + 4),
            layers.RandomContrast(CONTRAST, value_range=(0, 255), seed=seed + 5),
        ]
    return chosen


def random_gamma(images: Any, limit: float, seed: int) -> Any:
    """Raise each image's pixels (0-255, scaled to 0-1) to a gamma drawn log-uniformly in [1/limit, limit]."""
    import tensorflow as tf

    log_gamma = tf.random.uniform(
        (tf.shape(images)[0], 1, 1, 1), -math.log(limit), math.log(limit), seed=seed
    )
    return 255.0 * tf.pow(tf.clip_by_value(images / 255.0, 0.0, 1.0), tf.exp(log_gamma))


class RandomGamma:
    """An augmentation step like Keras's random layers: `random_gamma` while training, else the identity."""

    def __init__(self, limit: float, seed: int) -> None:
        self.limit = limit
        self.seed = seed

    def __call__(self, images: Any, training: bool = True) -> Any:
        return random_gamma(images, self.limit, self.seed) if training else images


def make_augmenter(name: str, seed: int = 0) -> Callable[[Any], Any] | None:
    """A function augmenting a float32 batch of 0-255 pixels, or None for "none"."""
    chosen = augmentation_layers(name, seed)
    if not chosen:
        return None

    def augment(images: Any) -> Any:
        for layer in chosen:
            images = layer(images, training=True)
        return images

    return augment
