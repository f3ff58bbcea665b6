"""Models that are not single-input, single-output image classifiers, and layers a converter cannot hold:
each ends `tumor-export` with one line and exit status 1; a list output with --logits exports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tumorscan.export.cli import export_command
from tumorscan.metadata import read_model_spec

LABELS = "a,b,c"


def _export(model: Any, tmp_path: Path, *options: str) -> Any:
    path = tmp_path / "model.keras"
    model.save(path)
    arguments = [str(path), "--labels", LABELS, "--preprocess", "rescale", "--out", str(tmp_path / "out")]
    return CliRunner().invoke(export_command, [*arguments, "--mode", "fp32", *options])


def _error_line(result: Any) -> str:
    """The one line a refused export prints (after the progress lines), checking it is the only error."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def _trunk(channels: int = 3) -> tuple[Any, Any]:
    import keras

    inputs = keras.Input((16, 16, channels))
    return inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))


def _multi_output() -> Any:
    import keras

    inputs, x = _trunk()
    return keras.Model(inputs, [keras.layers.Dense(3)(x), keras.layers.Dense(2)(x)])


def _multi_input() -> Any:
    import keras

    first, x = _trunk()
    second = keras.Input((16, 16, 3))
    y = keras.layers.GlobalAveragePooling2D()(second)
    return keras.Model([first, second], keras.layers.Dense(3)(keras.layers.Concatenate()([x, y])))


def _sigmoid() -> Any:
    import keras

    inputs, x = _trunk()
    return keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid")(x))


def _sigmoid_nested() -> Any:
    import keras

    inner = _sigmoid()
    inputs = keras.Input((16, 16, 3))
    return keras.Model(inputs, inner(inputs))


def _not_an_image() -> Any:
    import keras

    return keras.Sequential([keras.Input((10,)), keras.layers.Dense(3, activation="softmax")])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (_multi_output, "has 1 inputs and 2 outputs; tumorscan exports classifiers with one image input"),
        (_multi_input, "has 2 inputs and 1 outputs"),
        (_sigmoid, "ends in a sigmoid (independent multi-label or binary scores)"),
        (_sigmoid_nested, "ends in a sigmoid"),
        (_not_an_image, r"expected one image input (batch, height, width, 3 or 1 channels), got (None, 10)"),
    ],
    ids=["multi-output", "multi-input", "sigmoid", "sigmoid-in-nested-model", "not-an-image"],
)
def test_models_that_are_not_image_classifiers_are_refused_in_one_line(
    build: Callable[[], Any], message: str, tmp_path: Path
) -> None:
    assert message in _error_line(_export(build(), tmp_path))
    assert not (tmp_path / "out" / "model-fp32.tflite").exists()


def test_a_list_output_with_logits_exports(tmp_path: Path) -> None:
    import keras

    inputs, x = _trunk()
    path = tmp_path / "model.keras"
    keras.Model(inputs, [keras.layers.Dense(3)(x)]).save(path)
    result = _export(keras.models.load_model(path), tmp_path, "--logits", "--format", "tflite")
    assert result.exit_code == 0, result.output
    assert read_model_spec(tmp_path / "out" / "model-fp32.tflite").labels == ("a", "b", "c")


def test_caffe_preprocessing_of_a_grey_model_is_refused(tmp_path: Path) -> None:
    import keras

    inputs, x = _trunk(channels=1)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    path = tmp_path / "grey.keras"
    model.save(path)
    result = CliRunner().invoke(
        export_command,
        [str(path), "--labels", LABELS, "--preprocess", "caffe", "--logits", "--out", str(tmp_path)],
    )
    assert "caffe preprocessing needs 3 colour channels" in _error_line(result)


def test_a_layer_onnx_cannot_hold_is_named_in_one_line(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 1)(inputs)
    x = keras.layers.Conv2D(4, 3, groups=2, name="grouped")(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    line = _error_line(_export(model, tmp_path, "--logits", "--format", "onnx"))
    assert (
        "layer " in line and "grouped" in line and "no ONNX conversion" in line and "--format tflite" in line
    )
