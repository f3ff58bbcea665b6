"""Typed errors. Every message names the file involved and says what to do."""

from __future__ import annotations


class TumorscanError(Exception):
    """Base class of every error this package raises on purpose."""

    code = "error"


class ImageError(TumorscanError):
    """A scan could not be read or converted to model input."""

    code = "bad_image"


class UnsupportedFormatError(ImageError):
    """A file's extension or content is not an image format we accept."""

    code = "unsupported_format"


class ImageTooLargeError(ImageError):
    """A scan's dimensions exceed the safety limit (checked before decoding)."""

    code = "image_too_large"


class ModelError(TumorscanError):
    """A model file is missing, malformed, tampered with or unsafe."""

    code = "bad_model"


class MetadataError(ModelError):
    """A model file carries no or invalid tumorscan metadata."""

    code = "bad_metadata"


class DatasetError(TumorscanError):
    """A dataset folder is missing, empty or not laid out as class folders."""

    code = "bad_dataset"


class MissingDependencyError(TumorscanError):
    """An optional dependency is not installed; the message names the pip extra."""

    code = "missing_dependency"

    def __init__(self, module: str, extra: str | None, purpose: str) -> None:
        requirement = f"tumorscan[{extra}]" if extra else module  # None: no extra installs it
        super().__init__(
            f"{purpose} needs the Python package '{module}', which is not installed. "
            f"Install it with: pip install '{requirement}'"
        )
        self.module = module
        self.extra = extra
