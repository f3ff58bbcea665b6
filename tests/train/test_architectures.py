"""The registry builds the seed's three architectures with the seed's parameter counts."""

from __future__ import annotations

import pytest

from tumorscan.train.architectures import (
    ARCHITECTURES,
    NORMALIZATION,
    UnknownArchitectureError,
    build_model,
    count_params,
)

SEED_COUNTS = {
    "cnn1": (11_374_980, 11_374_980),
    "cnn2": (12_855_844, 12_855_844),
    "vgg16": (134_276_932, 16_388),
}


@pytest.mark.parametrize("name", sorted(SEED_COUNTS))
def test_parameter_counts_at_224_match_the_seed(name: str) -> None:
    assert count_params(build_model(name, input_size=(224, 224))) == SEED_COUNTS[name]


def test_every_architecture_has_a_normalization() -> None:
    assert set(NORMALIZATION) == set(ARCHITECTURES)


def test_unknown_architecture_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownArchitectureError, match="cnn1, cnn2, vgg16"):
        build_model("resnet")
