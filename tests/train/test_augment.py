"""Augmentations keep shapes and the 0-255 range and change the pixels; "none" is no function."""

from __future__ import annotations

import numpy as np
import pytest

from tumorscan.train.augment import AUGMENTATIONS, augmentation_layers, make_augmenter


def test_none_means_no_augmenter() -> None:
    assert make_augmenter("none") is None


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="seed, strong, none"):
        augmentation_layers("wild")


def test_strong_extends_seed() -> None:
    seed = [type(layer).__name__ for layer in augmentation_layers("seed")]
    strong = [type(layer).__name__ for layer in augmentation_layers("strong")]
    assert seed == ["RandomRotation", "RandomFlip"]
    assert strong[:2] == seed
    assert {"RandomZoom", "RandomTranslation", "RandomBrightness", "RandomContrast"} <= set(strong)


@pytest.mark.parametrize("name", [name for name in AUGMENTATIONS if name != "none"])
def test_augmenter_keeps_shape_and_range_and_changes_pixels(name: str) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (4, 32, 32, 3)).astype(np.float32))
    augment = make_augmenter(name, seed=1)
    assert augment is not None
    out = augment(images).numpy()
    assert out.shape == (4, 32, 32, 3)
    assert out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, images.numpy())
