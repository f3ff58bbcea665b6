"""tumorscan: brain-MRI tumour classifiers from training to a Raspberry Pi."""

from .errors import (
    DatasetError,
    ImageError,
    ImageTooLargeError,
    MetadataError,
    MissingDependencyError,
    ModelError,
    TumorscanError,
    UnsupportedFormatError,
)
from .images import load_pixels
from .spec import InputSpec, ModelSpec

__version__ = "0.1.0"

__all__ = [
    "DatasetError",
    "ImageError",
    "ImageTooLargeError",
    "InputSpec",
    "MetadataError",
    "MissingDependencyError",
    "ModelError",
    "ModelSpec",
    "TumorscanError",
    "UnsupportedFormatError",
    "__version__",
    "load_pixels",
]
