"""Feature distance for out-of-distribution inputs, computed inside the exported graph.

Penultimate features f (the input of the last Dense layer) are compared with the class means of the
training scans under a shared covariance (Mahalanobis distance, Lee et al. 2018):
d(f) = min_c (f - m_c)^T S^-1 (f - m_c). The exported file gets a second output, `training_distance`
= d(f) / threshold in column 0 of an (N, 2) tensor, float32 (uint8 in full-integer TFLite): above 1 means
out of distribution. Column 1 is the constant `RATIO_RANGE`: it pins the int8 range of the tensor, which is
otherwise set by the calibration scans alone (all in distribution, so far inputs would saturate below 1).
Probabilities stay output 0. The statistics travel inside the `.keras` archive as `tumorscan_distance.npz`
(written by tumor-calibrate and tumor-train); the spec's trust entry records the threshold and measurements.

The head is made of stock layers: one Dense gives (f - m_c) W for every class at once (W W^T = S^-1),
a square, a Dense summing each class block, and a max-pool over classes of the negated distances.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.errors import ModelError
from tumorscan.train.features import features_model
from tumorscan.train.scan_check import ScanCheck, scan_column
from tumorscan.trust import DISTANCE_OUTPUT

DISTANCE_ENTRY = "tumorscan_distance.npz"
PROBABILITIES_OUTPUT = "probabilities"
HEAD_PREFIXES = ("distance_", "scan_", DISTANCE_OUTPUT)
"""The trust heads' layer names start with these (the exported tensor names contain them)."""
RATIO_RANGE = 4.0
"""Largest distance ratio an int8 export can show (larger ones read as this)."""
SHRINKAGE = 0.01
"""Share of the mean feature variance added to the covariance's diagonal (dead ReLUs make it singular)."""


@dataclass(frozen=True)
class DistanceStats:
    """Class means (K x D), whitening W (D x D, W W^T = inverse covariance), the distance threshold, and
    the scan check (`tumorscan.train.scan_check`) where one was fitted."""

    means: NDArray[np.float32]
    whitening: NDArray[np.float32]
    threshold: float
    scan: ScanCheck | None = None

    def to_bytes(self) -> bytes:
        """As an .npz archive."""
        buffer = io.BytesIO()
        arrays: dict[str, Any] = {"means": self.means, "whitening": self.whitening}
        arrays["threshold"] = np.float32(self.threshold)
        arrays.update({} if self.scan is None else self.scan.to_arrays())
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, content: bytes) -> DistanceStats:
        """Parse `to_bytes` output."""
        with np.load(io.BytesIO(content), allow_pickle=False) as arrays:
            scan = ScanCheck.from_arrays(arrays)
            return cls(arrays["means"], arrays["whitening"], float(arrays["threshold"]), scan)

    def distances(self, features: NDArray[np.floating]) -> NDArray[np.float32]:
        """Squared Mahalanobis distance of each feature row to the nearest class mean."""
        projected = features.astype(np.float64) @ self.whitening
        centres = self.means.astype(np.float64) @ self.whitening
        squared = ((projected[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        nearest: NDArray[np.float32] = squared.min(axis=1).astype(np.float32)
        return nearest


def fit_distance(
    features: NDArray[np.floating], label_ids: NDArray[np.integer], num_classes: int
) -> DistanceStats:
    """Class means and shared (shrunk) covariance of training features; threshold left at 1 (set later)."""
    features = features.astype(np.float64)
    means = np.stack([features[label_ids == c].mean(axis=0) for c in range(num_classes)])
    centred = features - means[label_ids]
    covariance = centred.T @ centred / len(features)
    covariance += SHRINKAGE * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
    whitening = np.linalg.cholesky(np.linalg.inv(covariance))
    return DistanceStats(means.astype(np.float32), whitening.astype(np.float32), 1.0)


def with_distance_output(model: Any, stats: DistanceStats, source: str = "model") -> Any:
    """`model` with a second output, `training_distance`: (distance / threshold, `RATIO_RANGE`), (N, 2),
    and the scan check's ratio as a third column where the statistics carry one."""
    import keras

    layers = keras.layers
    features = features_model(model, source).output
    classes, dims = stats.means.shape
    shift = layers.Dense(classes * dims, name="distance_whiten")
    shift.build((None, dims))
    centres = stats.means @ stats.whitening
    shift.set_weights([np.tile(stats.whitening, (1, classes)), -centres.reshape(-1)])
    whitened = shift(features)
    squared = layers.Multiply(name="distance_square")([whitened, whitened])
    total = layers.Dense(classes, use_bias=False, name="distance_sum")
    total.build((None, classes * dims))
    blocks = np.kron(np.eye(classes, dtype=np.float32), np.ones((dims, 1), dtype=np.float32))
    total.set_weights([blocks * np.float32(-1.0 / stats.threshold)])
    negated = layers.Reshape((classes, 1), name="distance_classes")(total(squared))
    nearest = layers.GlobalMaxPooling1D(name="distance_nearest")(negated)
    ratio = layers.Rescaling(-1.0, name="distance_ratio_value")(nearest)
    anchor = layers.Dense(1, kernel_initializer="zeros", bias_initializer="zeros", name="distance_range")
    anchor.build((None, 1))
    anchor.set_weights([np.zeros((1, 1), np.float32), np.full(1, RATIO_RANGE, np.float32)])
    columns = [ratio, anchor(nearest)]
    if stats.scan is not None:
        columns.append(scan_column(model, stats.scan, RATIO_RANGE, source))
    output = layers.Concatenate(name=DISTANCE_OUTPUT)(columns)
    return keras.Model(model.input, [model.output, output], name=f"{model.name}_distance")


def is_head_layer(name: str) -> bool:
    """Whether a layer or tensor name belongs to a trust head rather than to the classifier."""
    return any(part.startswith(HEAD_PREFIXES) for part in re.split(r"[/;:]", name))


def read_distance(path: Path) -> DistanceStats | None:
    """The statistics stored in a `.keras` archive, or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            if DISTANCE_ENTRY not in archive.namelist():
                return None
            return DistanceStats.from_bytes(archive.read(DISTANCE_ENTRY))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable {DISTANCE_ENTRY} ({exc}); run tumor-calibrate again.") from exc


def named_outputs(model: Any, pixels: Any) -> dict[str, Any]:
    """The model's outputs by name: `probabilities`, and `training_distance` when it has the distance head."""
    outputs = model(pixels, training=False)
    if isinstance(outputs, (list, tuple)):
        return {PROBABILITIES_OUTPUT: outputs[0], DISTANCE_OUTPUT: outputs[1]}
    return {PROBABILITIES_OUTPUT: outputs}
