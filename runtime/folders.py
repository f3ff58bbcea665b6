"""Finding scans on disk: class-folder datasets and loose files, always in sorted order."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import DatasetError, ImageError, LinkLoopError, UnreadableFileError
from .images import SCAN_EXTENSIONS, describe_source, is_dicom_file, is_scan_file

MAX_DEPTH = 64
"""Deepest folder a walk descends into."""

SPLIT_ROLES = {
    "train": "training",
    "training": "training",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "testing",
    "testing": "testing",
}
"""Sub-folder names (lower case) that mark a dataset root holding splits, and what each split is for."""


@dataclass(frozen=True)
class LabelledScan:
    """One scan of a class-folder dataset."""

    path: Path
    label: str


def list_scans(folder: Path, recursive: bool = True) -> list[Path]:
    """All files with a scan extension under `folder`, sorted by path."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and is_scan_file(p))


def sub_folders(root: Path) -> list[str]:
    """The names of `root`'s visible sub-folders, sorted."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def refuse_split_root(root: Path) -> None:
    """Refuse a dataset root whose sub-folders are its splits (Training/Testing, train/val/test).

    Raises:
        DatasetError: every sub-folder is named like a split (case-insensitive); the message names them.
    """
    names = sub_folders(root)
    if names and all(name.lower() in SPLIT_ROLES for name in names):
        splits = ", ".join(f"{root / name} ({SPLIT_ROLES[name.lower()]})" for name in names)
        raise DatasetError(
            f"{root}: its sub-folders are dataset splits, not classes; "
            f"pass the split to use instead: {splits}."
        )


def refuse_split_roots(*folders: Path | None) -> None:
    """`refuse_split_root` for each given folder that exists (to check options before slow work)."""
    for folder in folders:
        if folder is not None and folder.is_dir():
            refuse_split_root(folder)


@dataclass(frozen=True)
class Skipped:
    """A folder entry a walk could not descend into, and why (it gets its own error record)."""

    path: Path
    error: ImageError


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """True for a folder or a link to one; False for a dangling link, a link loop or any other file."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _walk(folder: Path, chain: frozenset[str], depth: int) -> list[Path | Skipped]:
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as exc:
        message = f"{describe_source(folder)}: cannot list the folder ({exc.strerror})."
        return [Skipped(folder, UnreadableFileError(message))]
    found: list[Path | Skipped] = []
    here = Path(os.path.realpath(folder))
    for entry in entries:
        path, name = Path(entry.path), describe_source(entry.path)
        if _is_dir(entry):
            real = os.path.realpath(path)
            if real in chain or here.is_relative_to(real):
                message = f"{name}: folder link back to a folder that contains it; not followed."
                found.append(Skipped(path, LinkLoopError(message)))
            elif depth >= MAX_DEPTH:
                message = f"{name}: folders nested over {MAX_DEPTH} deep; the walk stops here."
                found.append(Skipped(path, UnreadableFileError(message)))
            else:
                found.extend(_walk(path, chain | {real}, depth + 1))
        elif is_scan_file(path) or is_dicom_file(path):
            found.append(path)  # a dangling link, loop or FIFO with a scan extension gets its own record
    return found


def walk_scans(folder: Path) -> list[Path | Skipped]:
    """Every entry with a scan extension under `folder` (recursive, sorted by path), and what was skipped.

    A regular file without a scan extension is taken when it starts like a DICOM file (`is_dicom_file`).

    Folder links are followed unless they lead back to a folder on the way down, or to one that holds
    the link (a `link_loop` record each).
    Entries that are not regular files (dangling links, link loops, FIFOs, devices) are listed like
    scans, so that reading them gives their own error record.
    """
    return _walk(folder, frozenset({os.path.realpath(folder)}), 0)


def class_folders(root: Path) -> list[str]:
    """The class names of a dataset: its sub-folders, sorted.

    Raises:
        DatasetError: the folder is missing, has no sub-folders, or holds splits instead of classes.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder; pass a folder with one sub-folder per class.")
    refuse_split_root(root)
    names = sub_folders(root)
    if not names:
        raise DatasetError(f"{root}: has no class sub-folders; expected e.g. {root}/glioma_tumor/*.jpg.")
    return names


def scan_dataset(root: Path, labels: tuple[str, ...] | None = None) -> list[LabelledScan]:
    """Every scan of a class-folder dataset, sorted by class then path.

    Args:
        root: folder holding one sub-folder per class.
        labels: the expected classes; a folder class outside them is an error. Missing classes are allowed.

    Raises:
        DatasetError: missing or empty folders, unknown classes.
    """
    found = class_folders(root)
    if labels is not None:
        unknown = [name for name in found if name not in labels]
        if unknown:
            raise DatasetError(
                f"{root}: class folders {unknown} are not among the model's labels {list(labels)}."
            )
    scans: list[LabelledScan] = []
    for name in found:
        files = list_scans(root / name)
        if not files:
            raise DatasetError(
                f"{root / name}: class folder holds no scans (accepted: {', '.join(SCAN_EXTENSIONS)})."
            )
        scans.extend(LabelledScan(path, name) for path in files)
    return scans
