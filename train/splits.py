"""Validation splits that keep near copies on one side.

MRI datasets hold neighbouring slices of one patient and re-encoded copies of one scan. A validation
split carved at random puts some of them on both sides, and then validation accuracy, the temperature,
the abstention threshold and the distance threshold are all measured partly on scans the model has
memorised. The grouped split joins near copies by the audit's perceptual-hash rule (Hamming distance at
most `NEAR_THRESHOLD` bits, transitively) and keeps each group whole, classes balanced
(scikit-learn's `StratifiedGroupKFold`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tumorscan.errors import DatasetError
from tumorscan.train.audit import NEAR_THRESHOLD, hamming_distances, perceptual_hashes
from tumorscan.train.data import CachedScans, stratified_split

SPLITS = ("grouped", "random")
"""How the validation part is carved: whole near-copy groups, or scans at random (stratified)."""


def near_copy_groups(bits: NDArray[np.bool_], threshold: int = NEAR_THRESHOLD) -> NDArray[np.int64]:
    """A group id per hash: hashes within `threshold` bits are in one group, transitively."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    close = hamming_distances(bits, bits) <= threshold
    groups: NDArray[np.int32] = connected_components(csr_matrix(close), directed=False)[1]
    return groups.astype(np.int64)


def scan_groups(scans: CachedScans, progress: bool = True) -> NDArray[np.int64]:
    """The near-copy group of every scan (a scan the hasher cannot read is a group of its own)."""
    hashes = perceptual_hashes(scans.root, progress)
    names = scans.relative_paths()
    hashed = [i for i, name in enumerate(names) if name in hashes]
    groups = np.arange(len(names), dtype=np.int64) + len(names)
    if hashed:
        bits = np.stack([hashes[names[i]][1] for i in hashed])
        groups[hashed] = near_copy_groups(bits)
    return groups


def grouped_split(
    label_ids: NDArray[np.int32],
    groups: NDArray[np.int64],
    fraction: float,
    seed: int,
    labels: Sequence[str] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Split row indices into (train, validation): about `fraction` of each class, whole groups per side.

    Raises:
        DatasetError: `fraction` is outside (0, 1), or a class ends up on one side only.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"the validation fraction must be between 0 and 1, got {fraction}.")
    smallest = int(np.bincount(label_ids).min(initial=len(label_ids)))
    folds = min(max(2, round(1 / fraction)), len(np.unique(groups)), smallest)
    if folds < 2:
        raise DatasetError(
            "a class has one scan, or all scans are near copies of each other; a grouped validation split "
            "needs at least two of each on each side."
        )
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    train, validation = next(splitter.split(np.zeros(len(label_ids)), label_ids, groups))
    for class_id in np.unique(label_ids):
        if not (label_ids[train] == class_id).any() or not (label_ids[validation] == class_id).any():
            name = labels[class_id] if labels is not None else f"#{class_id}"
            raise DatasetError(
                f"class {name}: its scans are near copies of each other, so a grouped split cannot put some "
                "on each side; add scans of other patients or pass --split random."
            )
    return np.sort(train).astype(np.int64), np.sort(validation).astype(np.int64)


def validation_split(
    scans: CachedScans, fraction: float, seed: int, method: str, progress: bool = True
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The (train, validation) rows of `scans` by `method` ("grouped" or "random", see `SPLITS`).

    Raises:
        DatasetError: unknown method, or the split is impossible (see `grouped_split`, `stratified_split`).
    """
    if method == "random":
        return stratified_split(scans.label_ids, fraction, seed, scans.labels)
    if method != "grouped":
        raise DatasetError(f"unknown split {method!r}; choose one of: {', '.join(SPLITS)}.")
    groups = scan_groups(scans, progress)
    return grouped_split(scans.label_ids, groups, fraction, seed, scans.labels)
