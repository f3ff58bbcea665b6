"""The training inputs as tf.data pipelines: scan pixels (with augmentation), or a frozen backbone's features.

Each pipeline comes with the model it feeds; `tumorscan.train.trainer` picks one by the architecture.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.train.augment import make_augmenter
from tumorscan.train.data import CachedScans, make_dataset
from tumorscan.train.run_config import RunLog, TrainConfig

if TYPE_CHECKING:
    from tumorscan.train.architectures import Transfer


@dataclass
class Pipeline:
    """What differs between training a whole network and a head on cached backbone features."""

    build: Callable[[], Any]
    dataset: Callable[..., Any]
    """(source, rows, training, shard=None) -> a tf.data pipeline; shard: see `make_dataset`."""
    finalize: Callable[[Any], Any]


def pixel_pipeline(config: TrainConfig, sources: dict[str, CachedScans], shuffle_seed: int) -> Pipeline:
    from tumorscan.train.architectures import build_model

    augment = make_augmenter(config.augment, shuffle_seed)
    num_classes = len(sources["train"].labels)

    def dataset(source: str, indices: NDArray[np.int64], training: bool, shard: Any = None) -> Any:
        return make_dataset(
            sources[source],
            indices,
            config.batch_size,
            shuffle_seed=shuffle_seed if training else None,
            augment=augment if training else None,
            shard=shard,
        )

    return Pipeline(
        build=lambda: build_model(config.arch, config.size, num_classes),
        dataset=dataset,
        finalize=lambda model: model,
    )


def feature_pipeline(
    config: TrainConfig,
    sources: dict[str, CachedScans],
    shuffle_seed: int,
    transfer: Transfer,
    backbone: Any,
    cache_dir: Path,
    log: RunLog,
) -> Pipeline:
    from tumorscan.train.architectures import build_model
    from tumorscan.train.transfer import (
        AUGMENTATION_NOTE,
        backbone_features,
        backbone_fingerprint,
        feature_dataset,
    )

    if config.augment != "none":
        log(AUGMENTATION_NOTE.format(arch=config.arch))
    fingerprint = backbone_fingerprint(backbone)
    features = {}
    for name, scans in sources.items():
        started = time.time()
        features[name] = backbone_features(backbone, scans, cache_dir, config.batch_size, fingerprint)
        log(f"{config.arch} features of {len(scans)} {name} scans ready in {time.time() - started:.1f} s")
    num_classes = len(sources["train"].labels)

    def dataset(source: str, indices: NDArray[np.int64], training: bool, shard: None = None) -> Any:
        return feature_dataset(
            features[source],
            sources[source].label_ids,
            indices,
            config.batch_size,
            shuffle_seed=shuffle_seed if training else None,
        )

    return Pipeline(
        build=lambda: transfer.head(int(features["train"].shape[1]), num_classes),
        dataset=dataset,
        finalize=lambda head: build_model(
            config.arch, config.size, num_classes, head=head, backbone=backbone
        ),
    )
