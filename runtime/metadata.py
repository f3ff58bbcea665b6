"""The model spec inside model files: embedded in TFLite flatbuffers, read from TFLite and ONNX.

TFLite: a named entry of `Model.metadata` ("tumorscan") pointing at a buffer holding the spec's JSON.
ONNX: the `metadata_props` key "tumorscan" (read through onnxruntime, so the `onnx` package is not needed).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from .errors import MetadataError, MissingDependencyError, ModelError
from .spec import METADATA_KEY, ModelSpec

TFLITE_IDENTIFIER = b"TFL3"
MODEL_SUFFIXES = (".tflite", ".onnx")


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as exc:
        raise MissingDependencyError("ai-edge-litert", "litert", "Writing TFLite metadata") from exc
    return schema_py_generated


def is_tflite(model_bytes: bytes) -> bool:
    """True when the bytes carry the TFLite flatbuffer file identifier."""
    return len(model_bytes) >= 8 and model_bytes[4:8] == TFLITE_IDENTIFIER


def embed_tflite_metadata(model_bytes: bytes, spec: ModelSpec) -> bytes:
    """Return a copy of a TFLite model with `spec` stored as its "tumorscan" metadata entry.

    An existing entry of that name is replaced; other entries (e.g. the converter's own) are kept.
    The stored spec's `integrity` field holds the hash of the file (`tumorscan.integrity`).

    Raises:
        ModelError: the bytes are not a TFLite model, or one over 2 GB.
    """
    from .integrity import seal_tflite

    return seal_tflite(lambda text: pack_tflite_metadata(model_bytes, text), spec)


def pack_tflite_metadata(model_bytes: bytes, text: bytes) -> bytes:
    """A copy of a TFLite model with `text` stored as it is (unchecked, unsealed) as the "tumorscan" entry.

    Raises:
        ModelError: the bytes are not a TFLite model, or one over 2 GB.
    """
    return set_tflite_metadata_entry(model_bytes, METADATA_KEY, text)


def set_tflite_metadata_entry(model_bytes: bytes, name: str, data: bytes) -> bytes:
    """Return a copy of a TFLite model whose metadata entry `name` holds `data`.

    An existing entry of that name is replaced; other entries are kept. Anything appended after the
    flatbuffer (such as a ZIP of associated files) is not carried over.

    Raises:
        ModelError: the bytes are not a TFLite model, or one over 2 GB.
    """
    import numpy as np

    if not is_tflite(model_bytes):
        raise ModelError("model: not a TFLite flatbuffer (missing the TFL3 identifier); pass a .tflite file.")
    schema = _schema()
    import flatbuffers  # installed with ai-edge-litert

    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    if any((buffer.offset or 0) > 1 for buffer in model.buffers or []):
        raise ModelError("model: buffers stored outside the flatbuffer (models over 2 GB) are not supported.")
    array = np.frombuffer(data, dtype=np.uint8).copy()
    model.buffers = model.buffers or []
    model.metadata = model.metadata or []
    key = name.encode("utf-8")
    entry = next((m for m in model.metadata if m.name in (key, name)), None)
    if entry is None:
        buffer = schema.BufferT()
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    buffer = model.buffers[entry.buffer]
    buffer.data, buffer.offset, buffer.size = array, 0, 0
    builder = flatbuffers.Builder(len(model_bytes) + len(array) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


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


def spec_from_text(text: str | bytes | None, source: str) -> ModelSpec:
    """Parse embedded spec JSON; raise MetadataError naming `source` when it is missing or invalid."""
    if not text:
        raise MetadataError(
            f"{source}: carries no tumorscan metadata (labels, input size); "
            "export a Keras model with tumor-export, or give a file made elsewhere its labels and "
            "preprocessing with tumor-seal MODEL --labels a,b,c --preprocess rescale|symmetric|caffe|none."
        )
    return ModelSpec.from_json(text, source)


def read_tflite_spec(model_bytes: bytes, source: str = "model") -> ModelSpec:
    """The spec embedded in a TFLite model.

    Raises:
        ModelError: not a TFLite model, or a malformed one.
        MetadataError: no or invalid tumorscan metadata.
    """
    return spec_from_text(tflite_metadata_entry(model_bytes, METADATA_KEY, source), source)


def onnx_session(
    model: bytes | Path, source: str, optimize: bool = True, num_threads: int | None = None
) -> Any:
    """An onnxruntime InferenceSession (CPU) for a model file or its bytes, errors typed.

    Args:
        model: the model file or its bytes.
        source: the name used in error messages.
        optimize: apply onnxruntime's graph optimisations (off when only the metadata is needed).
        num_threads: intra-op threads; None lets onnxruntime decide.

    Raises:
        MissingDependencyError: onnxruntime is not installed.
        ModelError: the file is not a loadable ONNX model.
    """
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "onnx", "Running ONNX models") from exc
    options = onnxruntime.SessionOptions()
    if not optimize:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    content = model.read_bytes() if isinstance(model, Path) else model
    try:
        return onnxruntime.InferenceSession(content, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ModelError(f"{source}: not a loadable ONNX model ({exc}); re-export the model.") from exc


def read_onnx_spec(model: bytes | Path, source: str = "model") -> ModelSpec:
    """The spec embedded in an ONNX model (metadata_props key "tumorscan").

    Raises:
        MissingDependencyError: onnxruntime is not installed.
        ModelError: not a loadable ONNX model.
        MetadataError: no or invalid tumorscan metadata.
    """
    session = onnx_session(model, source, optimize=False)
    return spec_from_text(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), source)


def read_model_file(path: Path) -> bytes:
    """The bytes of a model file, with typed errors for a missing or unsupported file.

    Raises:
        ModelError: no such file, or a suffix other than .tflite/.onnx.
    """
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ModelError(f"{path}: unknown model type {suffix or '(none)'!r}; pass a .tflite or .onnx file.")
    if not path.is_file():
        raise ModelError(f"{path}: no such model file; check the path.")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model file ({exc.strerror}).") from exc
    if not content:
        raise ModelError(f"{path}: the model file is empty (0 bytes); copy or export it again.")
    return content


def read_model_spec(path: str | Path) -> ModelSpec:
    """The spec embedded in a .tflite or .onnx file, dispatched on the suffix.

    Raises:
        ModelError: missing file, unknown suffix, malformed model.
        MetadataError: no or invalid tumorscan metadata.
    """
    path = Path(path)
    content = read_model_file(path)
    if path.suffix.lower() == ".onnx":
        return read_onnx_spec(content, str(path))
    return read_tflite_spec(content, str(path))
