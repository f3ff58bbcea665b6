"""Atomic file writes: an interrupted write never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import TumorscanError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, then rename.

    Raises:
        TumorscanError: the folder cannot be created or written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as exc:
        raise TumorscanError(f"{path.parent}: cannot write here ({exc.strerror}); choose another output folder.") from exc
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 `text` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
