"""The seed's three architectures, built by name through a registry that knows each one's facts.

Every model takes RGB pixels 0-255; its normalisation (`tumorscan.train.normalization`) is the first
layer of the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from tumorscan.errors import TumorscanError
from tumorscan.train.normalization import normalize

Builder = Callable[..., keras.Model]


@dataclass(frozen=True)
class Transfer:
    """Transfer learning: a frozen backbone that takes pretrained weights, and a head trained on its
    cached features.

    Attributes:
        backbone: `backbone(input_size, weights)` -> the frozen feature extractor, RGB 0-255 in.
        head: `head(feature_size, num_classes)` -> the trainable head on those features.
    """

    backbone: Callable[[tuple[int, int], str | Path | None], keras.Model]
    head: Callable[[int, int], keras.Model]


@dataclass(frozen=True)
class Architecture:
    """A registered architecture and what training and export need to know of it.

    Attributes:
        name: the registry name (`--arch`).
        build: `build(input_size=, num_classes=, **options)` -> the whole model, RGB 0-255 in; with
            `transfer`, it also takes a trained `head=` and the `backbone=` its features came from.
        normalization: what the graph does to its 0-255 input (recorded in the model spec).
        transfer: None for a network trained whole from scratch on pixels; else it takes pretrained
            weights (`--weights`) and trains only a head on cached backbone features.
    """

    name: str
    build: Builder
    normalization: str
    transfer: Transfer | None = None


ARCHITECTURES: dict[str, Architecture] = {}


class UnknownArchitectureError(TumorscanError):
    """No architecture is registered under the requested name."""


class WeightsUnavailableError(TumorscanError):
    """Pretrained weights could not be downloaded or found locally."""


def register(name: str, normalization: str, **facts: Any) -> Callable[[Builder], Builder]:
    """Register a model builder under `name`, with its normalisation and other `Architecture` facts."""

    def decorator(builder: Builder) -> Builder:
        ARCHITECTURES[name] = Architecture(name, builder, normalization, **facts)
        return builder

    return decorator


def get_architecture(name: str) -> Architecture:
    """The registered architecture `name`.

    Raises:
        UnknownArchitectureError: the name is not registered; the message lists the valid ones.
    """
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UnknownArchitectureError(
            f"unknown architecture {name!r}; choose one of: {', '.join(sorted(ARCHITECTURES))}."
        ) from None


def build_model(
    name: str, input_size: tuple[int, int] = (224, 224), num_classes: int = 4, **kwargs: Any
) -> keras.Model:
    """Build a registered architecture.

    Args:
        name: one of `ARCHITECTURES` (cnn1, cnn2, vgg16).
        input_size: (height, width) of the RGB input.
        num_classes: size of the softmax output.
        **kwargs: builder options (vgg16: `weights`).

    Raises:
        UnknownArchitectureError: the name is not registered; the message lists the valid ones.
    """
    return get_architecture(name).build(input_size=input_size, num_classes=num_classes, **kwargs)


def _rgb_input(input_size: tuple[int, int]) -> keras.KerasTensor:
    return keras.Input(shape=(*input_size, 3), name="pixels")


@register("cnn1", normalization="rescale")
def cnn1(input_size: tuple[int, int] = (224, 224), num_classes: int = 4) -> keras.Model:
    """CNN1: three Conv2D(128) + MaxPool blocks, Dense(128), Dropout, softmax."""
    inputs = _rgb_input(input_size)
    x = normalize(inputs, "rescale")
    for index in range(1, 4):
        x = layers.Conv2D(128, 3, activation="relu", name=f"conv{index}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{index}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cnn1")


@register("cnn2", normalization="rescale")
def cnn2(input_size: tuple[int, int] = (224, 224), num_classes: int = 4) -> keras.Model:
    """CNN2: two Conv2D(32, same) + MaxPool blocks, Dropout, Dense(128), softmax."""
    inputs = _rgb_input(input_size)
    x = normalize(inputs, "rescale")
    for index in range(1, 3):
        x = layers.Conv2D(32, 3, padding="same", activation="relu", name=f"conv{index}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{index}")(x)
    x = layers.Dropout(0.25, name="dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cnn2")


def vgg16_backbone(
    input_size: tuple[int, int] = (224, 224), weights: str | Path | None = None
) -> keras.Model:
    """Frozen VGG16 with its ImageNet top up to fc2, taking RGB 0-255.

    The caffe preprocessing (BGR order, channel means) comes first, from the stock layers that
    `tumorscan.train.normalization` builds for every model; the ImageNet weights then see BGR as
    they expect. No Lambda layer.

    Args:
        weights: "imagenet" (download or Keras cache), a path to a VGG16 weights file, or None.
    """
    base = keras.applications.VGG16(include_top=True, weights=None, input_shape=(*input_size, 3))
    if weights is not None:
        _load_vgg16_weights(base, weights)
    base.trainable = False
    inputs = _rgb_input(input_size)
    x = normalize(inputs, "caffe")
    features = keras.Model(base.input, base.get_layer("fc2").output, name="vgg16_base")(x)
    return keras.Model(inputs, features, name="vgg16_backbone")


def _load_vgg16_weights(base: keras.Model, weights: str | Path) -> None:
    if str(weights) == "imagenet":
        try:
            reference = keras.applications.VGG16(include_top=True, weights="imagenet")
        except Exception as exc:  # network or cache failures all mean the same to the user
            cache = Path(keras.config.keras_home() if hasattr(keras.config, "keras_home") else "~/.keras")
            raise WeightsUnavailableError(
                "could not download the VGG16 ImageNet weights "
                f"({exc}). Download 'vgg16_weights_tf_dim_ordering_tf_kernels.h5' on another machine and "
                f"place it in {cache.expanduser() / 'models'}, or pass its path with --weights PATH, "
                "or train from scratch with --weights none."
            ) from exc
        base.set_weights(reference.get_weights())
        return
    path = Path(weights)
    if not path.is_file():
        raise WeightsUnavailableError(
            f"{path}: VGG16 weights file not found; pass the path of "
            "'vgg16_weights_tf_dim_ordering_tf_kernels.h5', 'imagenet' or 'none'."
        )
    try:
        base.load_weights(path)
    except Exception as exc:
        raise WeightsUnavailableError(
            f"{path}: not a VGG16 weights file with the ImageNet top ({exc})."
        ) from exc


def vgg16_head(feature_size: int, num_classes: int) -> keras.Model:
    """The trainable part of the VGG16 transfer model: Dense(num_classes) softmax on fc2 features."""
    inputs = keras.Input(shape=(feature_size,), name="features")
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(inputs)
    return keras.Model(inputs, outputs, name="vgg16_head")


@register("vgg16", normalization="caffe", transfer=Transfer(vgg16_backbone, vgg16_head))
def vgg16(
    input_size: tuple[int, int] = (224, 224),
    num_classes: int = 4,
    weights: str | Path | None = None,
    head: keras.Model | None = None,
    backbone: keras.Model | None = None,
) -> keras.Model:
    """VGG16 transfer learning: frozen VGG16 (to fc2) and a new Dense softmax head.

    Args:
        weights: backbone weights ("imagenet", a path or None), when `backbone` is not given.
        head: a trained head (from `vgg16_head`); None builds a fresh one.
        backbone: an existing `vgg16_backbone` to reuse (the one a head's features came from).
    """
    backbone = backbone or vgg16_backbone(input_size, weights)
    head = head or vgg16_head(int(backbone.output.shape[-1]), num_classes)
    model = keras.Model(backbone.input, head(backbone.output), name="vgg16")
    return model


def count_params(model: keras.Model) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return int(model.count_params()), trainable
