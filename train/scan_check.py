"""The scan check: is an image an upright, whole brain-MRI scan like the training scans?

The feature distance (`tumorscan.train.distance`) sees only the penultimate features, which a grey photo,
a texture or an upside-down scan can share with scans. The scan check looks at more than one layer: the
penultimate features, the mean of the last activation at every spatial resolution, and the last one
averaged over a 6 x 6 grid (where things are, so orientation shows). A logistic regression separates the
training scans and their mirrors from negatives made of them (turned, zoomed in, tiled, inverted) and from
numpy (`tumorscan.train.negatives`); its threshold leaves `SCAN_SHARE` of the validation scans flagged.

The exported file carries it as column 2 of the `training_distance` output: the logit of "not a scan"
rescaled so that the median validation scan reads 0 and the threshold 1 (cut at 0), so above 1 means out
of distribution, like the distance ratio in column 0. Column 1's constant pins the int8 range, as for the
distance. In the graph the logit is the sum of two Dense layers (the penultimate features through one, the
other features through the other: an int8 concatenation would give the classifier's features the other
features' scale), each with a constant second column so its tensor reaches the ratio `anchor`; the
rescaling is a multiply and an add. Feature scales are floored when standardising, so that the weights stay
small next to the logit's range, as int8 kernels need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.errors import ModelError
from tumorscan.train.features import features_model

SCAN_SHARE = 0.02
"""Share of validation scans the scan check may flag."""
GRID = 6
"""The last activation is averaged over about GRID x GRID cells (on held-out half turns of validation scans,
a 6 x 6 grid flagged 93% where 3 x 3 flagged 75%, at 2% of validation scans flagged)."""
NEGATIVE_SOURCES = 600
"""Training scans turned into negatives (each in every way of `SCAN_TRANSFORMS`)."""
SYNTHETIC = 800
"""Synthetic negatives for fitting (and a quarter as many, drawn apart, for measuring)."""
REGULARISATION = 1.0
"""Inverse L2 strength of the logistic regression (scikit-learn's C) on standardised features."""
SCALE_FLOOR = 0.25
"""Smallest feature scale used in standardising, as a share of the median feature's."""


@dataclass(frozen=True)
class ScanCheck:
    """Which layers feed the check, its linear score on their features, and where the score means "out"."""

    layers: tuple[str, ...]
    weights: NDArray[np.float32]
    bias: float
    median: float
    threshold: float

    def ratios(self, features: NDArray[np.floating]) -> NDArray[np.float32]:
        """The exported column: max(0, (score - median) / (threshold - median)); above 1 is out."""
        scores = features.astype(np.float64) @ self.weights + self.bias
        ratio = np.maximum(0.0, (scores - self.median) / (self.threshold - self.median))
        return ratio.astype(np.float32)

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """As named arrays (stored in the feature-distance archive entry)."""
        return {
            "scan_layers": np.array(self.layers, dtype=str),
            "scan_weights": self.weights,
            "scan_numbers": np.array([self.bias, self.median, self.threshold], np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: Any) -> ScanCheck | None:
        """Parse `to_arrays` output; None when the arrays do not hold a scan check."""
        if "scan_weights" not in arrays:
            return None
        bias, median, threshold = (float(value) for value in arrays["scan_numbers"])
        layers = tuple(str(name) for name in arrays["scan_layers"])
        return cls(layers, arrays["scan_weights"].astype(np.float32), bias, median, threshold)


def pooled_layers(model: Any) -> tuple[str, ...]:
    """Names of the last top-level layer at every spatial resolution (4D outputs), in model order.

    A nested model is skipped: its inner layers are not part of the outer graph.
    """
    import keras

    last: dict[tuple[Any, ...], str] = {}
    for layer in model.layers:
        if isinstance(layer, (keras.Model, keras.layers.InputLayer)):
            continue
        shape = getattr(getattr(layer, "output", None), "shape", None)
        if shape is not None and len(shape) == 4:
            last.pop(tuple(shape[1:3]), None)
            last[tuple(shape[1:3])] = layer.name
    return tuple(last.values())


def _scan_parts(model: Any, layers: tuple[str, ...], source: str) -> tuple[Any, Any | None]:
    """The penultimate features, and the other features (means of `layers`, the last on a grid) or None.

    Raises:
        ModelError: a layer is missing (the model is not the one the check was fitted on).
    """
    import keras

    parts = []
    for index, name in enumerate(layers):
        try:
            output = model.get_layer(name).output
        except ValueError as exc:
            raise ModelError(
                f"{source}: no layer {name!r} for the scan check; run tumor-calibrate again."
            ) from exc
        parts.append(keras.layers.GlobalAveragePooling2D(name=f"scan_mean_{index}")(output))
    if layers:
        height, width = model.get_layer(layers[-1]).output.shape[1:3]
        cell = (max(1, height // GRID), max(1, width // GRID))
        grid = keras.layers.AveragePooling2D(cell, name="scan_grid")(model.get_layer(layers[-1]).output)
        parts.append(keras.layers.Flatten(name="scan_grid_cells")(grid))
    rest = keras.layers.Concatenate(name="scan_features")(parts) if len(parts) > 1 else (parts or [None])[0]
    return features_model(model, source).output, rest


def scan_features(model: Any, layers: tuple[str, ...], source: str = "model") -> Any:
    """The check's feature tensor of `model`: penultimate features, means of `layers`, the last on a grid."""
    import keras

    penultimate, rest = _scan_parts(model, layers, source)
    return penultimate if rest is None else keras.layers.Concatenate(name="scan_all")([penultimate, rest])


def scan_features_model(model: Any, layers: tuple[str, ...], source: str = "model") -> Any:
    """A Keras model from the input to `scan_features`."""
    import keras

    return keras.Model(model.input, scan_features(model, layers, source), name=f"{model.name}_scan")


def _dense(name: str, weights: NDArray[np.float32], bias: tuple[float, float]) -> Any:
    """A built Dense(2) whose first column is `weights` and second column zero, with `bias`."""
    import keras

    layer = keras.layers.Dense(2, name=name)
    layer.build((None, len(weights)))
    kernel = np.zeros((len(weights), 2), np.float32)
    kernel[:, 0] = weights
    layer.set_weights([kernel, np.array(bias, np.float32)])
    return layer


def scan_column(model: Any, check: ScanCheck, anchor: float, source: str = "model") -> Any:
    """The exported column (N, 1): `ScanCheck.ratios` in stock layers, its int8 range pinned by `anchor`
    (column 1 of each Dense layer's output is a constant that reaches it).

    The penultimate features enter through a Dense layer of their own, not a concatenation: an int8
    concatenation gives its inputs one scale, which would coarsen the features the classifier reads.
    """
    import keras

    layers = keras.layers
    penultimate, rest = _scan_parts(model, check.layers, source)
    span = check.threshold - check.median
    width = int(penultimate.shape[-1])
    score = _dense("scan_score_pinned", check.weights[:width], (check.bias, check.median + anchor * span))
    logits = score(penultimate)
    if rest is not None:  # its column 1 pins its own range too; the sum's reads 2 * anchor after rescaling
        more = _dense("scan_score_more", check.weights[width:], (0.0, anchor * span))
        logits = layers.Add(name="scan_score")([logits, more(rest)])
    rescale = layers.Rescaling(1 / span, offset=-check.median / span, name="scan_ratio_scaled")
    pinned = layers.Reshape((2, 1), name="scan_ratio_columns")(
        layers.ReLU(name="scan_ratio_cut")(rescale(logits))
    )
    first = layers.Cropping1D((0, 1), name="scan_ratio_first")(pinned)
    return layers.Flatten(name="scan_ratio")(first)


@dataclass(frozen=True)
class ScanFit:
    """A fitted check, its ratios on the validation scans and what it flags among held-out negatives."""

    check: ScanCheck
    validation_ratios: NDArray[np.float32]
    entry: dict[str, Any]


def _coefficients(
    features: NDArray[np.float32], negative: NDArray[np.bool_]
) -> tuple[NDArray[np.float32], float]:
    """Logistic regression on standardised features, folded back to weights and bias on raw features.

    Each feature's scale is at least `SCALE_FLOOR` of the median scale: a nearly constant feature would
    otherwise get a huge raw weight, which int8 kernels cannot represent.
    """
    from sklearn.linear_model import LogisticRegression

    mean, spread = features.mean(axis=0), features.std(axis=0)
    typical = float(np.median(spread[spread > 0])) if (spread > 0).any() else 1.0
    scale = np.maximum(spread, SCALE_FLOOR * typical)
    regression = LogisticRegression(C=REGULARISATION, class_weight="balanced", max_iter=3000)
    regression.fit((features - mean) / scale, negative)
    weights = regression.coef_[0] / scale
    bias = float(regression.intercept_[0] - (weights * mean).sum())
    return weights.astype(np.float32), bias


def _held_out(extractor: Any, check: ScanCheck, validation: NDArray[np.uint8], seed: int) -> dict[str, float]:
    """Share flagged of negatives made from validation scans (per kind) and of fresh synthetic images."""
    from tumorscan.train.batches import keras_outputs
    from tumorscan.train.negatives import synthetic_images, transformed_scans

    turned, kinds = transformed_scans(validation, seed + 1)
    synthetic, _ = synthetic_images(SYNTHETIC // 4, validation.shape[1:3], seed + 1)
    flagged = check.ratios(keras_outputs(extractor, turned)) > 1
    shares = {kind: float(flagged[np.array(kinds) == kind].mean()) for kind in dict.fromkeys(kinds)}
    shares["synthetic"] = float((check.ratios(keras_outputs(extractor, synthetic)) > 1).mean())
    return {kind: round(share, 4) for kind, share in shares.items()}


def fit_scan_check(
    model: Any,
    pixels: NDArray[np.uint8],
    train_rows: NDArray[np.int64],
    val_rows: NDArray[np.int64],
    seed: int = 0,
) -> ScanFit | None:
    """Fit the check on the training rows and made negatives; threshold and measures from validation rows.

    None when the model does not end in a Dense layer on a feature vector.
    """
    from tumorscan.train.batches import keras_outputs
    from tumorscan.train.negatives import synthetic_images, transformed_scans

    try:
        layers = pooled_layers(model)
        extractor = scan_features_model(model, layers)
    except ModelError:
        return None
    rng = np.random.default_rng(seed)
    sources = np.asarray(
        pixels[np.sort(rng.choice(train_rows, min(NEGATIVE_SOURCES, len(train_rows)), False))]
    )
    turned, _ = transformed_scans(sources, seed)
    synthetic, _ = synthetic_images(SYNTHETIC, sources.shape[1:3], seed)
    positive = [keras_outputs(extractor, pixels, train_rows), keras_outputs(extractor, sources[:, :, ::-1])]
    negative = [keras_outputs(extractor, turned), keras_outputs(extractor, synthetic)]
    features = np.concatenate(positive + negative)
    labels = np.repeat([False, True], [sum(map(len, positive)), sum(map(len, negative))])
    weights, bias = _coefficients(features, labels)
    validation = keras_outputs(extractor, pixels, val_rows)
    scores = validation.astype(np.float64) @ weights + bias
    threshold, median = float(np.quantile(scores, 1 - SCAN_SHARE)), float(np.median(scores))
    check = ScanCheck(layers, weights, bias, median, threshold)
    held_out_rows = val_rows[:: max(1, len(val_rows) // 200)]
    entry = {
        "validation_share": SCAN_SHARE,
        "layers": list(layers),
        "features": len(weights),
        "fitted_on": {"scans": len(positive[0]) + len(positive[1]), "negatives": int(labels.sum())},
        "held_out_flagged": _held_out(extractor, check, np.asarray(pixels[held_out_rows]), seed),
    }
    return ScanFit(check, check.ratios(validation), entry)
