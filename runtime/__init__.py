"""tumorscan: brain-MRI tumour classifiers from training to a Raspberry Pi."""

from ._version import __version__
from .classifier import Classifier, ModelIdentity, Prediction, PredictionError
from .errors import (
    DatasetError,
    ImageError,
    ImageTooLargeError,
    MetadataError,
    MissingDependencyError,
    ModelError,
    ModelIntegrityError,
    TumorscanError,
    UnsupportedFormatError,
)
from .images import load_pixels
from .metadata import read_model_spec
from .spec import InputSpec, ModelSpec

__all__ = [
    "Classifier",
    "DatasetError",
    "ImageError",
    "ImageTooLargeError",
    "InputSpec",
    "MetadataError",
    "MissingDependencyError",
    "ModelError",
    "ModelIdentity",
    "ModelIntegrityError",
    "ModelSpec",
    "Prediction",
    "PredictionError",
    "TumorscanError",
    "UnsupportedFormatError",
    "__version__",
    "load_pixels",
    "read_model_spec",
]
