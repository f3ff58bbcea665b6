"""Foreign Keras classifiers: baked normalisation, appended softmax, labels and input size from options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tumorscan.errors import MetadataError, ModelError, TumorscanError
from tumorscan.export.exporter import ExportOptions, export_model
from tumorscan.export.formats import select_targets
from tumorscan.export.graph import OutputShapeError, prepare_model
from tumorscan.folders import scan_dataset
from tumorscan.images import load_pixels
from tumorscan.metadata import read_model_spec
from tumorscan.train.keras_file import file_sha256, load_keras, require_keras_spec

RunModel = Callable[[Path, np.ndarray], np.ndarray]
THREE = ("cat", "dog", "fox")


def _fp32(tmp_path: Path, formats: str = "tflite", **options: object) -> ExportOptions:
    return ExportOptions(targets=select_targets(formats, "fp32"), out_dir=tmp_path / "out", **options)  # type: ignore[arg-type]


def test_logits_without_the_flag_are_refused_with_a_hint(foreign_logits_model: Path, tmp_path: Path) -> None:
    with pytest.raises(OutputShapeError, match="look like logits: pass --logits"):
        export_model(foreign_logits_model, _fp32(tmp_path, labels=THREE, preprocess="rescale"))
    assert not (tmp_path / "out" / "foreign-fp32.tflite").exists()


def test_normalisation_and_softmax_are_baked_into_both_formats(
    foreign_logits_model: Path, tmp_path: Path, sample_test: Path, run_model: RunModel
) -> None:
    options = _fp32(tmp_path, "tflite,onnx", labels=THREE, preprocess="rescale", logits=True)
    report = export_model(foreign_logits_model, options)
    pixels = np.stack([load_pixels(scan.path, (32, 32)) for scan in scan_dataset(sample_test)])
    logits = np.asarray(load_keras(foreign_logits_model)(pixels.astype(np.float32) / 255.0))
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for file in report.files:
        np.testing.assert_allclose(run_model(Path(file.path), pixels), expected, atol=1e-5)
        spec = read_model_spec(Path(file.path))
        assert spec.labels == THREE and spec.input.size == (32, 32)
        assert spec.input.normalization == "rescale" and spec.architecture == "foreign"
        assert spec.source_sha256 == file_sha256(foreign_logits_model)


def test_reading_a_spec_a_foreign_model_lacks_says_what_to_do(
    foreign_logits_model: Path, tiny_keras_model: Path
) -> None:
    with pytest.raises(MetadataError) as error:
        require_keras_spec(foreign_logits_model, "do X")
    assert str(error.value) == f"{foreign_logits_model}: holds no tumorscan spec (labels, input size); do X"
    assert require_keras_spec(tiny_keras_model, "do X").architecture == "cnn2"


def test_a_model_without_spec_needs_labels_and_preprocess(foreign_logits_model: Path, tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match=r"no tumorscan spec; pass --labels .* and --preprocess"):
        export_model(foreign_logits_model, _fp32(tmp_path, logits=True))


def test_a_model_with_its_own_spec_refuses_foreign_options(tiny_keras_model: Path, tmp_path: Path) -> None:
    with pytest.raises(TumorscanError, match=r"--labels, --preprocess .* must be left out"):
        export_model(tiny_keras_model, _fp32(tmp_path, labels=THREE, preprocess="none"))


def _imagenet(mode: str) -> Callable[[np.ndarray], np.ndarray]:
    def reference(pixels: np.ndarray) -> np.ndarray:
        from keras.applications.imagenet_utils import preprocess_input

        return np.asarray(preprocess_input(pixels.copy(), mode=mode))

    return reference


@pytest.mark.parametrize(
    ("normalization", "reference"),
    [
        ("rescale", lambda pixels: pixels / 255.0),
        ("symmetric", _imagenet("tf")),
        ("caffe", _imagenet("caffe")),
        ("none", lambda pixels: pixels),
    ],
)
def test_baked_normalisation_matches_keras_applications(
    normalization: str, reference: Callable[[np.ndarray], np.ndarray]
) -> None:
    import keras

    identity = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Identity()], name="identity")
    pixels = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3)).astype(np.float32)
    prepared = prepare_model(identity, (4, 4), normalization)
    np.testing.assert_allclose(np.asarray(prepared(pixels)), reference(pixels), rtol=1e-5, atol=1e-4)


def test_a_dynamic_input_size_comes_from_the_option(tmp_path: Path, run_model: RunModel) -> None:
    import keras

    model = keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ],
        name="dynamic",
    )
    path = tmp_path / "dynamic.keras"
    model.save(path)
    with pytest.raises(ModelError, match=r"input size is dynamic .* pass --input-size"):
        export_model(path, _fp32(tmp_path, labels=THREE, preprocess="none"))
    report = export_model(path, _fp32(tmp_path, labels=THREE, preprocess="none", input_size=(24, 40)))
    exported = Path(report.files[0].path)
    assert read_model_spec(exported).input.size == (24, 40)
    probabilities = run_model(exported, np.zeros((1, 24, 40, 3), dtype=np.uint8))
    np.testing.assert_allclose(probabilities.sum(), 1.0, atol=1e-5)


def test_legacy_h5_exports_only_with_allow_legacy(tmp_path: Path) -> None:
    import keras

    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    path = tmp_path / "legacy.h5"
    model.save(path)
    options = {"labels": THREE, "preprocess": "symmetric", "logits": True}
    with pytest.raises(ModelError, match="--allow-legacy"):
        export_model(path, _fp32(tmp_path, **options))
    report = export_model(path, _fp32(tmp_path, allow_legacy=True, **options))
    assert read_model_spec(Path(report.files[0].path)).input.normalization == "symmetric"
