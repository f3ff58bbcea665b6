"""Online augmentation, applied in the tf.data pipeline (never inside the exported model graph).

- "seed": the seed project's generator: random rotation up to 40 degrees and horizontal flips,
  filling with the nearest pixels.
- "strong": "seed" plus the shifts between the training and test sources: zoom in and out by up to
  20%, translation by up to 10%, brightness and contrast jitter.
- "none": no augmentation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

AUGMENTATIONS = ("seed", "strong", "none")

ROTATION_DEGREES = 40
ZOOM = 0.2
TRANSLATION = 0.1
BRIGHTNESS = 0.2
CONTRAST = 0.2


def augmentation_layers(name: str, seed: int = 0) -> list[Any]:
    """The Keras preprocessing layers of augmentation `name` (pixels in 0-255), in order.

    Raises:
        ValueError: unknown name.
    """
    from keras import layers

    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; choose one of: {', '.join(AUGMENTATIONS)}.")
    if name == "none":
        return []
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
