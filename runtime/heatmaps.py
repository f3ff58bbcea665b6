"""`tumor-infer --explain`: one heatmap PNG per classified scan, each failure costing only its own map.

Maps are computed from the pixels that were classified (kept from the run), never from the file read
again: a scan replaced after its record, or a name that is not UTF-8, still gets the map of its answer.
File names are `NNNN_FOLDER_STEM.png` (NNNN: the record's position among the inputs), made of safe
characters and cut to fit the file system's 255-byte limit; an existing file is never replaced (a
`-1`, `-2`... suffix is added instead).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from .classifier import Classifier, Prediction
from .errors import TumorscanError
from .explain import overlay_png
from .files import write_new_file
from .names import printable

MAX_NAME_BYTES = 200
"""Heatmap file names stay within this many UTF-8 bytes (255 is the usual limit; room for the suffix and
the temporary file's)."""
UNSAFE = re.compile(r"[^\w.()+,=@-]+")
MAX_TRIES = 1000


def heatmap_name(index: int, path: Path) -> str:
    """`NNNN_FOLDER_STEM.png` with unsafe characters as '_', cut to MAX_NAME_BYTES."""
    shown = printable(str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))
    shown_path = Path(shown)
    stem = UNSAFE.sub("_", f"{index:04d}_{shown_path.parent.name}_{shown_path.stem}")
    encoded = stem.encode("utf-8")[: MAX_NAME_BYTES - len(".png")]
    return encoded.decode("utf-8", "ignore") + ".png"


def _write_unique(folder: Path, name: str, data: bytes) -> Path:
    """Write `data` under `name` in `folder`, or NAME-1.png, NAME-2.png... if taken."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = name.removesuffix(".png")
    for attempt in range(MAX_TRIES):
        path = folder / (name if attempt == 0 else f"{stem}-{attempt}.png")
        try:
            write_new_file(path, data)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{folder / name}: {MAX_TRIES} files of that name exist already")


def write_heatmaps(
    classifier: Classifier,
    done: Sequence[tuple[Path, Any, Any]],
    folder: Path,
    keep: dict[int, bytes] | None = None,
) -> bool:
    """One occlusion heatmap PNG per classified scan in `folder`; prints each failure and a summary line.

    Each PNG written is also put in `keep` (when given) under its outcome's index, for `--report`.
    Returns True when some heatmap could not be made or written.
    """
    started, written, failed = time.perf_counter(), 0, 0
    for index, (path, result, pixels) in enumerate(done):
        if not isinstance(result, Prediction) or pixels is None:
            continue
        try:
            heat = classifier.explain(pixels, result.label)
            png = overlay_png(pixels, heat)
            _write_unique(folder, heatmap_name(index, path), png)
            written += 1
            if keep is not None:
                keep[index] = png
        except (TumorscanError, OSError) as exc:
            failed += 1
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            click.echo(f"heatmap of {printable(result.source)} failed: {reason}", err=True)
    seconds = time.perf_counter() - started
    line = f"heatmaps: {written} written to {folder} ({seconds / max(written, 1):.2f} s per scan)"
    click.echo(line + (f", {failed} failed" if failed else ""), err=True)
    return failed > 0
