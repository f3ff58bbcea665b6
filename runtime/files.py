"""Atomic file writes: an interrupted write never leaves a half-written file behind.

A symbolic link is written through: its final target is replaced atomically and the link stays. A
folder, device, FIFO or socket is never written to (`output_target` refuses it).
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

from .errors import TumorscanError
from .paths import special_kind


def output_target(path: Path) -> Path:
    """The regular file a write to `path` replaces: `path`, or the final target of a symbolic link.

    Raises:
        TumorscanError: `path` (or its target) is a folder, device, FIFO or socket, or cannot be examined.
    """
    try:
        kind = special_kind(os.stat(path).st_mode)  # follows links, /proc's magic ones included
    except FileNotFoundError:
        kind = None  # a new file, or a link to one
    except OSError as exc:
        raise TumorscanError(f"{path}: cannot write here ({exc.strerror}); choose another file.") from exc
    if kind is not None:
        raise TumorscanError(
            f"{path}: is {kind}, not a regular file; write to a file (or '-' for standard output)."
        )
    return Path(os.path.realpath(path))


@contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary stream whose content replaces `path` (see `output_target`) only when the block succeeds.

    The file gets the usual permissions (0666 less the umask).

    Raises:
        TumorscanError: the folder cannot be created or written, `path` is not a regular file, or
            writing failed (the old file is then left as it was).
    """
    target = output_target(path)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise TumorscanError(
            f"{target.parent}: cannot write here ({exc.strerror}); choose another output folder."
        ) from exc
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
        os.replace(temporary, target)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # e.g. the disk filled up while writing
            raise TumorscanError(
                f"{target}: cannot write the file ({exc.strerror or exc}); check free space and permissions."
            ) from exc
        raise


@contextmanager
def atomic_text_writer(path: Path) -> Iterator[TextIO]:
    """A UTF-8 text stream written atomically, like `atomic_writer`."""
    with atomic_writer(path) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        yield text
        text.flush()
        text.detach()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, then rename.

    Raises:
        TumorscanError: the folder cannot be created or written, or `path` is not a regular file.
    """
    with atomic_writer(path) as stream:
        stream.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 `text` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
