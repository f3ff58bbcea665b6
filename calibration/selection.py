"""Choosing the calibration scans: deterministic, stratified by folder, decoded once, recorded in a manifest.

Quantization needs images, not labels, so any folder of scans calibrates: class folders, a flat
folder, or folders nested to any depth; folder names need not match the model's labels.

Selection rules, in order:

1. Every scan under the folder (hidden ones aside) is listed recursively, sorted by path, into a group: the
   top-level sub-folder it lies in (usually its class), or "." for scans directly in the folder;
   scans in `exclude` are dropped. A folder holding dataset splits (Training/Testing) is refused.
   When there are more groups than `count`, every scan goes into the one group ".".
2. Each group (a "class" below) gets a quota by largest-remainder apportionment of `count` in
   proportion to its number of scans, with a floor of one scan per class: every class first gets
   max(1, floor(share)); leftover places go to the largest fractional remainders (ties: class
   order), and places over `count` (from the floor of one) are taken back from the smallest
   remainders among classes holding more than one. When `count` reaches the number of scans, every
   scan is used.
3. One `numpy.random.default_rng(seed)` shuffles each class's sorted list, classes in sorted order; a
   class's scans are decoded in that order until its quota is met, so a scan that fails to decode, or
   whose bytes equal a scan already chosen, is named, skipped and replaced by the next one of its class.
4. Entries are kept sorted by class, then path, whatever the shuffle.

Pixels come from `tumorscan.images.load_pixels` at the model's input size and stay in memory (a few
hundred 224 x 224 scans take about 45 MB), so every quantizer sees exactly the same calibration data.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
from numpy.typing import NDArray

from tumorscan.errors import DatasetError
from tumorscan.files import atomic_write_text
from tumorscan.folders import list_scans, refuse_split_root, sub_folders
from tumorscan.images import SCAN_EXTENSIONS, read_scan_file
from tumorscan.sections import CalibrationSpec

MANIFEST_FORMAT = "tumorscan-calibration"
MANIFEST_VERSION = 1
MIN_RECOMMENDED = 100
"""Fewer calibration scans than this give noisy activation ranges; a warning says so."""


class CalibrationWarning(UserWarning):
    """The calibration set is usable but smaller or less balanced than asked for."""


@dataclass(frozen=True)
class CalibrationEntry:
    """One calibration scan: its path relative to the folder, the sha256 of its bytes, its group (rule 1)."""

    path: str
    sha256: str
    label: str


@dataclass(frozen=True)
class CalibrationSet:
    """The chosen calibration scans with their pixels, decoded once through the shared preprocessing.

    Attributes:
        root: the dataset folder (absolute).
        size: (height, width) the pixels were prepared at.
        seed: the selection seed.
        requested: how many scans were asked for.
        entries: the scans used, sorted by class then path; row i of the pixels belongs to entries[i].
        skipped: (relative path, reason) of scans passed over (unreadable or duplicate bytes).
        warnings: what makes this set weaker than asked for (also issued as CalibrationWarning).
    """

    root: Path
    size: tuple[int, int]
    seed: int
    requested: int
    entries: tuple[CalibrationEntry, ...]
    skipped: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...]
    _pixels: NDArray[np.uint8] = field(repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def paths(self) -> tuple[Path, ...]:
        """Absolute paths of the scans used, in entry order (to keep them out of parity data)."""
        return tuple(self.root / entry.path for entry in self.entries)

    def label_counts(self) -> dict[str, int]:
        """Scans used per group (top-level sub-folder, "." for the folder itself)."""
        counts: dict[str, int] = {}
        for entry in self.entries:
            counts[entry.label] = counts.get(entry.label, 0) + 1
        return counts

    def iter_pixels(self) -> Iterator[NDArray[np.uint8]]:
        """Each scan's H x W x 3 uint8 RGB pixels in entry order (read-only views of the one decoded copy)."""
        yield from self._pixels

    def manifest(self) -> dict[str, Any]:
        """What defines this calibration data, as a JSON-ready dict with only portable content."""
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "size": list(self.size),
            "seed": self.seed,
            "requested": self.requested,
            "labels": self.label_counts(),
            "entries": [{"path": e.path, "sha256": e.sha256, "label": e.label} for e in self.entries],
        }

    @property
    def manifest_sha256(self) -> str:
        """sha256 of the canonical (key-sorted, compact, UTF-8) JSON of `manifest()`."""
        canonical = json.dumps(self.manifest(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def describe(self) -> CalibrationSpec:
        """The spec's `calibration` section: count, classes, seed, size, skipped, manifest hash and folder."""
        return CalibrationSpec(
            count=len(self.entries),
            labels=self.label_counts(),
            seed=self.seed,
            size=self.size,
            skipped=len(self.skipped),
            manifest_sha256=self.manifest_sha256,
            folder=self.root.name,
        )

    def write_manifest(self, path: Path) -> None:
        """Write the manifest, its hash and the skipped scans as indented JSON, atomically."""
        document = {
            **self.manifest(),
            "manifest_sha256": self.manifest_sha256,
            "skipped": [{"path": name, "reason": reason} for name, reason in self.skipped],
        }
        atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def select_calibration(
    root: Path,
    size: tuple[int, int],
    count: int = 300,
    seed: int = 0,
    exclude: Iterable[Path] = (),
    progress: bool = True,
) -> CalibrationSet:
    """Choose and decode a stratified, seeded calibration set from any folder of scans.

    Args:
        root: a folder of scans: class folders (usually the training set), flat or nested.
        size: (height, width) of the model input.
        count: how many scans to use.
        seed: selection seed; the same seed and files give the same selection.
        exclude: scans never to use (e.g. those a parity check or evaluation will use).
        progress: show a progress bar on stderr while decoding.

    Raises:
        DatasetError: the folder is missing, holds no scans or holds dataset splits, or no scan decodes.
    """
    root = root.resolve()
    candidates = _candidates(root, exclude, count)
    quotas = stratified_quotas({label: len(files) for label, files in candidates.items()}, count)
    notes = _availability_notes(root, candidates, count)
    chosen, skipped, shortfalls = _decode(root, size, candidates, quotas, seed, progress)
    notes += shortfalls + _quality_notes(root, chosen, skipped)
    for note in notes:
        warnings.warn(note, CalibrationWarning, stacklevel=2)

    entries, pixels = _sorted_entries(chosen)
    return CalibrationSet(
        root=root,
        size=(int(size[0]), int(size[1])),
        seed=seed,
        requested=count,
        entries=entries,
        skipped=tuple(skipped),
        warnings=tuple(notes),
        _pixels=pixels,
    )


def _candidates(root: Path, exclude: Iterable[Path], count: int) -> dict[str, list[Path]]:
    """The scans to choose from by group (rule 1), the excluded ones dropped.

    Raises:
        DatasetError: every scan is excluded (or `scan_groups` refuses the folder).
    """
    excluded = {Path(path).resolve() for path in exclude}
    candidates = {
        group: kept
        for group, files in scan_groups(root).items()
        if (kept := [path for path in files if path.resolve() not in excluded])
    }
    if not candidates:
        raise DatasetError(f"{root}: every scan is excluded; nothing is left to calibrate on.")
    if count < len(candidates):
        candidates = {".": sorted(path for files in candidates.values() for path in files)}
    return candidates


def _availability_notes(root: Path, candidates: dict[str, list[Path]], count: int) -> list[str]:
    """A note when the folder holds fewer scans than asked for."""
    notes: list[str] = []
    available = sum(len(files) for files in candidates.values())
    if count > available:
        notes.append(
            f"asked for {count} calibration scans but {root} has only {available}; using all of them."
        )
    return notes


_Chosen = list[tuple[CalibrationEntry, NDArray[np.uint8]]]


def _decode(
    root: Path,
    size: tuple[int, int],
    candidates: dict[str, list[Path]],
    quotas: dict[str, int],
    seed: int,
    progress: bool,
) -> tuple[_Chosen, list[tuple[str, str]], list[str]]:
    """Shuffle each class with the seed and decode its scans until its quota is met (rule 3).

    Returns:
        The chosen entries with their pixels, the skipped scans (name, reason), and a note per class
        that fell short of its quota.
    """
    rng = np.random.default_rng(seed)
    chosen: _Chosen = []
    skipped: list[tuple[str, str]] = []
    notes: list[str] = []
    with _progress(sum(quotas.values()), f"Decoding calibration scans from {root}", progress) as advance:
        for label in sorted(candidates):
            files = [candidates[label][int(index)] for index in rng.permutation(len(candidates[label]))]
            taken = _take(label, files, quotas[label], root, size, chosen, skipped, advance)
            if taken < quotas[label]:
                notes.append(
                    f"folder {label}: only {taken} of {quotas[label]} scans are readable and distinct."
                )
    return chosen, skipped, notes


def _quality_notes(root: Path, chosen: _Chosen, skipped: list[tuple[str, str]]) -> list[str]:
    """Notes on replaced scans and on a set too small for good ranges.

    Raises:
        DatasetError: no scan could be decoded.
    """
    notes: list[str] = []
    if not chosen:
        raise DatasetError(
            f"{root}: none of the scans tried could be decoded; first problem: {skipped[0][1]}"
        )
    if skipped:
        notes.append(
            f"{len(skipped)} scans were unreadable or duplicates and were replaced where possible: "
            + "; ".join(name for name, _ in skipped)
        )
    if len(chosen) < MIN_RECOMMENDED:
        notes.append(
            f"only {len(chosen)} calibration scans (at least {MIN_RECOMMENDED} recommended); "
            f"int8 activation ranges may be poor."
        )
    return notes


def _sorted_entries(chosen: _Chosen) -> tuple[tuple[CalibrationEntry, ...], NDArray[np.uint8]]:
    """The entries sorted by class, then path (rule 4), and their pixels stacked read-only in that order."""
    chosen.sort(key=lambda item: (item[0].label, item[0].path))
    pixels = np.stack([array for _, array in chosen])
    pixels.flags.writeable = False
    return tuple(entry for entry, _ in chosen), pixels


def scan_groups(root: Path) -> dict[str, list[Path]]:
    """Every scan under `root` by group (rule 1), each group sorted by path.

    Raises:
        DatasetError: the folder is missing, holds dataset splits or holds no scans.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder; pass a folder of scans (e.g. the training set).")
    refuse_split_root(root)
    groups: dict[str, list[Path]] = {}
    # Each top folder is listed from its own path, so that a linked class folder is followed too.
    tops = [(".", list_scans(root, recursive=False))] + [
        (name, list_scans(root / name)) for name in sub_folders(root)
    ]
    for group, paths in tops:
        for path in paths:
            if any(part.startswith(".") for part in path.relative_to(root).parts):
                continue  # hidden files and folders (caches, editor copies)
            groups.setdefault(group, []).append(path)
    if not groups:
        raise DatasetError(f"{root}: holds no scans (accepted: {', '.join(SCAN_EXTENSIONS)}).")
    return dict(sorted(groups.items()))


def _take(
    label: str,
    files: list[Path],
    quota: int,
    root: Path,
    size: tuple[int, int],
    chosen: _Chosen,
    skipped: list[tuple[str, str]],
    advance: Callable[[int], None],
) -> int:
    """Decode `files` of class `label` into `chosen` until `quota` are taken; note the rest in `skipped`.

    Returns:
        How many were taken.
    """
    seen = {entry.sha256: entry.path for entry, _ in chosen}
    taken = 0
    for path in files:
        if taken == quota:
            break
        name = path.relative_to(root).as_posix()
        scan = read_scan_file(path, size)
        if scan.pixels is None:
            skipped.append((name, str(scan.error)))
            continue
        if scan.sha256 in seen:
            skipped.append((name, f"same bytes as {seen[scan.sha256]}, already chosen."))
            continue
        chosen.append((CalibrationEntry(name, scan.sha256, label), scan.pixels))
        seen[scan.sha256] = name
        taken += 1
        advance(1)
    return taken


def stratified_quotas(sizes: dict[str, int], count: int) -> dict[str, int]:
    """How many scans each class contributes to `count` (see the module's rule 2).

    Args:
        sizes: number of available scans per class (each at least one).
        count: total wanted, at least the number of classes.
    """
    total = sum(sizes.values())
    if count >= total:
        return dict(sizes)
    labels = sorted(sizes)
    ideal = {label: count * sizes[label] / total for label in labels}
    quotas = {label: max(1, math.floor(ideal[label])) for label in labels}
    while sum(quotas.values()) < count:
        quotas[max(labels, key=lambda label: ideal[label] - quotas[label])] += 1
    while sum(quotas.values()) > count:
        shrinkable = [label for label in labels if quotas[label] > 1]
        quotas[min(shrinkable, key=lambda label: ideal[label] - quotas[label])] -= 1
    return quotas


@contextmanager
def _progress(length: int, label: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda steps: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update
