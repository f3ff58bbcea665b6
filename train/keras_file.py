"""Reading and writing `.keras` files: the model spec travels inside, and loading is safe.

A `.keras` file is a zip archive; the spec is stored as an extra entry `tumorscan.json`,
which Keras ignores when loading. Before Keras reads anything, the archive is checked: every
entry must be unencrypted, use a compression zipfile reads, and stay within `MAX_ENTRY_BYTES`; the
`config.json` (at most `MAX_CONFIG_BYTES`, nested at most `MAX_CONFIG_NESTING` deep) must hold no
Lambda layer and no class from a package outside Keras. A legacy `.h5` file (with `--allow-legacy`)
gets the same config check through h5py before Keras opens it.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tumorscan.errors import MetadataError, ModelError
from tumorscan.spec import ModelSpec

SPEC_ENTRY = "tumorscan.json"
SAVE_HINT = "save the model with model.save('x.keras')"
LEGACY_SUFFIXES = (".h5", ".hdf5")
SERVING_ENDPOINT = "serving_default"
TRUSTED_PACKAGES = frozenset({"keras", "keras_hub", "tf_keras"})
"""Top-level packages whose layer classes are loaded (compared exactly: 'kerasevil' is foreign)."""
READABLE_COMPRESSIONS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
MAX_ENTRY_BYTES = 4 << 30
MAX_CONFIG_BYTES = 64 << 20
MAX_CONFIG_NESTING = 200


class UnsafeModelError(ModelError):
    """A model file holds code we will not execute (Lambda or foreign layers)."""

    code = "unsafe_model"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes; of a folder (a SavedModel), of each file's relative path and sha256."""
    if path.is_dir():
        digest = hashlib.sha256()
        for member in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{member.relative_to(path).as_posix()}\0{file_sha256(member)}\n".encode())
        return digest.hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_keras(model: Any, path: Path, spec: ModelSpec, extra: Mapping[str, bytes] | None = None) -> None:
    """Save `model` to `path` (atomically) with `spec` (and `extra` entries) stored inside the archive."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.keras")
    model.save(partial)
    with zipfile.ZipFile(partial, "a") as archive:
        archive.writestr(SPEC_ENTRY, spec.to_json())
        for name, content in (extra or {}).items():
            archive.writestr(name, content)
    partial.replace(path)


def copy_with_spec(
    source: Path, path: Path, spec: ModelSpec, extra: Mapping[str, bytes] | None = None
) -> None:
    """Copy the `.keras` archive `source` to `path` (atomically), its spec (and `extra` entries) replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.keras")
    try:
        with zipfile.ZipFile(source) as original, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as copy:
            replaced = {SPEC_ENTRY: spec.to_json().encode(), **(extra or {})}
            for item in original.infolist():
                if item.filename not in replaced:
                    copy.writestr(item, original.read(item.filename))
            for name, content in replaced.items():
                copy.writestr(name, content)
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{source}: not a .keras archive ({exc}).") from exc
    partial.replace(path)


def _open_archive(path: Path) -> zipfile.ZipFile:
    """Open a .keras archive and check every entry before anything is read from it.

    Raises:
        ModelError: not a zip archive, or an encrypted, unreadable or oversized entry.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a .keras archive ({exc}); {SAVE_HINT}.") from exc
    for entry in archive.infolist():
        problem = None
        if entry.flag_bits & 0x1:
            problem = "is encrypted"
        elif entry.compress_type not in READABLE_COMPRESSIONS:
            problem = f"uses an unknown compression method ({entry.compress_type})"
        elif entry.file_size > MAX_ENTRY_BYTES:
            problem = f"is {entry.file_size:,} bytes uncompressed, over the {MAX_ENTRY_BYTES:,} limit"
        if problem is not None:
            archive.close()
            raise ModelError(
                f"{path}: archive entry {entry.filename!r} {problem}; save the model again with model.save()."
            )
    return archive


def _read_entry(archive: zipfile.ZipFile, name: str, path: Path, limit: int = MAX_CONFIG_BYTES) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError as exc:
        raise ModelError(f"{path}: the archive holds no {name}; {SAVE_HINT}.") from exc
    if info.file_size > limit:
        raise ModelError(f"{path}: {name} is {info.file_size:,} bytes, over the {limit:,} limit.")
    try:
        with archive.open(info) as stream:
            return stream.read(limit + 1)[:limit]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise ModelError(f"{path}: cannot read {name} from the archive ({exc}).") from exc


def read_keras_spec(path: Path) -> ModelSpec | None:
    """The spec stored in a `.keras` file by `save_keras`, or None for a foreign model.

    Raises:
        ModelError: a malformed archive (see `_open_archive`); MetadataError: an invalid spec.
    """
    with _open_archive(path) as archive:
        if SPEC_ENTRY not in archive.namelist():
            return None
        return ModelSpec.from_json(_read_entry(archive, SPEC_ENTRY, path), source=str(path))


def require_keras_spec(path: Path, hint: str) -> ModelSpec:
    """The spec stored in a `.keras` file; `hint` says what to do when it holds none.

    Raises:
        MetadataError: the file holds no tumorscan spec (a model saved elsewhere).
        ModelError: the file is not a `.keras` archive.
    """
    spec = read_keras_spec(path)
    if spec is None:
        raise MetadataError(f"{path}: holds no tumorscan spec (labels, input size); {hint}")
    return spec


def _layer_configs(config: Any) -> list[dict[str, Any]]:
    """Every nested object config that names a class (layers, nested models, initializers...).

    Iterative, so a deeply nested config cannot exhaust the stack.
    """
    found: list[dict[str, Any]] = []
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "class_name" in item:
                found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _parse_config(text: bytes | str, path: Path) -> Any:
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ModelError(f"{path}: the model config nests too deeply to be a Keras model.") from exc
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{path}: the model config is not valid JSON ({exc}).") from exc


def check_config(config: Any, path: Path) -> None:
    """Refuse a model config holding Lambda layers or classes from packages outside Keras.

    Raises:
        UnsafeModelError: a Lambda layer or a foreign class.
    """
    for item in _layer_configs(config):
        name = item.get("class_name")
        module = str(item.get("module") or "keras")
        if name == "Lambda":
            raise UnsafeModelError(
                f"{path}: holds a Lambda layer, which would run arbitrary code; replace it with stock layers "
                "(for example Rescaling or Normalization) and save again."
            )
        if module.split(".")[0] not in TRUSTED_PACKAGES:
            raise UnsafeModelError(
                f"{path}: layer {name!r} comes from module {module!r}, outside Keras; tumorscan only loads "
                "models built from stock Keras layers."
            )


def check_keras_archive(path: Path) -> None:
    """Check a .keras archive (entries, config size and nesting, layers) before Keras reads it.

    Raises:
        ModelError: a malformed archive or config; UnsafeModelError: Lambda or foreign layers.
    """
    with _open_archive(path) as archive:
        config = _parse_config(_read_entry(archive, "config.json", path), path)
    check_config(config, path)


def check_h5_file(path: Path) -> None:
    """Check a legacy .h5 model's config (read with h5py) before Keras opens the file.

    Raises:
        ModelError: not a readable HDF5 model file; UnsafeModelError: Lambda or foreign layers.
    """
    import h5py

    try:
        with h5py.File(path, "r") as file:
            text = file.attrs.get("model_config")
    except Exception as exc:  # h5py raises OSError and its own types for corrupt files
        raise ModelError(f"{path}: not a readable HDF5 model file ({exc}).") from exc
    if text is None:
        raise ModelError(f"{path}: the HDF5 file holds no model_config; save the model with model.save().")
    if isinstance(text, bytes) and len(text) > MAX_CONFIG_BYTES:
        raise ModelError(f"{path}: the model config is over the {MAX_CONFIG_BYTES:,} byte limit.")
    check_config(_parse_config(text, path), path)


def load_keras(path: Path, allow_legacy: bool = False) -> Any:
    """Load a Keras model safely.

    Args:
        path: a `.keras` file (or, with `allow_legacy`, an `.h5` file or SavedModel folder).
        allow_legacy: permit legacy formats, which cannot be inspected before loading.

    Raises:
        ModelError: missing, malformed or legacy file without `allow_legacy`.
        UnsafeModelError: Lambda or foreign layers.
    """
    if not path.exists():
        raise ModelError(f"{path}: no such model file.")
    is_legacy = path.is_dir() or path.suffix.lower() in LEGACY_SUFFIXES
    if is_legacy and not allow_legacy:
        raise ModelError(
            f"{path}: legacy model formats (.h5, SavedModel) can run code on load and are refused by "
            "default; re-save it as .keras, or pass --allow-legacy if you trust the file."
        )
    if not is_legacy and path.suffix.lower() != ".keras":
        raise ModelError(f"{path}: expected a .keras file.")
    if is_legacy and not path.is_dir():
        check_h5_file(path)
    elif not is_legacy:
        check_keras_archive(path)
    import keras

    try:
        if path.is_dir():
            return _saved_model(path)
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except ModelError:
        raise
    except Exception as exc:  # Keras and TensorFlow raise many types on malformed files
        message = " ".join(str(exc).split())[:500]
        raise ModelError(f"{path}: Keras could not load the model ({message}).") from exc


def _saved_model(path: Path) -> Any:
    """A SavedModel folder as a Keras model whose input has the shape of its serving signature.

    A bare `TFSMLayer` has no input shape; wrapping it in a functional model with an Input of the
    signature's shape (batch and any dynamic sides left open, for --input-size) gives it one. The one
    output of the signature is the model's output.
    """
    import keras
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures.get(SERVING_ENDPOINT)
    if signature is None:
        raise ModelError(f"{path}: the SavedModel has no {SERVING_ENDPOINT!r} signature; re-export it.")
    args, kwargs = signature.structured_input_signature
    inputs = [*args, *kwargs.values()]
    if len(inputs) != 1 or inputs[0].shape.rank != 4:
        shapes = [str(spec.shape) for spec in inputs]
        raise ModelError(
            f"{path}: the serving signature takes {len(inputs)} input(s) {shapes}; tumorscan exports models "
            "with one image input (batch, height, width, channels)."
        )
    layer = keras.layers.TFSMLayer(str(path), call_endpoint=SERVING_ENDPOINT)
    pixels = keras.Input(shape=tuple(inputs[0].shape[1:]), name="pixels")
    outputs = layer(pixels)
    if isinstance(outputs, Mapping):
        if len(outputs) != 1:
            raise ModelError(
                f"{path}: the serving signature returns {len(outputs)} outputs ({', '.join(outputs)}); "
                "tumorscan exports classifiers with one output of class scores."
            )
        outputs = next(iter(outputs.values()))
    return keras.Model(pixels, outputs, name=path.name)
