"""Reading and writing `.keras` files: the model spec travels inside, and loading is safe.

A `.keras` file is a zip archive; the spec is stored as an extra entry `tumorscan.json`,
which Keras ignores when loading. Before any model code runs, the archive's `config.json`
is inspected: Lambda layers and layers from modules outside Keras are refused.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tumorscan.errors import ModelError
from tumorscan.spec import ModelSpec

SPEC_ENTRY = "tumorscan.json"
LEGACY_SUFFIXES = (".h5", ".hdf5")
TRUSTED_MODULE_PREFIXES = ("keras", "keras_hub", "tf_keras")


class UnsafeModelError(ModelError):
    """A model file holds code we will not execute (Lambda or foreign layers)."""

    code = "unsafe_model"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
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


def read_keras_spec(path: Path) -> ModelSpec | None:
    """The spec stored in a `.keras` file by `save_keras`, or None for a foreign model."""
    try:
        with zipfile.ZipFile(path) as archive:
            if SPEC_ENTRY not in archive.namelist():
                return None
            return ModelSpec.from_json(archive.read(SPEC_ENTRY), source=str(path))
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{path}: not a .keras archive ({exc}).") from exc


def _layer_configs(config: Any) -> list[dict[str, Any]]:
    """Every nested object config that names a class (layers, nested models, initializers...)."""
    found: list[dict[str, Any]] = []
    if isinstance(config, dict):
        if "class_name" in config:
            found.append(config)
        for value in config.values():
            found.extend(_layer_configs(value))
    elif isinstance(config, list):
        for item in config:
            found.extend(_layer_configs(item))
    return found


def check_keras_archive(path: Path) -> None:
    """Refuse archives whose config holds Lambda layers or classes from foreign modules."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ModelError(
            f"{path}: not a valid .keras archive ({exc}); save the model with model.save('x.keras')."
        ) from exc
    for item in _layer_configs(config):
        name = item.get("class_name")
        module = str(item.get("module") or "keras")
        if name == "Lambda":
            raise UnsafeModelError(
                f"{path}: holds a Lambda layer, which would run arbitrary code; replace it with stock layers "
                "(for example Rescaling or Normalization) and save again."
            )
        if not module.startswith(TRUSTED_MODULE_PREFIXES):
            raise UnsafeModelError(
                f"{path}: layer {name!r} comes from module {module!r}, outside Keras; tumorscan only loads "
                "models built from stock Keras layers."
            )


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
    import keras

    if is_legacy:
        if path.is_dir():
            return keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
        return keras.models.load_model(path, compile=False, safe_mode=True)
    check_keras_archive(path)
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise ModelError(f"{path}: Keras could not load the model ({exc}).") from exc
