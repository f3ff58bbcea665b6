"""Normalisation inside the graph: stock Keras layers mapping RGB 0-255 to what a network expects.

One builder serves training (the first layers of each architecture) and export (baked in front of a
model that does not normalise its input). The names are `tumorscan.spec.NORMALIZATIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tumorscan.errors import TumorscanError
from tumorscan.spec import NORMALIZATIONS

IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
"""ImageNet ("caffe") channel means in BGR order, subtracted after the RGB -> BGR flip."""


def _rescale(layers: Any) -> list[Any]:
    return [layers.Rescaling(1.0 / 255, name="rescale")]


def _symmetric(layers: Any) -> list[Any]:
    return [layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale_symmetric")]


def _caffe(layers: Any) -> list[Any]:
    # RGB -> BGR as a fixed permutation matrix, then the BGR means as a (negative) bias: no Lambda layer.
    flip = layers.Dense(3, name="caffe_bgr", trainable=False)
    flip.build((None, 3))
    flip.set_weights([np.eye(3, dtype=np.float32)[::-1], -np.asarray(IMAGENET_BGR_MEAN, dtype=np.float32)])
    return [flip]


def _none(layers: Any) -> list[Any]:
    return []


BUILDERS: dict[str, Callable[[Any], list[Any]]] = {
    "rescale": _rescale,
    "symmetric": _symmetric,
    "caffe": _caffe,
    "none": _none,
}
"""The layers of each normalisation, given `keras.layers`."""


def normalization_layers(name: str) -> list[Any]:
    """Fresh stock layers mapping RGB 0-255 to what a network with normalisation `name` expects.

    Raises:
        TumorscanError: `name` is not one of `tumorscan.spec.NORMALIZATIONS`.
    """
    if name not in BUILDERS:
        raise TumorscanError(f"unknown preprocessing {name!r}; choose from: {', '.join(NORMALIZATIONS)}.")
    import keras

    return BUILDERS[name](keras.layers)


def normalize(inputs: Any, name: str) -> Any:
    """`inputs` through the layers of normalisation `name`."""
    x = inputs
    for layer in normalization_layers(name):
        x = layer(x)
    return x
