"""Models made elsewhere: a SavedModel folder, labels checked before any work, parity's usage errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tumorscan.export.cli import export_command, parity_command
from tumorscan.export.graph import OutputShapeError, check_probabilities
from tumorscan.folders import scan_dataset
from tumorscan.images import load_pixels
from tumorscan.metadata import read_model_spec


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A small classifier saved with `model.export` (a SavedModel folder), its input size left dynamic."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    folder = tmp_path_factory.mktemp("savedmodel") / "sm"
    model.export(str(folder))
    return folder, model


def test_a_saved_model_exports_with_the_given_input_size(
    saved_model: tuple[Path, object], tmp_path: Path, sample_train: Path, sample_test: Path, run_model: object
) -> None:
    folder, model = saved_model
    out = tmp_path / "e"
    arguments = [str(folder), "--allow-legacy", "--int8", "--calibration", str(sample_train)]
    arguments += [
        "--labels",
        "a,b,c,d",
        "--preprocess",
        "rescale",
        "--input-size",
        "24x24",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(export_command, [*arguments, "--mode", "fp32"])
    assert result.exit_code == 0, result.output
    pixels = np.stack([load_pixels(scan.path, (24, 24)) for scan in scan_dataset(sample_test)])
    expected = np.asarray(model(pixels.astype(np.float32) / 255.0))  # type: ignore[operator]
    np.testing.assert_allclose(run_model(out / "sm-fp32.tflite", pixels), expected, atol=1e-5)  # type: ignore[operator]
    assert read_model_spec(out / "sm-int8.tflite").input.size == (24, 24)
    assert {p.name for p in out.glob("*.onnx")} == {"sm-fp32.onnx", "sm-int8.onnx"}


def test_a_saved_model_with_a_dynamic_size_asks_for_input_size(
    saved_model: tuple[Path, object], tmp_path: Path
) -> None:
    folder, _ = saved_model
    arguments = [str(folder), "--allow-legacy", "--labels", "a,b,c,d", "--preprocess", "rescale"]
    result = CliRunner().invoke(export_command, [*arguments, "--out", str(tmp_path / "e")])
    assert result.exit_code == 1 and "pass --input-size HxW" in result.output


@pytest.mark.parametrize(
    ("labels", "says"),
    [("a,a,b,c", "label 'a' appears twice"), ("a,,b", "a label is empty"), ("a", "at least two labels")],
)
def test_bad_labels_are_refused_before_any_work(
    foreign_logits_model: Path, tmp_path: Path, labels: str, says: str
) -> None:
    out = tmp_path / "out"
    arguments = [str(foreign_logits_model), "--labels", labels, "--preprocess", "rescale", "--logits"]
    result = CliRunner().invoke(export_command, [*arguments, "--out", str(out)])
    assert result.exit_code == 2 and says in result.output
    assert not out.exists()


def test_parity_refuses_a_file_it_cannot_compare_with_exit_2(
    foreign_logits_model: Path, exported_files: dict[str, Path], sample_train: Path
) -> None:
    arguments = [str(foreign_logits_model), str(exported_files["tflite-int8"]), "--data", str(sample_train)]
    result = CliRunner().invoke(parity_command, arguments)
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_a_logits_message_shows_rounded_numbers(foreign_logits_model: Path) -> None:
    from tumorscan.train.keras_file import load_keras

    model = load_keras(foreign_logits_model)
    pixels = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(OutputShapeError) as error:
        check_probabilities(model, pixels, False, "m.keras")
    message = str(error.value)
    assert "row sums [" in message and re.findall(r"\d\.\d{4,}", message) == [], message
