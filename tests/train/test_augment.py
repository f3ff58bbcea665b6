"""Augmentations keep shapes and the 0-255 range and change the pixels; "none" is no function."""

from __future__ import annotations

import numpy as np
import pytest

from tumorscan.train.augment import AUGMENTATIONS, augmentation_layers, make_augmenter


def test_none_means_no_augmenter() -> None:
    assert make_augmenter("none") is None


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="seed, strong, shift, flip, none"):
        augmentation_layers("wild")


def test_strong_extends_seed() -> None:
    seed = [type(layer).__name__ for layer in augmentation_layers("seed")]
    strong = [type(layer).__name__ for layer in augmentation_layers("strong")]
    assert seed == ["RandomRotation", "RandomFlip"]
    assert strong[:2] == seed
    assert {"RandomZoom", "RandomTranslation", "RandomBrightness", "RandomContrast"} <= set(strong)


def test_shift_fills_with_black_so_the_background_stays_an_mri_background() -> None:
    layers = augmentation_layers("shift")
    geometric = [layer for layer in layers if type(layer).__name__ not in ("RandomFlip", "RandomGamma")]
    assert geometric and all(layer.fill_mode == "constant" and layer.fill_value == 0 for layer in geometric)
    assert type(layers[-1]).__name__ == "RandomGamma"


def test_random_gamma_keeps_black_and_white_and_changes_mid_tones() -> None:
    import tensorflow as tf

    from tumorscan.train.augment import random_gamma

    row = np.array([0.0, 128.0, 255.0], np.float32)
    images = tf.constant(np.tile(row, (16, 2, 1, 1)).reshape(16, 2, 3, 1))
    out = random_gamma(images, limit=1.8, seed=3).numpy()
    assert np.allclose(out[..., 0, :], 0.0) and np.allclose(out[..., 2, :], 255.0, atol=1e-3)
    mid = out[:, 0, 1, 0]
    assert mid.min() >= 255 * 0.5**1.8 - 1e-3 and mid.max() <= 255 * 0.5 ** (1 / 1.8) + 1e-3
    assert np.ptp(mid) > 10  # each image draws its own gamma


@pytest.mark.parametrize("name", [name for name in AUGMENTATIONS if name != "none"])
def test_augmenter_keeps_shape_and_range_and_changes_pixels(name: str) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (16, 32, 32, 3)).astype(np.float32))
    augment = make_augmenter(name, seed=1)
    assert augment is not None
    out = augment(images).numpy()
    assert out.shape == (16, 32, 32, 3)
    assert out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, images.numpy())


def test_flip_mirrors_some_scans_left_right_and_leaves_the_others() -> None:
    import tensorflow as tf

    images = np.random.default_rng(0).integers(0, 256, (32, 8, 8, 3)).astype(np.float32)
    augment = make_augmenter("flip", seed=2)
    assert augment is not None
    out = augment(tf.constant(images)).numpy()
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images, strict=True)]
    same = [np.array_equal(o, i) for o, i in zip(out, images, strict=True)]
    assert all(m or s for m, s in zip(mirrored, same, strict=True))
    assert 4 <= sum(mirrored) <= 28
