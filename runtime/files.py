"""Atomic file writes: an interrupted write never leaves a half-written file behind.

A symbolic link is written through: its final target is replaced atomically and the link stays. A
folder, device, FIFO or socket is never written to, nor a read-only file (`output_target` refuses them).

The temporary file is `.NAME.PID-HEX.partial` beside the target. SIGTERM and SIGHUP during a write
remove it (the command then ends with status 128 + the signal); a run killed outright (SIGKILL) leaves
it, and the next write beside the same target removes every partial of NAME whose process is gone.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

from .errors import TumorscanError
from .paths import special_kind

CLEANUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""Signals that end a write cleanly: the temporary file is removed, the old file kept."""


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
    if kind is None and os.path.exists(path) and _read_only(path):
        raise TumorscanError(f"{path}: the file is read-only; make it writable or choose another file.")
    return Path(os.path.realpath(path))


def _read_only(path: Path) -> bool:
    """No write permission bit at all (respected even by root), or not writable by this user."""
    return not os.stat(path).st_mode & 0o222 or not os.access(path, os.W_OK)


def _partial_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")


def remove_stale_partials(target: Path) -> list[Path]:
    """Remove the temporary files of writes to `target` whose process no longer runs; returns them."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(\d+)-[0-9a-f]+\.partial")
    removed = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and not _running(int(match.group(1))):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _end_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def _signals_end_cleanly() -> Iterator[None]:
    """While writing, SIGTERM and SIGHUP unwind the stack (so the temporary file is removed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _end_on_signal) for number in CLEANUP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary stream whose content replaces `path` (see `output_target`) only when the block succeeds.

    The file gets the usual permissions (0666 less the umask).

    Raises:
        TumorscanError: the folder cannot be created or written, `path` is not a regular file, or
            writing failed (the old file is then left as it was).
    """
    target = output_target(path)
    temporary = _partial_name(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(target)
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise TumorscanError(
            f"{target.parent}: cannot write here ({exc.strerror}); choose another output folder."
        ) from exc
    try:
        with _signals_end_cleanly(), os.fdopen(handle, "wb") as stream:
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


def write_new_file(path: Path, data: bytes) -> None:
    """Write `data` to `path`, which must not exist yet (never replaces a file; atomic like the rest).

    Raises:
        FileExistsError: `path` exists.
        OSError: the file cannot be written (name too long, no space, permissions).
    """
    temporary = _partial_name(path)
    with open(temporary, "xb") as stream:
        stream.write(data)
    try:
        os.link(temporary, path)  # fails if `path` exists, unlike a rename
    finally:
        temporary.unlink(missing_ok=True)
