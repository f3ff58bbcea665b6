"""Transfer learning on cached features (architectures with a backbone and a head, such as VGG16).

Only the head of the transfer model trains, so the frozen backbone's output (VGG16: fc2) is computed
once per cached scan (and cached on disk beside the pixels); the head trains on those features in
seconds, and the full model is assembled from the same backbone and the trained head.
Augmentation cannot apply to precomputed features, so this path trains without it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.errors import TumorscanError
from tumorscan.train.architectures import Transfer
from tumorscan.train.data import CachedScans, cache_folder, make_dataset

IMAGENET_SIZE = (224, 224)
AUGMENTATION_NOTE = (
    "{arch} trains its head on cached backbone features, which cannot be augmented; --augment is ignored."
)


def parse_weights(value: str | None) -> str | Path | None:
    """--weights as a backbone takes it: "imagenet" (the default), a path, or None for "none"."""
    if value is None or value == "imagenet":
        return "imagenet"
    if value == "none":
        return None
    return Path(value)


def build_backbone(transfer: Transfer, size: tuple[int, int], weights: str | Path | None) -> Any:
    """The frozen backbone of a transfer architecture at `size`.

    Raises:
        TumorscanError: pretrained weights requested at a size other than 224x224 (their fc layers fix it).
        WeightsUnavailableError: the weights cannot be downloaded or read.
    """
    if weights is not None and tuple(size) != IMAGENET_SIZE:
        raise TumorscanError(
            f"the pretrained backbone needs --size 224 (its fully connected layers fix the size); "
            f"got {size[0]}x{size[1]}. Use --size 224, or --weights none to train from scratch."
        )
    return transfer.backbone(size, weights)


def backbone_fingerprint(backbone: Any) -> str:
    """sha256 of the backbone's weights: features computed with equal weights are interchangeable."""
    digest = hashlib.sha256()
    for weight in backbone.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()


def backbone_features(
    backbone: Any,
    scans: CachedScans,
    cache_dir: Path | None,
    batch_size: int = 32,
    fingerprint: str | None = None,
) -> NDArray[np.float32]:
    """The backbone's output for every row of `scans` (N x 4096), read from or written to the cache.

    The cache file is named after the dataset's and the backbone's fingerprints, so a changed
    dataset or other weights never reuse stale features.
    """
    if cache_dir is None:
        return _predict(backbone, scans, batch_size)
    identity = f"{scans.fingerprint()}:{fingerprint or backbone_fingerprint(backbone)}"
    name = f"features-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.npy"
    path = cache_folder(cache_dir, scans.root, scans.size) / name
    if path.is_file():
        cached: NDArray[np.float32] = np.load(path)
        if cached.shape[0] == len(scans):
            return cached
    features = _predict(backbone, scans, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{name}.partial.npy")
    np.save(partial, features)
    os.replace(partial, path)
    return features


def _predict(backbone: Any, scans: CachedScans, batch_size: int) -> NDArray[np.float32]:
    dataset = make_dataset(scans, np.arange(len(scans)), batch_size).map(lambda images, labels: images)
    return np.asarray(backbone.predict(dataset, verbose=1), dtype=np.float32)


def feature_dataset(
    features: NDArray[np.float32],
    label_ids: NDArray[np.int32],
    indices: NDArray[np.int64],
    batch_size: int,
    shuffle_seed: int | None = None,
) -> Any:
    """A tf.data pipeline of (features, label id) batches over rows `indices`."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((features[indices], label_ids[indices]))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(indices), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
