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


class UnreadableFileError(ImageError):
    """A scan file exists but cannot be opened or read (name too long, permissions, I/O error)."""

    code = "unreadable_file"


class MissingFileError(ImageError):
    """A scan path names nothing."""

    code = "no_such_file"


class DanglingLinkError(ImageError):
    """A symbolic link whose target does not exist."""

    code = "dangling_link"


class LinkLoopError(ImageError):
    """A symbolic link that leads back to itself or to a folder that contains it."""

    code = "link_loop"


class SpecialFileError(ImageError):
    """A path that is not a regular file: a FIFO, socket, device or folder."""

    code = "special_file"


class DicomAttributeError(ImageError):
    """A DICOM attribute the pixels depend on is missing a usable value (e.g. a non-numeric RescaleSlope)."""

    code = "bad_dicom_attribute"


class EmptyImageError(ImageError):
    """Degenerate pixels: an empty array, non-finite values or a flat image after windowing."""

    code = "empty_image"


class UnexpectedError(TumorscanError):
    """A failure nobody anticipated while reading one input (a bug: please report it with the file)."""

    code = "unexpected_error"


class ModelError(TumorscanError):
    """A model file is missing, malformed, tampered with or unsafe."""

    code = "bad_model"


class MetadataError(ModelError):
    """A model file carries no or invalid tumorscan metadata."""

    code = "bad_metadata"


class ModelIntegrityError(ModelError):
    """A model file's content does not match the hash its metadata carries: it was modified."""

    code = "modified_model"


class DatasetError(TumorscanError):
    """A dataset folder is missing, empty or not laid out as class folders."""

    code = "bad_dataset"


class SiteError(DatasetError):
    """A new site's folder cannot be checked or adapted on as it is."""

    code = "bad_site"


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
