"""The listener's spool: every received instance on disk before it is acknowledged, and each study's way.

Layout under the spool folder (every move is a rename within one file system, so a `kill -9` at any
moment leaves each file in exactly one place):

    tmp/                         instances being written (removed at start-up: never acknowledged)
    incoming/<study>/<sop>.dcm   received, fsynced, acknowledged; the study is still arriving
    processing/<batch>/          a quiet study, taken as one batch (<study>.<nanoseconds>)
    outbox/<batch>/<study>.dcm   its Structured Report, waiting to be sent
    done/<batch>/                the instances of a batch whose SR is written
    sent/<batch>/                SRs the destination accepted
    rejected/                    instances that could not be read (kept for a person to look at)
    failed/<batch>/              a batch whose SR could not be built (kept for a person to look at)

A study's instances arriving after it was taken make a new batch (and a new SR for those instances).
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import TumorscanError

FOLDERS = ("tmp", "incoming", "processing", "outbox", "done", "sent", "rejected", "failed")


class SpoolError(TumorscanError):
    """An instance could not be stored safely (a full disk, no permission): it was not acknowledged."""

    code = "spool_error"


def _fsync_folder(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def safe_name(uid: str) -> str:
    """A UID as a file name: digits and dots only (anything else is refused by the caller)."""
    if not uid or len(uid) > 64 or not all(c.isdigit() or c == "." for c in uid) or uid.startswith("."):
        raise ValueError(f"not a DICOM UID: {uid[:70]!r}")
    return uid


class Spool:
    """The folders above, and the moves between them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        try:
            for name in FOLDERS:
                (root / name).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(
                f"{root}: cannot create the spool ({exc.strerror}); choose another folder."
            ) from exc
        for leftover in (root / "tmp").iterdir():
            leftover.unlink(missing_ok=True)  # never acknowledged: the sender still has it

    def folder(self, name: str) -> Path:
        return self.root / name

    def store(self, study_uid: str, sop_uid: str, write: Callable[[int], None]) -> Path:
        """Write an instance (`write` gets a file descriptor), fsync it, then move it into its study.

        Raises:
            SpoolError: the disk is full or not writable; nothing is left behind.
        """
        temporary = self.root / "tmp" / f"{secrets.token_hex(8)}.partial"
        target = self.root / "incoming" / safe_name(study_uid) / f"{safe_name(sop_uid)}.dcm"
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                write(handle)
                os.fsync(handle)
            finally:
                os.close(handle)
            with self._lock:  # not while `take` moves the study's folder away
                target.parent.mkdir(exist_ok=True)
                os.replace(temporary, target)
                _fsync_folder(target.parent)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise SpoolError(
                f"cannot store instance {sop_uid} ({exc.strerror or exc}); check the spool's disk."
            ) from exc
        return target

    def reject(self, data: bytes) -> Path:
        """Keep the bytes of an instance that could not be read, for a person to look at."""
        path = self.root / "rejected" / f"{time.time_ns()}-{secrets.token_hex(4)}.dcm"
        path.write_bytes(data)
        return path

    def quiet_studies(self, quiet_since: float, first_seen: dict[str, float], oldest: float) -> list[Path]:
        """Incoming studies untouched since `quiet_since`, or first seen before `oldest` (never quiet).

        A study's last touch is the modification time of its folder (each instance renamed into it
        sets it); `quiet_since` may be capped by the caller (a restart counts as a touch).
        """
        found = []
        for study in sorted((self.root / "incoming").iterdir()):
            try:
                touched = study.stat().st_mtime
            except FileNotFoundError:
                continue
            if touched <= quiet_since or first_seen.get(study.name, math.inf) <= oldest:
                found.append(study)
        return found

    def take(self, study: Path) -> Path:
        """Move a quiet study to processing/ as one batch."""
        batch = self.root / "processing" / f"{study.name}.{time.time_ns()}"
        with self._lock:
            os.replace(study, batch)
        return batch

    def move(self, path: Path, folder: str) -> Path:
        target = self.root / folder / path.name
        os.replace(path, target)
        return target

    def batches(self, folder: str) -> list[Path]:
        return sorted(
            p for p in (self.root / folder).iterdir() if p.is_dir() and not p.name.endswith(".partial")
        )
