"""The registry builds the seed's architectures with the seed's parameter counts and knows their facts."""

from __future__ import annotations

import pytest

from tumorscan.spec import NORMALIZATIONS
from tumorscan.train.architectures import (
    ARCHITECTURES,
    UnknownArchitectureError,
    build_model,
    count_params,
)
from tumorscan.train.normalization import BUILDERS

SEED_COUNTS = {
    "cnn1": (11_374_980, 11_374_980),
    "cnn2": (12_855_844, 12_855_844),
    "vgg16": (134_276_932 + 12, 16_388),
}
"""VGG16: the seed's count plus its caffe normalisation in the graph (fixed Dense(3): 9 weights, 3 biases)."""


@pytest.mark.parametrize("name", sorted(SEED_COUNTS))
def test_parameter_counts_at_224_match_the_seed(name: str) -> None:
    assert count_params(build_model(name, input_size=(224, 224))) == SEED_COUNTS[name]


def test_every_architecture_knows_its_facts() -> None:
    assert {name: a.normalization for name, a in ARCHITECTURES.items()} == {
        "cnn1": "rescale",
        "cnn2": "rescale",
        "vgg16": "caffe",
    }
    assert [name for name, a in ARCHITECTURES.items() if a.transfer is not None] == ["vgg16"]
    assert set(BUILDERS) == set(NORMALIZATIONS)


def test_unknown_architecture_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownArchitectureError, match="cnn1, cnn2, vgg16"):
        build_model("resnet")


def test_vgg16_normalises_as_keras_applications_caffe_does() -> None:
    import keras
    import numpy as np
    from keras.applications.imagenet_utils import preprocess_input

    from tumorscan.train.architectures import vgg16_backbone

    backbone = vgg16_backbone((32, 32), weights=None)
    first = keras.Model(backbone.input, backbone.get_layer("caffe_bgr").output)
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    expected = preprocess_input(pixels.copy(), mode="caffe")
    np.testing.assert_allclose(np.asarray(first(pixels)), expected, rtol=1e-5, atol=1e-4)
