"""Atomic file writes: an interrupted write never leaves a half-written file behind."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import TumorscanError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, then rename.

    The file gets the usual permissions (0666 less the umask).

    Raises:
        TumorscanError: the folder cannot be created or written.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise TumorscanError(
            f"{path.parent}: cannot write here ({exc.strerror}); choose another output folder."
        ) from exc
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 `text` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
