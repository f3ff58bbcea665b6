"""A folder of record shards: what a job already wrote, and new shards, each written whole.

The folder is a local path or a URI of pyarrow's filesystems (`s3://bucket/out`). Shards are
`part-RUN-NNNNN.jsonl` (the lines of `tumor-infer --jsonl`) or `.parquet` (one typed column per field). A
shard is written under a hidden temporary name and renamed when complete (on an object store: the object
appears whole when its upload ends), so a stopped job leaves only complete shards, and `--resume` skips
exactly the sources they hold.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import MissingDependencyError, TumorscanError
from .sources import _split, is_uri

FORMATS = {"jsonl": ".jsonl", "parquet": ".parquet"}
SHARD_PREFIX = "part-"
SHARD_RECORDS = 1000
"""Records per shard: what a stopped job may have to redo at most (per shard being written)."""


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.fs
    except ImportError as exc:
        raise MissingDependencyError("pyarrow", "ray", "Writing record shards") from exc
    return pyarrow, pyarrow.fs


@dataclass(frozen=True)
class Existing:
    """The records already in a folder: their sources and how many each model wrote."""

    sources: frozenset[str]
    models: Counter[str]

    @property
    def count(self) -> int:
        return sum(self.models.values())


def model_sha256(tag: str) -> str:
    """The sha256 part of a record's "model" field (`FILE@SHA256`)."""
    return tag.rpartition("@")[2]


class RecordFolder:
    """An output folder of shards, local or by URI."""

    def __init__(self, location: str) -> None:
        self.location = location
        _, fs = _pyarrow()
        if is_uri(location):
            self.filesystem, self.path, _ = _split(location)
        else:
            self.filesystem, self.path = fs.LocalFileSystem(), os.path.abspath(location)

    def _shards(self) -> list[str]:
        _, fs = _pyarrow()
        info = self.filesystem.get_file_info(self.path)
        if info.type == fs.FileType.NotFound:
            return []
        if info.type != fs.FileType.Directory:
            raise TumorscanError(f"{self.location}: is a file; --output takes a folder with --engine ray.")
        entries = self.filesystem.get_file_info(fs.FileSelector(self.path))
        names = [entry.path for entry in entries if entry.type == fs.FileType.File]
        base = os.path.basename
        return sorted(
            n for n in names if base(n).startswith(SHARD_PREFIX) and n.endswith(tuple(FORMATS.values()))
        )

    def existing(self) -> Existing:
        """Every record of the shards in the folder (source and model).

        Raises:
            TumorscanError: a shard cannot be read or holds something other than records.
        """
        sources: set[str] = set()
        models: Counter[str] = Counter()
        for shard in self._shards():
            try:
                pairs = self._read_pairs(shard)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise TumorscanError(
                    f"{shard}: not a shard of tumor-infer records ({exc}); move it out of {self.location}."
                ) from exc
            for source, model in pairs:
                sources.add(source)
                models[model] += 1
        return Existing(frozenset(sources), models)

    def _read_pairs(self, shard: str) -> list[tuple[str, str]]:
        """(source, model) of every record in one shard."""
        if shard.endswith(FORMATS["parquet"]):
            import pyarrow.parquet

            with self.filesystem.open_input_file(shard) as stream:
                table = pyarrow.parquet.read_table(stream, columns=["source", "model"])
            return list(zip(table["source"].to_pylist(), table["model"].to_pylist(), strict=True))
        with self.filesystem.open_input_stream(shard) as stream:
            text = stream.read().decode("utf-8")
        records = (json.loads(line) for line in text.splitlines() if line.strip())
        return [(str(record["source"]), str(record["model"])) for record in records]

    def done_sources(self, model_tag: str, resume: bool) -> frozenset[str]:
        """The sources to skip: none for a new job; with `resume`, those recorded by the same model.

        Raises:
            TumorscanError: records are there without `resume`, or records of another model are there.
        """
        existing = self.existing()
        if not existing.count:
            return frozenset()
        found = ", ".join(f"{count} of {tag}" for tag, count in existing.models.most_common())
        if not resume:
            raise TumorscanError(
                f"{self.location}: already holds {existing.count} records ({found}); pass --resume to finish "
                "that job, or choose an empty --output folder."
            )
        others = [tag for tag in existing.models if model_sha256(tag) != model_sha256(model_tag)]
        if others:
            raise TumorscanError(
                f"{self.location}: holds records of another model ({found}), not of {model_tag}; --resume "
                "continues a job with the same model: pass that --model, or choose another --output folder."
            )
        self._remove_partials()
        return existing.sources

    def _remove_partials(self) -> None:
        """Temporary shards a stopped job left behind (never complete, never counted)."""
        _, fs = _pyarrow()
        entries = self.filesystem.get_file_info(fs.FileSelector(self.path))
        for entry in entries:
            if os.path.basename(entry.path).startswith("." + SHARD_PREFIX) and entry.path.endswith(
                ".partial"
            ):
                self.filesystem.delete_file(entry.path)

    def writer(
        self, output_format: str, labels: Sequence[str], shard_records: int = SHARD_RECORDS
    ) -> ShardWriter:
        self.filesystem.create_dir(self.path, recursive=True)
        return ShardWriter(self, output_format, labels, shard_records)


def parquet_row(line: str, labels: Sequence[str]) -> dict[str, object]:
    """One JSONL record as a row of typed columns (`p_LABEL` per probability; the error's code, message)."""
    record = json.loads(line)
    error = record.get("error") or {}
    row: dict[str, object] = {
        "source": record["source"],
        "status": record["status"],
        "label": record.get("label"),
        "confidence": record.get("confidence"),
        "abstain": record.get("abstain"),
        "reasons": record.get("reasons", []),
        "error_code": error.get("code"),
        "error_message": error.get("message"),
        "model": record["model"],
    }
    probabilities = record.get("probabilities", {})
    row.update({f"p_{label}": probabilities.get(label) for label in labels})
    return row


def parquet_schema(labels: Sequence[str]) -> Any:
    pa, _ = _pyarrow()
    fields = [
        ("source", pa.string()),
        ("status", pa.string()),
        ("label", pa.string()),
        ("confidence", pa.float64()),
        ("abstain", pa.bool_()),
        ("reasons", pa.list_(pa.string())),
        ("error_code", pa.string()),
        ("error_message", pa.string()),
        ("model", pa.string()),
    ]
    return pa.schema(fields + [(f"p_{label}", pa.float64()) for label in labels])


class ShardWriter:
    """Collects records (JSONL lines) and writes a shard whole every `shard_records` records."""

    def __init__(
        self, folder: RecordFolder, output_format: str, labels: Sequence[str], shard_records: int
    ) -> None:
        self.folder = folder
        self.suffix = FORMATS[output_format]
        self.labels = tuple(labels)
        self.shard_records = shard_records
        self.run = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        self.pending: list[str] = []
        self.shards = 0
        self.written = 0

    def add(self, lines: Iterable[str]) -> None:
        self.pending.extend(lines)
        while len(self.pending) >= self.shard_records:
            self._write(self.pending[: self.shard_records])
            del self.pending[: self.shard_records]

    def close(self) -> None:
        """Write what is pending."""
        if self.pending:
            self._write(self.pending)
            self.pending = []

    def _write(self, lines: Sequence[str]) -> None:
        name = f"{SHARD_PREFIX}{self.run}-{self.shards:05d}{self.suffix}"
        final = f"{self.folder.path}/{name}"
        temporary = f"{self.folder.path}/.{name}.partial"
        filesystem = self.folder.filesystem
        try:
            with filesystem.open_output_stream(temporary) as stream:
                stream.write(self._encode(lines))
            filesystem.move(temporary, final)
        except OSError as exc:
            raise TumorscanError(
                f"{final}: cannot write the shard ({exc}); check free space and permissions, then rerun "
                "with --resume."
            ) from exc
        self.shards += 1
        self.written += len(lines)

    def _encode(self, lines: Sequence[str]) -> bytes:
        if self.suffix == FORMATS["jsonl"]:
            return "".join(line + "\n" for line in lines).encode("utf-8")
        import pyarrow.parquet

        pa, _ = _pyarrow()
        rows = [parquet_row(line, self.labels) for line in lines]
        table = pa.Table.from_pylist(rows, schema=parquet_schema(self.labels))
        sink = pa.BufferOutputStream()
        pyarrow.parquet.write_table(table, sink)
        return bytes(sink.getvalue().to_pybytes())
