"""The penultimate features of a classifier: the input of its last Dense layer."""

from __future__ import annotations

from typing import Any

from tumorscan.errors import ModelError


def features_model(model: Any, source: str = "model") -> Any:
    """A Keras model from the same input to the penultimate features (the input of the last Dense layer).

    Raises:
        ModelError: the model does not end in a Dense layer on a feature vector.
    """
    import keras

    last = model.layers[-1] if getattr(model, "layers", None) else None
    if not isinstance(last, keras.layers.Dense) or len(last.input.shape) != 2:
        raise ModelError(f"{source}: the model does not end in a Dense layer on a feature vector.")
    return keras.Model(model.input, last.input, name=f"{model.name}_features")
