"""The model spec inside model files: embedded in TFLite flatbuffers, read from TFLite and ONNX.

TFLite: a named entry of `Model.metadata` ("tumorscan") pointing at a buffer holding the spec's JSON.
ONNX: the `metadata_props` key "tumorscan" (read through onnxruntime, so the `onnx` package is not needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import MetadataError, MissingDependencyError, ModelError
from .integrity import seal_tflite
from .spec import METADATA_KEY, ModelSpec
from .tflite_reader import TFLITE_IDENTIFIER as TFLITE_IDENTIFIER  # re-exported from their home
from .tflite_reader import is_tflite as is_tflite
from .tflite_reader import tflite_metadata_entry as tflite_metadata_entry
from .tflite_reader import tflite_metadata_span as tflite_metadata_span

MODEL_SUFFIXES = (".tflite", ".onnx")


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as exc:
        raise MissingDependencyError("ai-edge-litert", "litert", "Writing TFLite metadata") from exc
    return schema_py_generated


def embed_tflite_metadata(model_bytes: bytes, spec: ModelSpec) -> bytes:
    """Return a copy of a TFLite model with `spec` stored as its "tumorscan" metadata entry.

    An existing entry of that name is replaced; other entries (e.g. the converter's own) are kept.
    The stored spec's `integrity` field holds the hash of the file (`tumorscan.integrity`).

    Raises:
        ModelError: the bytes are not a TFLite model, or one over 2 GB.
    """
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
