"""Preparing a Keras image classifier for export: RGB 0-255 in, class probabilities out.

A model whose graph does not normalise its input gets the normalisation baked in: a new input,
stock Rescaling/Normalization/Dense layers, then the original model. A model that outputs
logits gets a Softmax appended. Outputs are checked on real pixels before anything is written.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.errors import ModelError, TumorscanError
from tumorscan.train.distance import named_outputs
from tumorscan.train.normalization import normalization_layers

from .adapt import grey_layers, single_output, with_depthwise_convolutions
from .formats import import_optional

PROBABILITY_TOLERANCE = 1e-3
"""How far from 1 a row of probabilities may sum (and how negative a probability may be)."""


class OutputShapeError(ModelError):
    """A model's output is not one probability (or logit) per label."""

    code = "bad_output"


def model_input_size(model: Any, requested: tuple[int, int] | None, source: str) -> tuple[int, int]:
    """The (height, width) a model takes: its own input shape, or `requested` where that is dynamic.

    Raises:
        ModelError: not one RGB or grey image input, a dynamic size without `requested`, or a
            conflicting one.
    """
    shape = getattr(model, "input_shape", None)
    if not isinstance(shape, tuple) or len(shape) != 4 or shape[3] not in (1, 3, None):
        raise ModelError(
            f"{source}: expected one image input (batch, height, width, 3 or 1 channels), got {shape}; "
            "tumorscan exports image classifiers."
        )
    own = shape[1:3]
    if None in own:
        if requested is None:
            raise ModelError(f"{source}: the model's input size is dynamic {own}; pass --input-size HxW.")
        return requested
    size = (int(own[0]), int(own[1]))
    if requested is not None and requested != size:
        raise ModelError(
            f"{source}: the model takes {size[0]}x{size[1]} images, not {requested[0]}x{requested[1]}; "
            "drop --input-size or pass the model's own size."
        )
    return size


def prepare_model(
    model: Any, size: tuple[int, int], normalization: str = "none", logits: bool = False
) -> Any:
    """The model to export: `normalization` baked in front, a Softmax behind when it outputs logits.

    A one-channel model also gets the RGB -> grey rule in front, a one-element list output is
    unwrapped and grouped depthwise convolutions are rewritten (see `tumorscan.export.adapt`).

    Args:
        model: a loaded Keras model with one image input (RGB or grey) and one output.
        size: (height, width) of the exported input.
        normalization: what to do to RGB 0-255 first (rescale, symmetric, caffe or none).
        logits: append a Softmax.

    Returns:
        `model` itself when nothing is added, else a new functional model around it.
    """
    keras = import_optional("keras", "Exporting models")
    grey = grey_layers(model)
    if grey and normalization == "caffe":
        raise TumorscanError("caffe preprocessing needs 3 colour channels; this model takes one (grey).")
    before = [*grey, *normalization_layers(normalization)]
    rewritten = with_depthwise_convolutions(model)
    if (
        not before
        and not logits
        and rewritten is model
        and not isinstance(getattr(model, "output", None), list)
    ):
        return model
    inputs = keras.Input(shape=(*size, 3), name="pixels")
    x = inputs
    for layer in before:
        x = layer(x)
    x = single_output(rewritten(x))
    if logits:
        x = keras.layers.Softmax(name="probabilities")(x)
    return keras.Model(inputs, x, name=f"{model.name}_export")


def serving_function(model: Any, shape: tuple[int | None, ...], named: bool = False) -> Any:
    """`model` traced on float32 `shape` input named "pixels", as (concrete function, its tf.Module).

    The module tracks the tf.Variable under each Keras variable, so that converters and freezing
    find the weights. The function returns its outputs by name (`named_outputs`: probabilities, then
    the training distance where the model has that head) when `named` or when there are two; a
    single output otherwise comes back as a plain tensor.
    """
    tf = import_optional("tensorflow", "Exporting models")
    module = tf.Module()
    module.tracked_variables = [variable.value for variable in model.weights]
    signature = [tf.TensorSpec(shape, tf.float32, name="pixels")]

    def serve(pixels: Any) -> Any:
        if named or len(model.outputs) > 1:
            return named_outputs(model, pixels)
        return model(pixels, training=False)

    module.serve = tf.function(serve, input_signature=signature, autograph=False)
    return module.serve.get_concrete_function(), module


def check_output_shape(model: Any, labels: tuple[str, ...], source: str) -> None:
    """Check the model returns one score per label.

    Raises:
        OutputShapeError: the output rank is not 2, or its size differs from the number of labels.
    """
    shape = model.output_shape
    if not isinstance(shape, tuple) or len(shape) != 2:
        raise OutputShapeError(
            f"{source}: the model outputs shape {shape}; expected one vector of class scores "
            "(batch, classes). Export a classifier whose last layer is Dense(classes)."
        )
    if shape[1] != len(labels):
        raise OutputShapeError(
            f"{source}: the model outputs {shape[1]} classes but {len(labels)} labels were given "
            f"({', '.join(labels)}); pass one label per output."
        )


def check_probabilities(model: Any, pixels: NDArray[np.uint8], logits: bool, source: str) -> None:
    """Run `model` on a few images and check its rows are probabilities (non-negative, summing to 1).

    Args:
        model: the prepared model.
        pixels: (N, H, W, 3) RGB 0-255 sample images.
        logits: whether --logits was given (a Softmax was appended).
        source: the model file, for messages.

    Raises:
        OutputShapeError: the rows are not probabilities: logits without --logits.
    """
    probabilities = np.asarray(model(pixels.astype(np.float32), training=False), dtype=np.float32)
    sums = probabilities.sum(axis=1)
    if probabilities.min() < -PROBABILITY_TOLERANCE or np.abs(sums - 1.0).max() > PROBABILITY_TOLERANCE:
        hint = "pass --logits to append a softmax" if not logits else "check the model's last layer"
        raise OutputShapeError(
            f"{source}: the outputs are not probabilities (row sums {[round(float(t), 3) for t in sums]}, "
            f"minimum {round(float(probabilities.min()), 3)}); they look like logits: {hint}."
        )
