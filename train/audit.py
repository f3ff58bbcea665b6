"""Dataset audit: counts, unreadable scans, exact and near duplicates, and the clean test subset.

A test folder that shares scans with its training folder overstates accuracy. The audit finds

- exact twins: files whose bytes are identical (sha256);
- near twins: files whose 256-bit perceptual hash (DCT hash, 16 x 16) of the preprocessed scan is
  within `near_threshold` bits of another's. Each scan goes through `tumorscan.images.load_pixels`
  at 64 x 64, the hash's own working size, so the audit sees the pixels every model sees.

Both are searched inside the audited folder ("duplicates": a file with an earlier copy in the same
folder, sorted order) and, with a reference folder, between the two ("twins"). The clean subset is
every readable scan of the audited folder without a twin in the reference folder.

The default threshold (12 bits of 256) was measured on the brain-tumor-MRI Testing and Training
folders: every pair at 12 bits or fewer that was inspected is the same slice (re-encoded, resized,
re-windowed or cropped); from 14 bits on, neighbouring slices of one patient start to appear.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import click
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tumorscan.errors import DatasetError, MissingDependencyError
from tumorscan.files import atomic_write_text
from tumorscan.folders import scan_dataset
from tumorscan.images import read_scan_file

AUDIT_VERSION = 1
HASH_SIZE = 16
"""Side of the perceptual hash: 16 x 16 = 256 bits."""
HASH_INPUT = (HASH_SIZE * 4, HASH_SIZE * 4)
"""Size the scan is preprocessed to before hashing: the DCT hash's own working size."""
HASH_NAME = f"phash-{HASH_SIZE * HASH_SIZE}bit-{HASH_INPUT[0]}px"
HASH_DESCRIPTION = (
    f"{HASH_SIZE * HASH_SIZE}-bit perceptual hash of the {HASH_INPUT[0]}x{HASH_INPUT[1]} preprocessed scan"
)
NEAR_THRESHOLD = 12
"""Largest Hamming distance (bits of 256) at which two scans count as near twins."""
AUDIT_FILE, SUMMARY_FILE, CLEAN_FILE = "audit.json", "audit.txt", "clean.txt"
_CHUNK = 1024


class Twin(NamedTuple):
    """`path` has a copy `other`; `distance` is the hash distance in bits (0 for identical bytes)."""

    path: str
    other: str
    distance: int = 0


class Unreadable(NamedTuple):
    """A scan that could not be decoded, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class AuditReport:
    """What an audit found. Paths are POSIX paths relative to `root` or `reference`.

    Attributes:
        root: the audited folder, as given.
        reference: the folder it was compared with (the training set), or None.
        near_threshold: Hamming distance limit for near copies; None when near copies were not searched.
        counts: scans per class in `root` (readable or not).
        reference_counts: scans per class in `reference`.
        unreadable: scans of `root` that failed to decode.
        reference_unreadable: scans of `reference` that failed to decode.
        exact_duplicates: files of `root` byte-identical to an earlier file of `root`.
        near_duplicates: other files of `root` within the threshold of an earlier file of `root`.
        exact_twins: files of `root` byte-identical to a file of `reference`.
        near_twins: other files of `root` within the threshold of a file of `reference` (the nearest).
        clean: readable files of `root` without a twin in `reference`, sorted.
    """

    root: str
    reference: str | None
    near_threshold: int | None
    counts: dict[str, int]
    reference_counts: dict[str, int] | None
    unreadable: tuple[Unreadable, ...]
    reference_unreadable: tuple[Unreadable, ...]
    exact_duplicates: tuple[Twin, ...]
    near_duplicates: tuple[Twin, ...]
    exact_twins: tuple[Twin, ...]
    near_twins: tuple[Twin, ...]
    clean: tuple[str, ...]

    @property
    def total(self) -> int:
        """Number of scans in `root`."""
        return sum(self.counts.values())

    def label_conflicts(self) -> list[tuple[str, Twin]]:
        """Copies filed under different classes, as ("within" or "reference", twin)."""
        scoped = [("within", twin) for twin in self.exact_duplicates + self.near_duplicates]
        scoped += [("reference", twin) for twin in self.exact_twins + self.near_twins]
        return [(scope, twin) for scope, twin in scoped if _label(twin.path) != _label(twin.other)]

    def summary_text(self) -> str:
        """A per-class table, label conflicts and unreadable files, as plain text."""
        lines = [f"Audit of {self.root} ({self.total} scans)"]
        if self.reference is not None:
            lines[0] += f" against {self.reference} ({sum((self.reference_counts or {}).values())} scans)"
        if self.near_threshold is None:
            lines.append("Near copies: not searched (exact copies only).")
        else:
            lines.append(f"Near copies: {HASH_DESCRIPTION}, Hamming distance <= {self.near_threshold}.")
        columns = {
            "scans": self.counts,
            "unreadable": _per_class(p for p, _ in self.unreadable),
            "exact dup": _per_class(t.path for t in self.exact_duplicates),
            "near dup": _per_class(t.path for t in self.near_duplicates),
        }
        if self.reference is not None:
            columns["exact twin"] = _per_class(t.path for t in self.exact_twins)
            columns["near twin"] = _per_class(t.path for t in self.near_twins)
            columns["clean"] = _per_class(self.clean)
        width = max([len("total"), *map(len, self.counts)])
        lines += ["", f"{'class':<{width}}" + "".join(f"{name:>12}" for name in columns)]
        for label in [*self.counts, "total"]:
            values = [
                sum(column.values()) if label == "total" else column.get(label, 0)
                for column in columns.values()
            ]
            lines.append(f"{label:<{width}}" + "".join(f"{value:>12}" for value in values))
        lines += [
            "",
            "dup: copy of an earlier file in the same folder; twin: copy of a file in the reference folder.",
        ]
        conflicts = self.label_conflicts()
        if conflicts:
            lines += ["", f"Copies filed under different classes ({len(conflicts)}):"]
            lines += [
                f"  {twin.path} ~ {twin.other} ({scope}, distance {twin.distance})"
                for scope, twin in conflicts
            ]
        for title, items in (
            ("Unreadable", self.unreadable),
            ("Unreadable in the reference", self.reference_unreadable),
        ):
            if items:
                lines += ["", f"{title} ({len(items)}):"] + [f"  {path}: {reason}" for path, reason in items]
        return "\n".join(lines) + "\n"

    def details_text(self) -> str:
        """Every duplicate and twin pair, one per line."""
        lines: list[str] = []
        for title, twins in (
            ("Exact duplicates within the folder", self.exact_duplicates),
            ("Near duplicates within the folder", self.near_duplicates),
            ("Exact twins in the reference", self.exact_twins),
            ("Near twins in the reference", self.near_twins),
        ):
            lines += (
                [f"{title} ({len(twins)}):"]
                + [f"  {t.path} ~ {t.other} ({t.distance})" for t in twins]
                + [""]
            )
        return "\n".join(lines)

    def to_json(self) -> str:
        """Serialise to an indented, key-sorted JSON document."""
        data: dict[str, Any] = {
            "version": AUDIT_VERSION,
            "hash": HASH_NAME,
            "root": self.root,
            "reference": self.reference,
            "near_threshold": self.near_threshold,
            "counts": self.counts,
            "reference_counts": self.reference_counts,
            "unreadable": [item._asdict() for item in self.unreadable],
            "reference_unreadable": [item._asdict() for item in self.reference_unreadable],
            "exact_duplicates": [twin._asdict() for twin in self.exact_duplicates],
            "near_duplicates": [twin._asdict() for twin in self.near_duplicates],
            "exact_twins": [twin._asdict() for twin in self.exact_twins],
            "near_twins": [twin._asdict() for twin in self.near_twins],
            "clean": list(self.clean),
        }
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "audit") -> AuditReport:
        """Parse a document written by `to_json`.

        Raises:
            DatasetError: the document is not a tumorscan audit.
        """
        try:
            data = json.loads(text)
            if data.get("version") != AUDIT_VERSION:
                raise ValueError(f"unknown audit version {data.get('version')!r}")
            return cls(
                root=str(data["root"]),
                reference=data["reference"],
                near_threshold=data["near_threshold"],
                counts={str(k): int(v) for k, v in data["counts"].items()},
                reference_counts=data["reference_counts"],
                unreadable=tuple(Unreadable(**item) for item in data["unreadable"]),
                reference_unreadable=tuple(Unreadable(**item) for item in data["reference_unreadable"]),
                exact_duplicates=tuple(Twin(**item) for item in data["exact_duplicates"]),
                near_duplicates=tuple(Twin(**item) for item in data["near_duplicates"]),
                exact_twins=tuple(Twin(**item) for item in data["exact_twins"]),
                near_twins=tuple(Twin(**item) for item in data["near_twins"]),
                clean=tuple(str(path) for path in data["clean"]),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DatasetError(f"{source}: not a tumorscan audit ({exc}); rerun tumor-audit.") from exc

    def write(self, out_dir: Path) -> list[Path]:
        """Write audit.json, audit.txt (summary, every pair) and, with a reference, clean.txt (a path a line).

        Returns:
            The files written.
        """
        files = {AUDIT_FILE: self.to_json(), SUMMARY_FILE: self.summary_text() + "\n" + self.details_text()}
        if self.reference is not None:
            files[CLEAN_FILE] = "".join(f"{path}\n" for path in self.clean)
        for name, text in files.items():
            atomic_write_text(out_dir / name, text)
        return [out_dir / name for name in files]


@dataclass(frozen=True)
class _Scan:
    name: str
    sha256: str
    error: str | None
    bits: NDArray[np.bool_] | None


def audit_dataset(
    root: Path,
    reference: Path | None = None,
    near_threshold: int | None = NEAR_THRESHOLD,
    progress: bool = True,
) -> AuditReport:
    """Audit a class-folder dataset, optionally against the folder it must not overlap (training).

    Every scan is decoded once through the shared preprocessing; unreadable scans are reported, never fatal.

    Args:
        root: the folder to audit (e.g. Testing).
        reference: the training folder to look for twins in; None audits `root` alone.
        near_threshold: Hamming distance (bits of 256) for near copies; None skips perceptual hashing,
            a quick check (counts, unreadable scans, exact duplicates) for the start of training.
        progress: show a progress bar on stderr.

    Raises:
        DatasetError: a folder is missing, has no class folders or an empty one, or both are the same.
        MissingDependencyError: near copies are searched and imagehash is not installed.
    """
    if near_threshold is not None and not 0 <= near_threshold < HASH_SIZE * HASH_SIZE:
        raise ValueError(
            f"near_threshold must be between 0 and {HASH_SIZE * HASH_SIZE - 1}, got {near_threshold}."
        )
    if reference is not None and reference.resolve() == root.resolve():
        raise DatasetError(
            f"{root}: the audited folder and the reference are the same folder; pass the training set."
        )
    hashing = near_threshold is not None
    scans = _read_folder(root, hashing, progress)
    references = _read_folder(reference, hashing, progress) if reference is not None else []
    readable = [scan for scan in scans if scan.error is None]
    exact_duplicates, near_duplicates = _duplicates(readable, near_threshold)
    exact_twins, near_twins = _twins(readable, [s for s in references if s.error is None], near_threshold)
    twinned = {twin.path for twin in exact_twins + near_twins}
    return AuditReport(
        root=str(root),
        reference=None if reference is None else str(reference),
        near_threshold=near_threshold,
        counts=_per_class(scan.name for scan in scans),
        reference_counts=_per_class(scan.name for scan in references) if reference is not None else None,
        unreadable=_unreadable(scans),
        reference_unreadable=_unreadable(references),
        exact_duplicates=exact_duplicates,
        near_duplicates=near_duplicates,
        exact_twins=exact_twins,
        near_twins=near_twins,
        clean=tuple(sorted(scan.name for scan in readable if scan.name not in twinned)),
    )


def load_audit(audit_json: Path) -> AuditReport:
    """Read an audit.json written by `AuditReport.write`.

    Raises:
        DatasetError: the file is missing or not an audit.
    """
    try:
        text = audit_json.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(
            f"{audit_json}: cannot read the audit ({exc.strerror}); create it with "
            f"tumor-audit TEST_DIR --reference TRAIN_DIR --out DIR."
        ) from exc
    return AuditReport.from_json(text, source=str(audit_json))


def load_clean_subset(audit_json: Path) -> frozenset[str]:
    """The clean subset of an audited test folder: relative POSIX paths of scans with no twin in training.

    Compare with `relative_name(path, test_root)` of each scan.

    Raises:
        DatasetError: the file is missing, not an audit, or the audit had no reference folder.
    """
    report = load_audit(audit_json)
    if report.reference is None:
        raise DatasetError(
            f"{audit_json}: this audit has no reference folder, so it defines no clean subset; "
            f"rerun tumor-audit with --reference TRAIN_DIR."
        )
    return frozenset(report.clean)


def relative_name(path: Path, root: Path) -> str:
    """How an audit names a scan: its POSIX path relative to the dataset folder."""
    return path.relative_to(root).as_posix()


def perceptual_hashes(root: Path, progress: bool = True) -> dict[str, tuple[str, NDArray[np.bool_]]]:
    """The sha256 and perceptual hash bits of every readable scan of a class-folder dataset, by name."""
    scans = _read_folder(root, True, progress)
    return {scan.name: (scan.sha256, scan.bits) for scan in scans if scan.bits is not None}


def hamming_distances(left: NDArray[np.bool_], right: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Bits that differ between every row of `left` and every row of `right` (hash bit matrices)."""
    a, b = left.astype(np.float32), right.astype(np.float32)
    differ: NDArray[np.float32] = a.sum(axis=1)[:, None] + b.sum(axis=1)[None, :] - 2 * (a @ b.T)
    return np.rint(differ).astype(np.int64)


def _read_folder(root: Path, hashing: bool, progress: bool) -> list[_Scan]:
    scans = scan_dataset(root)
    hasher = _perceptual_hasher() if hashing else None
    if not progress:
        return [_read_scan(root, scan.path, hasher) for scan in scans]
    with click.progressbar(scans, label=f"Auditing {root}", file=sys.stderr) as bar:
        return [_read_scan(root, scan.path, hasher) for scan in bar]


def _read_scan(root: Path, path: Path, hasher: Any) -> _Scan:
    name = relative_name(path, root)
    scan = read_scan_file(path, HASH_INPUT)
    if scan.pixels is None:
        return _Scan(name, scan.sha256, scan.error, None)
    bits = None if hasher is None else hasher(Image.fromarray(scan.pixels), hash_size=HASH_SIZE).hash.ravel()
    return _Scan(name, scan.sha256, None, bits)


def _perceptual_hasher() -> Any:
    try:
        import imagehash
    except ImportError as exc:
        raise MissingDependencyError("imagehash", "train", "Finding near-duplicate scans") from exc
    return imagehash.phash


def _duplicates(scans: list[_Scan], threshold: int | None) -> tuple[tuple[Twin, ...], tuple[Twin, ...]]:
    """Files with an earlier exact copy, and other files with an earlier near copy, in one folder."""
    first: dict[str, str] = {}
    exact: list[Twin] = []
    for scan in scans:
        if scan.sha256 in first:
            exact.append(Twin(scan.name, first[scan.sha256]))
        else:
            first[scan.sha256] = scan.name
    if threshold is None:
        return tuple(exact), ()
    copies = {twin.path for twin in exact}
    shas = np.array([scan.sha256 for scan in scans])
    near: list[Twin] = []
    for start, distances in _distance_chunks(scans, scans):
        for row, scan_distances in enumerate(distances):
            index = start + row
            if scans[index].name in copies:
                continue
            earlier = scan_distances[:index].astype(np.float64)
            earlier[shas[:index] == shas[index]] = np.inf
            if index and earlier.min() <= threshold:
                other = int(earlier.argmin())
                near.append(Twin(scans[index].name, scans[other].name, int(earlier[other])))
    return tuple(exact), tuple(near)


def _twins(
    scans: list[_Scan], references: list[_Scan], threshold: int | None
) -> tuple[tuple[Twin, ...], tuple[Twin, ...]]:
    """Files with an exact copy in the reference, and other files with a near copy there (the nearest)."""
    if not references:
        return (), ()
    first: dict[str, str] = {}
    for reference in references:
        first.setdefault(reference.sha256, reference.name)
    exact = tuple(Twin(scan.name, first[scan.sha256]) for scan in scans if scan.sha256 in first)
    if threshold is None:
        return exact, ()
    copies = {twin.path for twin in exact}
    near: list[Twin] = []
    for start, distances in _distance_chunks(scans, references):
        for row, scan_distances in enumerate(distances):
            other = int(scan_distances.argmin())
            if scans[start + row].name not in copies and scan_distances[other] <= threshold:
                near.append(Twin(scans[start + row].name, references[other].name, int(scan_distances[other])))
    return exact, tuple(near)


def _distance_chunks(rows: list[_Scan], columns: list[_Scan]) -> Iterator[tuple[int, NDArray[np.int64]]]:
    """Hamming distances between hashes, a block of rows at a time: (first row, rows x columns)."""
    right = _bit_matrix(columns)
    left_all = _bit_matrix(rows)
    for start in range(0, len(rows), _CHUNK):
        yield start, hamming_distances(left_all[start : start + _CHUNK], right)


def _bit_matrix(scans: list[_Scan]) -> NDArray[np.bool_]:
    return np.array([scan.bits for scan in scans], dtype=bool).reshape(len(scans), HASH_SIZE * HASH_SIZE)


def _unreadable(scans: list[_Scan]) -> tuple[Unreadable, ...]:
    return tuple(Unreadable(scan.name, scan.error) for scan in scans if scan.error is not None)


def _label(name: str) -> str:
    return name.split("/", 1)[0]


def _per_class(names: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[_label(name)] = counts.get(_label(name), 0) + 1
    return dict(sorted(counts.items()))
