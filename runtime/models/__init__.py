"""Models packaged with tumorscan: `default.tflite`, used when no model is named."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError

DEFAULT_MODEL_NAME = "default.tflite"


def default_model_path() -> Path:
    """The packaged default model.

    Raises:
        ModelError: no default model is packaged in this installation.
    """
    path = Path(__file__).with_name(DEFAULT_MODEL_NAME)
    if not path.is_file():
        raise ModelError(f"no default model is packaged ({path} is absent); pass --model PATH.")
    return path
