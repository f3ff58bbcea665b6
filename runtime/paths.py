"""What a scan path points at, checked before it is opened: each problem has its own error and code.

Used for a file given by name and for every entry a folder walk finds, so both say the same words.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import (
    DanglingLinkError,
    ImageError,
    LinkLoopError,
    MissingFileError,
    SpecialFileError,
    UnreadableFileError,
)

SPECIAL_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_kind(mode: int) -> str | None:
    """'a FIFO (named pipe)', 'a folder'... for a mode that is not a regular file, else None."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in SPECIAL_KINDS if test(mode)), "a special file")


def _stat_error(path: Path, name: str, exc: OSError) -> ImageError:
    if exc.errno == errno.ELOOP:
        return LinkLoopError(f"{name}: symbolic link loop (the link leads back to itself); fix or remove it.")
    if exc.errno == errno.ENOENT:
        if os.path.lexists(path):
            target = os.readlink(path) if path.is_symlink() else "?"
            return DanglingLinkError(f"{name}: symbolic link to {target!r}, which does not exist.")
        return MissingFileError(f"{name}: no such file.")
    if exc.errno == errno.ENAMETOOLONG:
        return UnreadableFileError(f"{name}: file name too long for this system; rename the file.")
    return UnreadableFileError(f"{name}: cannot read the file ({exc.strerror or exc}).")


def check_scan_path(path: Path, name: str | None = None) -> None:
    """Raise the typed error for a path that is not an existing, regular file.

    Raises:
        MissingFileError, DanglingLinkError, LinkLoopError, SpecialFileError, UnreadableFileError.
    """
    name = name or str(path)
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        if isinstance(exc, ValueError):
            raise UnreadableFileError(f"{name}: the file name holds a NUL character.") from exc
        raise _stat_error(path, name, exc) from exc
    kind = special_kind(mode)
    if kind is not None:
        raise SpecialFileError(f"{name}: is {kind}, not a scan file.")
