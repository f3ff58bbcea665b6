"""Model integrity: the embedded spec carries a hash of the model content it describes; loading checks it.

The spec's `integrity` field is `{"scheme": ..., "sha256": ..., "bytes": ...}`. What the hash covers:

- `tflite-v1`: the sha256 of the file's first `bytes` bytes (the flatbuffer as tumor-export wrote it)
  with the bytes of the tumorscan metadata buffer replaced by zeros. It covers the graph, every weight
  and every other metadata entry; it leaves out the tumorscan spec itself (which holds the hash) and
  anything appended after the flatbuffer later, such as the associated-files ZIP of a standard TFLite
  metadata block. Rewriting the flatbuffer (e.g. adding a metadata entry) needs a new seal:
  `tumorscan.metadata.embed_tflite_metadata` seals every file it writes.
- `onnx-v1`: the sha256 of the serialized ModelProto with every top-level `metadata_props` field
  (field 14) left out: the graph, weights, opsets and producer, not the metadata.

A file whose spec has no `integrity` field (exported before it existed) loads, unchecked; the
classifier's identity says so. A file whose content does not match is refused (`ModelIntegrityError`).
The hash finds damage and edits made without tumorscan; it is not a signature (whoever can rewrite
the file can seal it again).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from typing import Any

from .errors import MetadataError, ModelError, ModelIntegrityError
from .spec import METADATA_KEY, ModelSpec
from .tflite_reader import is_tflite, tflite_metadata_span

TFLITE_SCHEME = "tflite-v1"
ONNX_SCHEME = "onnx-v1"
ONNX_METADATA_FIELD = 14
ONNX_GRAPH_FIELD = 7
ONNX_INITIALIZER_FIELD = 5
ONNX_EXTERNAL_DATA_FIELD = 13
ONNX_DATA_LOCATION_FIELD = 14
PLACEHOLDER = "0" * 64


def tflite_digest(content: bytes, covered: int, source: str = "model") -> str:
    """sha256 of `content[:covered]` with the tumorscan metadata buffer zeroed (scheme tflite-v1)."""
    if covered > len(content):
        raise ModelIntegrityError(
            f"{source}: the file is shorter ({len(content):,} bytes) than the {covered:,} its hash covers; "
            "it was truncated or modified. Re-export it or copy it again."
        )
    view = memoryview(content)[:covered]
    head = content if covered == len(content) else content[:covered]
    span = tflite_metadata_span(head, METADATA_KEY, source) or (covered, covered)
    digest = hashlib.sha256(view[: span[0]])
    digest.update(bytes(span[1] - span[0]))
    digest.update(view[span[1] :])
    return digest.hexdigest()


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("malformed varint")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if not byte & 0x80:
            return value, position


def _protobuf_fields(data: memoryview) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each top-level field of a serialized protobuf message."""
    position = 0
    while position < len(data):
        start = position
        tag, position = _varint(data, position)
        wire = tag & 7
        if wire == 0:
            _, position = _varint(data, position)
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4
        elif wire == 2:
            length, position = _varint(data, position)
            position += length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if position > len(data):
            raise ValueError("a field runs past the end of the file")
        yield tag >> 3, start, position


def onnx_digest(content: bytes, source: str = "model") -> str:
    """sha256 of a serialized ONNX ModelProto without its metadata_props (scheme onnx-v1)."""
    view = memoryview(content)
    digest = hashlib.sha256()
    try:
        for number, start, end in _protobuf_fields(view):
            if number != ONNX_METADATA_FIELD:
                digest.update(view[start:end])
    except ValueError as exc:
        raise ModelError(f"{source}: malformed ONNX file ({exc}); re-export the model.") from exc
    return digest.hexdigest()


def _fields(data: memoryview, number: int) -> Iterator[memoryview]:
    """The payloads of every length-delimited top-level field `number` of a protobuf message."""
    for found, start, end in _protobuf_fields(data):
        if found == number:
            _, payload = _varint(data, start)  # skip the tag
            _, payload = _varint(data, payload)  # and the length
            yield data[payload:end]


def onnx_external_data(content: bytes, source: str = "model") -> bool:
    """True when an ONNX model keeps initializer data in other files (TensorProto.data_location EXTERNAL).

    Such weights are outside the file's bytes: neither the onnx-v1 hash nor a signature of the file
    covers them, and the runtime (which loads the file's bytes) cannot find them.
    """
    try:
        for graph in _fields(memoryview(content), ONNX_GRAPH_FIELD):
            for tensor in _fields(graph, ONNX_INITIALIZER_FIELD):
                for number, start, _end in _protobuf_fields(tensor):
                    if number == ONNX_EXTERNAL_DATA_FIELD or (
                        number == ONNX_DATA_LOCATION_FIELD
                        and _varint(tensor, _varint(tensor, start)[1])[0] == 1
                    ):
                        return True
    except ValueError as exc:
        raise ModelError(f"{source}: malformed ONNX file ({exc}); re-export the model.") from exc
    return False


def check_self_contained(content: bytes, source: str) -> None:
    """Refuse an ONNX file (`content`) whose weights live in other files (see `onnx_external_data`).

    Raises:
        ModelError: naming the file and how to merge its weights into it.
    """
    if not is_tflite(content) and onnx_external_data(content, source):
        raise ModelError(
            f"{source}: keeps its weights in separate files (ONNX external data), which neither its "
            'integrity hash nor a signature covers; merge them into the file: python -c "import onnx; '
            "onnx.save(onnx.load('IN.onnx'), 'OUT.onnx')\", then seal OUT.onnx again."
        )


def onnx_integrity(serialized: bytes) -> dict[str, Any]:
    """The integrity record to store in the spec of an ONNX model (its metadata_props do not matter)."""
    return {"scheme": ONNX_SCHEME, "sha256": onnx_digest(serialized)}


def seal_tflite(pack: Callable[[bytes], bytes], spec: ModelSpec) -> bytes:
    """A TFLite file, packed by `pack(spec JSON)`, whose spec holds the hash of the file (scheme tflite-v1).

    The covered length is written in the spec, so the file is packed until that length settles; the
    digest, computed with the spec's bytes zeroed, then replaces a placeholder of the same length.
    """
    record: dict[str, Any] = {"scheme": TFLITE_SCHEME, "bytes": 0, "sha256": PLACEHOLDER}
    packed = pack(spec.with_updates(integrity=record).to_json().encode("utf-8"))
    while record["bytes"] != len(packed):  # settles within two rounds: only the digit count can change
        record = {**record, "bytes": len(packed)}
        packed = pack(spec.with_updates(integrity=record).to_json().encode("utf-8"))
    span = tflite_metadata_span(packed, METADATA_KEY)
    placeholder = f'"sha256":"{PLACEHOLDER}"'.encode()
    if span is None or packed[span[0] : span[1]].count(placeholder) != 1:
        raise ModelError("model: cannot seal the TFLite file (the spec's hash placeholder is not unique).")
    sealed = f'"sha256":"{tflite_digest(packed, len(packed))}"'.encode()
    region = packed[span[0] : span[1]].replace(placeholder, sealed)
    return packed[: span[0]] + region + packed[span[1] :]


def verify_integrity(content: bytes, spec: ModelSpec, source: str) -> bool:
    """Check a model file against the hash in its spec: True when checked, False when it has none.

    Raises:
        ModelIntegrityError: the content does not match the hash (the file was modified).
        MetadataError: an integrity scheme this version does not know.
    """
    record = spec.integrity
    if record is None:
        return False
    scheme = record["scheme"]
    if scheme == TFLITE_SCHEME and is_tflite(content):
        actual = tflite_digest(content, int(record.get("bytes", len(content))), source)
    elif scheme == ONNX_SCHEME and not is_tflite(content):
        actual = onnx_digest(content, source)
    else:
        raise MetadataError(
            f"{source}: unknown integrity scheme {scheme!r} for this file type; upgrade tumorscan."
        )
    if not hmac.compare_digest(actual, str(record["sha256"])):
        raise ModelIntegrityError(
            f"{source}: the model content does not match the hash in its metadata: the file was modified "
            "or damaged after export. Use the original file, or export the model again."
        )
    return True
