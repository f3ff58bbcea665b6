"""A new site's labelled scans: decoded once, grouped by near copies, split into grouped folds.

Neighbouring MRI slices of one patient and re-encoded copies are near-identical; a fold that holds one
and not the other leaks the answer. Scans are grouped by the audit's perceptual-hash rule (Hamming
distance at most `NEAR_THRESHOLD` bits, joined transitively), and whole groups go into folds, balanced by
class (scikit-learn's `StratifiedGroupKFold`). Site scans with a copy in the model's training folder are
named too: adaptation may use them, but the held-out metrics that matter leave them out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tumorscan.errors import SiteError
from tumorscan.folders import class_folders
from tumorscan.train.audit import NEAR_THRESHOLD, hamming_distances, perceptual_hashes
from tumorscan.train.data import CachedScans, load_dataset
from tumorscan.train.splits import near_copy_groups

MIN_FOLD_SCANS = 10
"""Fewest scans a held-out fold may have."""


def load_site(
    folder: Path, labels: tuple[str, ...], size: tuple[int, int], cache: Path, progress: bool = True
) -> CachedScans:
    """Decode a labelled site folder (one sub-folder per class, a subset of the model's classes).

    Raises:
        SiteError: missing folder, classes the model does not know, one class only, or nothing readable.
    """
    if not folder.is_dir():
        raise SiteError(
            f"{folder}: no such folder; pass the site's labelled scans, one sub-folder per class."
        )
    found = class_folders(folder)
    unknown = [name for name in found if name not in labels]
    if unknown:
        raise SiteError(
            f"{folder}: class folders {unknown} are not classes of the model ({', '.join(labels)}); "
            "rename them or leave those scans out."
        )
    if len(found) < 2:
        raise SiteError(
            f"{folder}: holds one class only ({found[0]}); adaptation needs labelled scans of at least two "
            "classes, or it learns to answer that class for everything."
        )
    scans = load_dataset(folder, size, cache, labels=labels, progress=progress)
    if not len(scans):
        raise SiteError(f"{folder}: none of its scans could be read.")
    return scans


def site_groups(
    scans: CachedScans, training: Path | None, progress: bool = True
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Near-copy groups of the site's scans, and which scans have a near or exact copy in `training`."""
    hashes = perceptual_hashes(scans.root, progress)
    bits = np.stack([hashes[name][1] for name in scans.relative_paths()])
    groups = near_copy_groups(bits)
    twins = np.zeros(len(bits), dtype=bool)
    if training is not None:
        reference = perceptual_hashes(training, progress).values()
        shas = {sha for sha, _ in reference}
        nearest = hamming_distances(bits, np.stack([b for _, b in reference])).min(axis=1)
        twins = (nearest <= NEAR_THRESHOLD) | np.array([sha in shas for sha in scans.sha256])
    return groups, twins


def grouped_folds(
    label_ids: NDArray[np.int32], groups: NDArray[np.int64], folds: int, seed: int
) -> NDArray[np.int64]:
    """The fold of every scan: whole groups per fold, classes balanced across folds.

    Raises:
        SiteError: too few scans or groups for `folds` folds of at least `MIN_FOLD_SCANS` scans.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if len(label_ids) < folds * MIN_FOLD_SCANS:
        raise SiteError(
            f"{len(label_ids)} readable site scans are too few for {folds} folds of at least "
            f"{MIN_FOLD_SCANS}; label more scans or pass a smaller --folds."
        )
    if len(np.unique(groups)) < folds:
        raise SiteError(
            f"the site's scans form only {len(np.unique(groups))} groups of near copies, fewer than "
            f"{folds} folds; label scans of more patients or pass a smaller --folds."
        )
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_of = np.full(len(label_ids), -1, dtype=np.int64)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(label_ids)), label_ids, groups)):
        fold_of[held_out] = fold
    smallest = int(np.bincount(fold_of, minlength=folds).min())
    if smallest < MIN_FOLD_SCANS:
        raise SiteError(
            f"a fold of near-copy groups holds only {smallest} scans (at least {MIN_FOLD_SCANS} needed); "
            "label more scans or pass a smaller --folds."
        )
    return fold_of
