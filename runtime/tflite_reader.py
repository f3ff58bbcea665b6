"""Reading a TFLite flatbuffer without any TFLite package: its identifier and its named metadata entries.

`tumorscan.metadata` (which writes entries) and `tumorscan.integrity` (which hashes around the spec's entry)
both read files through this module.
"""

from __future__ import annotations

import struct

from .errors import ModelError

TFLITE_IDENTIFIER = b"TFL3"


def is_tflite(model_bytes: bytes) -> bool:
    """True when the bytes carry the TFLite flatbuffer file identifier."""
    return len(model_bytes) >= 8 and model_bytes[4:8] == TFLITE_IDENTIFIER


class _Table:
    """Read-only view of one flatbuffer table, bounds-checked (a malformed file raises ValueError)."""

    def __init__(self, data: bytes, position: int) -> None:
        self.data, self.position = data, position
        self.vtable = position - _unpack(data, "<i", position)

    def _field(self, index: int) -> int | None:
        slot = 4 + 2 * index
        if slot >= _unpack(self.data, "<H", self.vtable):
            return None
        offset = _unpack(self.data, "<H", self.vtable + slot)
        return self.position + offset if offset else None

    def _target(self, index: int) -> int | None:
        field = self._field(index)
        return None if field is None else field + _unpack(self.data, "<I", field)

    def scalar(self, index: int, fmt: str) -> int:
        field = self._field(index)
        return 0 if field is None else int(_unpack(self.data, fmt, field))

    def span(self, index: int) -> tuple[int, int] | None:
        """Where a string or [ubyte] field's bytes lie in the file: (start, end), or None when absent."""
        target = self._target(index)
        if target is None:
            return None
        length = _unpack(self.data, "<I", target)
        if target + 4 + length > len(self.data):
            raise ValueError("vector runs past the end of the file")
        return target + 4, target + 4 + length

    def bytes_(self, index: int) -> bytes:
        """A string or [ubyte] field."""
        span = self.span(index)
        return b"" if span is None else self.data[span[0] : span[1]]

    def tables(self, index: int) -> list[_Table]:
        """A vector of tables."""
        target = self._target(index)
        if target is None:
            return []
        count = _unpack(self.data, "<I", target)
        if target + 4 + 4 * count > len(self.data):
            raise ValueError("vector runs past the end of the file")
        slots = (target + 4 + 4 * i for i in range(count))
        return [_Table(self.data, slot + _unpack(self.data, "<I", slot)) for slot in slots]


def _unpack(data: bytes, fmt: str, position: int) -> int:
    if position < 0 or position + struct.calcsize(fmt) > len(data):
        raise ValueError(f"offset {position} lies outside the file")
    value: int = struct.unpack_from(fmt, data, position)[0]
    return value


# Field indices in the TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs).
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


def tflite_metadata_entry(model_bytes: bytes, name: str, source: str = "model") -> bytes | None:
    """The bytes of a TFLite model's named metadata entry, or None when it has none.

    Reads the flatbuffer directly (no TFLite package needed), so it works with every backend.

    Raises:
        ModelError: the bytes are not a TFLite flatbuffer or its structure is broken.
    """
    span = tflite_metadata_span(model_bytes, name, source)
    return None if span is None else model_bytes[span[0] : span[1]]


def tflite_metadata_span(model_bytes: bytes, name: str, source: str = "model") -> tuple[int, int] | None:
    """Where the named metadata entry's bytes lie in a TFLite file: (start, end), or None.

    Raises:
        ModelError: the bytes are not a TFLite flatbuffer or its structure is broken.
    """
    if not is_tflite(model_bytes):
        raise ModelError(f"{source}: not a TFLite model (missing the TFL3 identifier); re-export the model.")
    try:
        model = _Table(model_bytes, _unpack(model_bytes, "<I", 0))
        entry = next(
            (m for m in model.tables(_MODEL_METADATA) if m.bytes_(_METADATA_NAME) == name.encode("utf-8")),
            None,
        )
        if entry is None:
            return None
        buffer = model.tables(_MODEL_BUFFERS)[entry.scalar(_METADATA_BUFFER, "<I")]
        offset, size = buffer.scalar(_BUFFER_OFFSET, "<Q"), buffer.scalar(_BUFFER_SIZE, "<Q")
        if offset > 1:  # large models keep buffers after the flatbuffer, addressed by offset
            if offset + size > len(model_bytes):
                raise ValueError("a buffer lies past the end of the file")
            return offset, offset + size
        return buffer.span(_BUFFER_DATA) or (0, 0)
    except (ValueError, IndexError) as exc:
        raise ModelError(f"{source}: malformed TFLite flatbuffer ({exc}); re-export the model.") from exc
