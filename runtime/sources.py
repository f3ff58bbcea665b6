"""Sources of a job on many machines: local paths, as `tumor-infer` expands them, and pyarrow URIs.

A URI (`s3://bucket/scans`, `gs://...`, `hdfs://...`, `file:///data/scans`) names a file or a folder that
pyarrow's filesystems read; a folder is listed recursively, keeping the files with a scan extension. Each
source is then read where it is classified: a local path on the machine that runs the model (so a cluster
needs it on shared storage, at the same path everywhere), a URI through pyarrow there. Nothing here
imports pyarrow unless a URI is given.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from .classifier import PredictionError
from .cli import expand_scan_arguments
from .errors import (
    ImageError,
    MissingDependencyError,
    MissingFileError,
    SpecialFileError,
    UnreadableFileError,
)
from .folders import Skipped
from .images import SCAN_EXTENSIONS

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
PATH_IS_WHOLE_URI = ("file", "hdfs", "viewfs")
"""Schemes whose pyarrow path is the URI's path; for object stores it is `bucket/key` (netloc + path)."""


def is_uri(source: str) -> bool:
    """True for `scheme://...` (not a local path)."""
    return URI.match(source) is not None


@dataclass
class SourceList:
    """What a list of arguments names: the sources to classify, the entries skipped, warnings."""

    sources: list[str] = field(default_factory=list)
    skipped: list[PredictionError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def list_sources(arguments: Sequence[str]) -> SourceList:
    """Local files, folders and globs (as `tumor-infer` expands them) and URIs; each source once, in order.

    Raises:
        MissingDependencyError: a URI is given and pyarrow is not installed.
    """
    found = SourceList()
    local = [argument for argument in arguments if not is_uri(argument)]
    items, found.warnings = expand_scan_arguments(local)
    for item in items:
        if isinstance(item, Skipped):
            found.skipped.append(PredictionError(str(item.path), item.error.code, str(item.error)))
        else:
            found.sources.append(str(item))
    for argument in arguments:
        if is_uri(argument):
            listed = list_uri(argument)
            if not listed:
                found.warnings.append(f"{argument}: holds no scans")
            found.sources += listed
    found.sources = list(dict.fromkeys(found.sources))
    return found


def _pyarrow_fs() -> Any:
    try:
        import pyarrow.fs
    except ImportError as exc:
        raise MissingDependencyError("pyarrow", "ray", "Reading sources by URI") from exc
    return pyarrow.fs


@functools.lru_cache(maxsize=64)
def _filesystem(root: str) -> Any:
    """One pyarrow filesystem per `scheme://authority` (an S3 client is costly to make)."""
    return _pyarrow_fs().FileSystem.from_uri(root)[0]


def _split(uri: str) -> tuple[Any, str, str]:
    """(filesystem, its path for `uri`, the prefix that turns such a path back into a URI)."""
    parts = urlsplit(uri)
    root = f"{parts.scheme}://{parts.netloc}"
    if parts.scheme in PATH_IS_WHOLE_URI:
        return _filesystem(root + "/"), parts.path, root
    return _filesystem(uri), f"{parts.netloc}{parts.path}".rstrip("/"), f"{parts.scheme}://"


def list_uri(uri: str) -> list[str]:
    """The scan files a URI names: itself, or every file with a scan extension under it (sorted).

    A URI that names nothing is kept, so that it gets its own `no_such_file` record.
    """
    fs_module = _pyarrow_fs()
    filesystem, path, prefix = _split(uri)
    info = filesystem.get_file_info(path)
    if info.type != fs_module.FileType.Directory:
        return [uri]
    selector = fs_module.FileSelector(path, recursive=True)
    files = [
        entry.path for entry in filesystem.get_file_info(selector) if entry.type == fs_module.FileType.File
    ]
    return [prefix + name for name in sorted(files) if PurePosixPath(name).suffix.lower() in SCAN_EXTENSIONS]


def read_uri(uri: str) -> bytes:
    """The bytes of one URI.

    Raises:
        ImageError: (a subclass) it names nothing, a folder, or cannot be read.
    """
    try:
        filesystem, path, _ = _split(uri)
        with filesystem.open_input_file(path) as stream:
            return bytes(stream.read())
    except FileNotFoundError as exc:
        raise MissingFileError(f"{uri}: no such file; check the URI.") from exc
    except IsADirectoryError as exc:
        raise SpecialFileError(f"{uri}: is a folder, not a scan file.") from exc
    except ImageError:
        raise
    except (OSError, ValueError) as exc:  # permissions, network, a malformed URI
        raise UnreadableFileError(f"{uri}: cannot be read ({exc}); check the URI and its access.") from exc
