"""Training data: class-folder scans decoded once into an on-disk pixel cache, split, streamed by tf.data.

Each scan is decoded by `tumorscan.images.load_pixels` (the runtime's one preprocessing path) exactly
once per model size, into a uint8 `.npy` memory map of N x H x W x 3 beside an `index.json` that
records every file's relative path, label, size, modification time and sha256. The cache is reused
while those keys match and rebuilt (decoding only new or changed files) when they do not. The pixels
file is named after a digest of the index's rows and written before the index that names it, so an
index never pairs with another run's pixels, even after a crash or beside a concurrent run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import PIL
from numpy.typing import NDArray

import tumorscan
from tumorscan.errors import DatasetError
from tumorscan.files import atomic_write_text
from tumorscan.folders import LabelledScan, class_folders, scan_dataset
from tumorscan.images import read_scan_file

CACHE_VERSION = 3
INDEX_NAME = "index.json"
PIXELS_PREFIX = "pixels-"
DECODE_THREADS = 4


@dataclass(frozen=True)
class CachedScans:
    """The readable scans of a class-folder dataset, with their pixels at one model size.

    Attributes:
        root: the dataset folder.
        labels: class order; `label_ids` index into it.
        paths: one path per row of `pixels`.
        label_ids: class index of each row.
        pixels: N x H x W x 3 uint8 (a read-only memory map when cached on disk).
        sha256: hex digest of each row's file.
        unreadable: (path, reason) of every scan that could not be decoded; they have no row.
        reused: how many scans came from an existing cache instead of being decoded.
    """

    root: Path
    labels: tuple[str, ...]
    paths: tuple[Path, ...]
    label_ids: NDArray[np.int32]
    pixels: NDArray[np.uint8]
    sha256: tuple[str, ...]
    unreadable: tuple[tuple[Path, str], ...]
    reused: int = 0

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the cached pixels."""
        return (int(self.pixels.shape[1]), int(self.pixels.shape[2]))

    def relative_paths(self) -> list[str]:
        """Each row's path relative to `root`, with forward slashes."""
        return [path.relative_to(self.root).as_posix() for path in self.paths]

    def rows_in(self, relative_paths: Collection[str]) -> NDArray[np.int64]:
        """Indices of the rows whose relative path (as in `relative_paths()`) is in `relative_paths`."""
        wanted = set(relative_paths)
        return np.array([i for i, name in enumerate(self.relative_paths()) if name in wanted], dtype=np.int64)

    def counts(self, indices: NDArray[np.int64] | None = None) -> dict[str, int]:
        """Scans per class (of all rows, or of the rows in `indices`)."""
        ids = self.label_ids if indices is None else self.label_ids[indices]
        found = np.bincount(ids, minlength=len(self.labels))
        return {label: int(found[i]) for i, label in enumerate(self.labels)}

    def fingerprint(self) -> str:
        """sha256 over the sorted (relative path, label, file sha256) of every row: the dataset's identity."""
        digest = hashlib.sha256()
        for relative, label_id, sha in sorted(
            zip(self.relative_paths(), self.label_ids, self.sha256, strict=True)
        ):
            digest.update(f"{relative}\t{self.labels[label_id]}\t{sha}\n".encode())
        return digest.hexdigest()


def default_cache_dir(out: Path) -> Path:
    """The cache shared by runs beside `out`: `<out>/../.cache`."""
    return out.resolve().parent / ".cache"


def cache_folder(cache_dir: Path, root: Path, size: tuple[int, int]) -> Path:
    """Where the pixels of dataset `root` at `size` are cached: one folder per (dataset, size)."""
    resolved = str(root.resolve())
    tag = hashlib.sha256(resolved.encode("utf-8")).hexdigest()[:12]
    return cache_dir / f"{root.resolve().name}-{tag}-{size[0]}x{size[1]}"


def load_dataset(
    root: Path,
    size: tuple[int, int],
    cache_dir: Path | None = None,
    labels: Sequence[str] | None = None,
    progress: bool = True,
) -> CachedScans:
    """Decode (or reuse from the cache) every scan of a class-folder dataset at `size`.

    Args:
        root: folder with one sub-folder per class.
        size: (height, width) of the model input.
        cache_dir: folder for on-disk caches; None decodes into memory without caching.
        labels: fixed class order (a model's labels); None uses the sorted class folder names.
        progress: show a progress bar on stderr while decoding.

    Raises:
        DatasetError: missing or empty folders, unknown classes, or no readable scan at all.
    """
    class_order = tuple(labels) if labels is not None else tuple(class_folders(root))
    scans = scan_dataset(root, class_order if labels is not None else None)
    keys = [_file_key(root, scan) for scan in scans]
    folder = cache_folder(cache_dir, root, size) if cache_dir is not None else None
    previous = _read_index(folder, size) if folder is not None else None
    if previous is not None and previous["entries"] == keys:
        pixels = np.load(folder / previous["pixels"], mmap_mode="r")
        return _assemble(root, class_order, scans, previous["results"], pixels, reused=len(scans))
    results, pixels, reused = _decode_all(root, scans, keys, size, folder, previous, progress)
    if folder is not None:
        index = {
            "version": CACHE_VERSION,
            "decoder": _decoder_versions(),
            "size": list(size),
            "pixels": _pixels_name(keys, results),
            "entries": keys,
            "results": results,
        }
        atomic_write_text(folder / INDEX_NAME, json.dumps(index, indent=1, sort_keys=True))
        if previous is not None and previous["pixels"] != index["pixels"]:
            (folder / previous["pixels"]).unlink(missing_ok=True)
    return _assemble(root, class_order, scans, results, pixels, reused)


def _pixels_name(keys: list[dict[str, Any]], results: list[dict[str, Any]]) -> str:
    """The pixels file of an index: named after its rows, so that the index can only name its own pixels."""
    rows = json.dumps([keys, results], sort_keys=True).encode("utf-8")
    return f"{PIXELS_PREFIX}{hashlib.sha256(rows).hexdigest()[:16]}.npy"


def _decoder_versions() -> dict[str, str]:
    return {"tumorscan": tumorscan.__version__, "pillow": PIL.__version__}


def _file_key(root: Path, scan: LabelledScan) -> dict[str, Any]:
    stat = scan.path.stat()
    return {
        "path": scan.path.relative_to(root).as_posix(),
        "label": scan.label,
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }


def _read_index(folder: Path, size: tuple[int, int]) -> dict[str, Any] | None:
    """The cache's index when it was written by this version for this size and its pixels exist."""
    try:
        index = json.loads((folder / INDEX_NAME).read_text(encoding="utf-8"))
        pixels = np.load(folder / index["pixels"], mmap_mode="r")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    valid = (
        index.get("version") == CACHE_VERSION
        and index.get("decoder") == _decoder_versions()
        and tuple(index.get("size", ())) == size
        and pixels.shape[1:] == (*size, 3)
    )
    return index if valid else None


def _decode_one(path: Path, size: tuple[int, int]) -> tuple[NDArray[np.uint8] | None, str, str | None]:
    """(pixels or None, sha256 of the file, error message or None)."""
    scan = read_scan_file(path, size)
    return scan.pixels, scan.sha256, scan.error


def _decode_all(
    root: Path,
    scans: list[LabelledScan],
    keys: list[dict[str, Any]],
    size: tuple[int, int],
    folder: Path | None,
    previous: dict[str, Any] | None,
    progress: bool,
) -> tuple[list[dict[str, Any]], NDArray[np.uint8], int]:
    """Decode the scans whose key is not in `previous` and copy the others' rows from the old cache.

    Returns:
        (one result per scan: sha256, error, row), the pixels (a fresh cache or an in-memory array),
        and how many scans were reused.
    """
    known: dict[tuple[Any, ...], dict[str, Any]] = {}
    old_pixels: NDArray[np.uint8] | None = None
    if previous is not None and folder is not None:
        old_pixels = np.load(folder / previous["pixels"], mmap_mode="r")
        entries = zip(previous["entries"], previous["results"], strict=True)
        known = {tuple(sorted(key.items())): result for key, result in entries}
    todo = [i for i, key in enumerate(keys) if tuple(sorted(key.items())) not in known]
    label = f"Decoding {root.name} at {size[0]}x{size[1]}"
    decoded = dict(
        zip(todo, _decode_in_threads([scans[i].path for i in todo], size, progress, label), strict=True)
    )
    shape = (len(scans), *size, 3)
    partial: Path | None = None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{PIXELS_PREFIX}{os.getpid()}.partial"
        pixels: NDArray[np.uint8] = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
    else:
        pixels = np.zeros(shape, dtype=np.uint8)
    results: list[dict[str, Any]] = []
    row = 0
    for position, key in enumerate(keys):
        if position in decoded:
            array, sha, error = decoded[position]
        else:
            old = known[tuple(sorted(key.items()))]
            array = None if old["row"] is None else old_pixels[old["row"]]  # type: ignore[index]
            sha, error = old["sha256"], old["error"]
        results.append({"sha256": sha, "error": error, "row": None if array is None else row})
        if array is not None:
            pixels[row] = array
            row += 1
    if partial is not None and folder is not None:
        pixels.flush()  # type: ignore[attr-defined]
        del pixels
        name = _pixels_name(keys, results)
        os.replace(partial, folder / name)
        pixels = np.load(folder / name, mmap_mode="r")
    return results, pixels, len(scans) - len(todo)


def _decode_in_threads(
    paths: list[Path], size: tuple[int, int], progress: bool, label: str
) -> list[tuple[NDArray[np.uint8] | None, str, str | None]]:
    """Decode files in order with a few threads (Pillow releases the GIL while decoding and resizing)."""
    if not paths:
        return []
    threads = max(1, min(DECODE_THREADS, os.cpu_count() or 1))
    with ThreadPoolExecutor(threads) as pool:
        results: Iterator[tuple[NDArray[np.uint8] | None, str, str | None]] = pool.map(
            lambda path: _decode_one(path, size), paths
        )
        if not progress:
            return list(results)
        with click.progressbar(results, length=len(paths), label=label, file=sys.stderr) as bar:
            return list(bar)


def _assemble(
    root: Path,
    labels: tuple[str, ...],
    scans: list[LabelledScan],
    results: list[dict[str, Any]],
    pixels: NDArray[np.uint8],
    reused: int,
) -> CachedScans:
    readable = [
        (scan, result) for scan, result in zip(scans, results, strict=True) if result["row"] is not None
    ]
    unreadable = tuple(
        (scan.path, str(result["error"]))
        for scan, result in zip(scans, results, strict=True)
        if result["row"] is None
    )
    if not readable:
        raise DatasetError(
            f"{root}: none of its {len(scans)} scans could be read; first problem: {unreadable[0][1]}"
        )
    rows = [int(result["row"]) for _, result in readable]
    if rows != list(range(len(rows))):
        raise DatasetError(
            f"{root}: the pixel cache index is inconsistent; delete the cache folder and rerun."
        )
    return CachedScans(
        root=root,
        labels=labels,
        paths=tuple(scan.path for scan, _ in readable),
        label_ids=np.array([labels.index(scan.label) for scan, _ in readable], dtype=np.int32),
        pixels=pixels[: len(rows)],
        sha256=tuple(str(result["sha256"]) for _, result in readable),
        unreadable=unreadable,
        reused=reused,
    )


def stratified_split(
    label_ids: NDArray[np.int32], fraction: float, seed: int, labels: Sequence[str] | None = None
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Split row indices into (train, validation), taking `fraction` of each class for validation.

    Every class keeps at least one scan on each side. The split depends only on the labels and `seed`;
    `labels` (class names) only serve error messages.

    Raises:
        DatasetError: `fraction` is outside (0, 1) or a class has fewer than two scans.
    """
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"the validation fraction must be between 0 and 1, got {fraction}.")
    rng = np.random.default_rng(seed)
    train: list[int] = []
    validation: list[int] = []
    for class_id in np.unique(label_ids):
        members = rng.permutation(np.flatnonzero(label_ids == class_id))
        if len(members) < 2:
            name = labels[class_id] if labels is not None else f"#{class_id}"
            raise DatasetError(
                f"class {name} has {len(members)} readable scan; at least 2 are needed for validation."
            )
        count = min(max(1, round(len(members) * fraction)), len(members) - 1)
        validation.extend(members[:count].tolist())
        train.extend(members[count:].tolist())
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(validation), dtype=np.int64)


def make_dataset(
    scans: CachedScans,
    indices: NDArray[np.int64],
    batch_size: int,
    shuffle_seed: int | None = None,
    augment: Any = None,
    shard: tuple[int, int] | None = None,
) -> Any:
    """A tf.data pipeline over rows `indices` of `scans`: (pixels, label id) batches, prefetched.

    Rows are gathered from the memory map batch by batch. Without `augment` the pixels stay uint8,
    byte for byte what `load_pixels` returns; with it they are float32 in 0-255.

    Args:
        scans: the cached dataset.
        indices: rows to serve.
        batch_size: scans per batch (global batch size under a distribution strategy).
        shuffle_seed: shuffle rows each epoch with this seed; None keeps their order.
        augment: a function mapping a float32 batch to an augmented batch (see `tumorscan.train.augment`).
        shard: (index, count): serve only slice `index` of `count` of every batch (one worker's part of a
            global batch under several workers); only those rows are read.
    """
    import tensorflow as tf

    pixels, label_ids = scans.pixels, scans.label_ids
    height, width = scans.size

    def gather(batch: NDArray[np.int64]) -> tuple[NDArray[np.uint8], NDArray[np.int32]]:
        if shard is not None:
            index, count = shard
            batch = batch[len(batch) * index // count : len(batch) * (index + 1) // count]
        return np.asarray(pixels[batch]), label_ids[batch]

    def load(batch: Any) -> tuple[Any, Any]:
        images, labels = tf.numpy_function(gather, [batch], (tf.uint8, tf.int32), stateful=False)
        return tf.ensure_shape(images, (None, height, width, 3)), tf.ensure_shape(labels, (None,))

    dataset = tf.data.Dataset.from_tensor_slices(np.asarray(indices, dtype=np.int64))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(indices), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        dataset = dataset.map(
            lambda images, labels: (augment(tf.cast(images, tf.float32)), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
