"""Keras classifiers made elsewhere, made exportable: one image in, one score vector out.

- Models that are not single-input, single-output classifiers (several inputs or outputs, a
  sigmoid head) are refused with a typed error.
- An output a loaded model returns as a one-element list is unwrapped.
- Depthwise convolutions written as grouped `Conv2D` (ConvNeXt) become `DepthwiseConv2D` with the
  same weights: TensorFlow runs grouped convolutions through an XLA-compiled function, which
  tf2onnx cannot convert, while every converter knows depthwise convolutions.
- A one-channel (grey) model gets the RGB -> grey rule baked in front, so the exported file
  still takes RGB like every other: ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B), the rule
  of Pillow's `convert("L")` and OpenCV's `COLOR_RGB2GRAY`, which made most grey training sets.
  On scans stored as RGB with R = G = B (MRI) it returns that value unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tumorscan.errors import ModelError

from .formats import import_optional

GREY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights of R, G and B."""


class NotAClassifierError(ModelError):
    """A model is not a single-input, single-output classifier of images."""

    code = "not_a_classifier"


def _output_layer(model: Any) -> Any:
    """The layer that produces a model's (single) output, looking inside nested models."""
    history = getattr(model.outputs[0], "_keras_history", None)
    layer = history[0] if history is not None else model.layers[-1]
    return _output_layer(layer) if hasattr(layer, "outputs") and hasattr(layer, "layers") else layer


def check_classifier(model: Any, source: str) -> None:
    """Refuse models with several inputs or outputs, or a sigmoid (multi-label) head.

    Raises:
        NotAClassifierError: naming what was found and what tumorscan exports.
    """
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if inputs is None or outputs is None:  # a legacy SavedModel layer: checked by its shapes
        return
    if len(inputs) != 1 or len(outputs) != 1:
        raise NotAClassifierError(
            f"{source}: the model has {len(inputs)} inputs and {len(outputs)} outputs; tumorscan exports "
            "classifiers with one image input and one output of class scores."
        )
    layer = _output_layer(model)
    if getattr(getattr(layer, "activation", None), "__name__", None) == "sigmoid":
        raise NotAClassifierError(
            f"{source}: the output layer {layer.name!r} ends in a sigmoid (independent multi-label or binary "
            "scores); tumorscan exports single-label classifiers: a softmax head, or logits with --logits."
        )


def single_output(outputs: Any) -> Any:
    """The output tensor itself, where a loaded model returns it as a one-element list."""
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def _is_depthwise(layer: Any) -> bool:
    keras = import_optional("keras", "Exporting models")
    return (
        isinstance(layer, keras.layers.Conv2D)
        and not isinstance(layer, keras.layers.DepthwiseConv2D)
        and layer.groups > 1
        and layer.groups == layer.filters
        and layer.kernel.shape[2] == 1
    )


def _as_depthwise(layer: Any) -> Any:
    """A DepthwiseConv2D computing what a grouped Conv2D with one input channel per group does."""
    keras = import_optional("keras", "Exporting models")
    if not _is_depthwise(layer):
        return layer
    config = layer.get_config()
    depthwise = keras.layers.DepthwiseConv2D(
        kernel_size=config["kernel_size"],
        strides=config["strides"],
        padding=config["padding"],
        data_format=config["data_format"],
        dilation_rate=config["dilation_rate"],
        use_bias=config["use_bias"],
        activation=config["activation"],
        name=layer.name,
        dtype=layer.dtype_policy,
    )
    depthwise.build((None, None, None, layer.filters))
    kernel = np.asarray(layer.kernel)  # (kh, kw, 1, channels) -> (kh, kw, channels, 1)
    depthwise.set_weights([kernel.transpose(0, 1, 3, 2), *(np.asarray(w) for w in layer.weights[1:])])
    return depthwise


def _all_layers(model: Any) -> list[Any]:
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        found.extend(_all_layers(layer))
    return found


def with_depthwise_convolutions(model: Any) -> Any:
    """`model`, or a copy sharing its layers where grouped depthwise Conv2D became DepthwiseConv2D."""
    if not any(_is_depthwise(layer) for layer in _all_layers(model)):
        return model
    keras = import_optional("keras", "Exporting models")
    return keras.models.clone_model(model, clone_function=_as_depthwise, recursive=True)


def grey_layers(model: Any) -> list[Any]:
    """For a one-channel model, the stock layer mapping RGB to BT.601 luma; else nothing."""
    if model.input_shape[-1] != 1:
        return []
    keras = import_optional("keras", "Exporting models")
    grey = keras.layers.Dense(1, use_bias=False, name="rgb_to_grey", trainable=False)
    grey.build((None, 3))
    grey.set_weights([np.asarray(GREY_WEIGHTS, dtype=np.float32).reshape(3, 1)])
    return [grey]
