"""Training losses that are not stock Keras."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="tumorscan")
class SparseSmoothedCrossentropy(keras.losses.Loss):  # type: ignore[misc]  # keras has no type hints
    """Categorical cross-entropy on integer labels, with label smoothing.

    Smoothing moves `smoothing` of each target's mass evenly onto all classes, which keeps the logits
    small; a full-integer int8 export then quantizes them in finer steps.
    """

    def __init__(
        self, smoothing: float = 0.0, name: str = "sparse_smoothed_crossentropy", **kwargs: Any
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.smoothing = smoothing

    def call(self, y_true: Any, y_pred: Any) -> Any:
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        targets = keras.ops.one_hot(labels, keras.ops.shape(y_pred)[-1])
        return keras.losses.categorical_crossentropy(targets, y_pred, label_smoothing=self.smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "smoothing": self.smoothing}


def training_loss(label_smoothing: float) -> Any:
    """The loss a run compiles with: plain sparse cross-entropy unless labels are smoothed."""
    if label_smoothing == 0:
        return "sparse_categorical_crossentropy"
    return SparseSmoothedCrossentropy(label_smoothing)
