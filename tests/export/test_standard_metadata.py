"""Standard TFLite metadata: MediaPipe Tasks' ImageClassifier reads the labels of exported files."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path
from typing import Any

import mediapipe as mp
import numpy as np
import pytest
from click.testing import CliRunner
from mediapipe.tasks.metadata import metadata_schema_py_generated as metadata_schema
from mediapipe.tasks.python import BaseOptions
from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions

from tumorscan import Classifier
from tumorscan.errors import MetadataError, ModelError
from tumorscan.export.tflite import write_spec
from tumorscan.export.tflite_metadata import (
    LABELS_FILE,
    STANDARD_KEY,
    add_standard_metadata,
    probabilities_output,
    standard_metadata_command,
)
from tumorscan.folders import list_scans
from tumorscan.images import load_pixels
from tumorscan.metadata import read_model_spec, tflite_metadata_entry
from tumorscan.models import default_model_path

TFLITE_TARGETS = ("tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8")


def _mediapipe_top1(model: Path, scans: list[Path]) -> list[tuple[str, dict[str, float]]]:
    """MediaPipe's top-1 category name and every category's score per scan, fed pixels at the model size."""
    size = read_model_spec(model).input.size
    options = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(model)), max_results=-1)
    results = []
    with ImageClassifier.create_from_options(options) as classifier:
        for scan in scans:
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=load_pixels(scan, size))
            categories = classifier.classify(image).classifications[0].categories
            results.append((categories[0].category_name, {c.category_name: c.score for c in categories}))
    return results


def _assert_same_top1(model: Path, scans: list[Path]) -> None:
    classifier = Classifier.load(model)
    for scan, (top1, scores) in zip(scans, _mediapipe_top1(model, scans), strict=True):
        prediction = classifier.predict(scan)
        assert top1 == prediction.label, scan
        assert set(scores) == set(classifier.labels)
        # MediaPipe shows the file's own probabilities; the runtime applies the temperature it carries.
        raw = np.array([[scores[label] for label in classifier.labels]], dtype=np.float32)
        calibrated = classifier.trust.calibrate(raw)[0] if classifier.trust else raw[0]
        for label, probability in zip(classifier.labels, calibrated, strict=True):
            assert prediction.probabilities[label] == pytest.approx(probability, abs=0.01), (scan, label)


@pytest.mark.parametrize("target", TFLITE_TARGETS)
def test_mediapipe_names_the_same_top1_as_the_runtime(
    target: str, exported_files: dict[str, Path], sample_test: Path
) -> None:
    _assert_same_top1(exported_files[target], list_scans(sample_test))


def test_default_model_with_standard_metadata_in_mediapipe(tmp_path: Path, sample_test: Path) -> None:
    packaged = default_model_path().read_bytes()
    copy = tmp_path / "default.tflite"
    args = [str(default_model_path()), "--out", str(copy)]
    result = CliRunner().invoke(standard_metadata_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert default_model_path().read_bytes() == packaged
    assert read_model_spec(copy) == read_model_spec(default_model_path())
    _assert_same_top1(copy, list_scans(sample_test))


def test_packaged_default_model_names_its_labels_in_mediapipe(sample_test: Path) -> None:
    _assert_same_top1(default_model_path(), list_scans(sample_test))


def test_adding_to_a_file_that_is_not_tflite_is_one_line(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not a model")
    result = CliRunner().invoke(standard_metadata_command, [str(model)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {model}: not a TFLite model") and result.output.count("\n") == 1


def test_int8_output_is_uint8_which_mediapipe_accepts(exported_files: dict[str, Path]) -> None:
    spec = read_model_spec(exported_files["tflite-int8"])
    assert spec.quantization is not None
    assert (spec.quantization.input_dtype, spec.quantization.output_dtype) == ("uint8", "uint8")


def test_metadata_tables_and_labels_archive(exported_files: dict[str, Path]) -> None:
    path = exported_files["tflite-int8"]
    content = path.read_bytes()
    buffer = tflite_metadata_entry(content, STANDARD_KEY)
    assert buffer is not None
    assert metadata_schema.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0)
    metadata = metadata_schema.ModelMetadataT.InitFromPackedBuf(bytearray(buffer), 0)
    (subgraph,) = metadata.subgraphMetadata
    (image,) = subgraph.inputTensorMetadata
    assert image.content.contentProperties.colorSpace == metadata_schema.ColorSpaceType.RGB
    (unit,) = image.processUnits
    assert (list(unit.options.mean), list(unit.options.std)) == ([0.0], [1.0])
    (output,) = subgraph.outputTensorMetadata
    (labels,) = output.associatedFiles
    assert labels.name.decode() == LABELS_FILE
    assert labels.type == metadata_schema.AssociatedFileType.TENSOR_AXIS_LABELS
    with zipfile.ZipFile(path) as archive:
        text = archive.read(LABELS_FILE).decode("utf-8")
    assert tuple(text.splitlines()) == read_model_spec(path).labels


def test_rewriting_the_spec_keeps_the_standard_metadata(
    exported_files: dict[str, Path], tmp_path: Path, sample_test: Path
) -> None:
    """The spec is rewritten after export (parity results); the labels archive must survive it."""
    path = tmp_path / "model.tflite"
    shutil.copyfile(exported_files["tflite-int8"], path)
    spec = read_model_spec(path).with_updates(architecture="renamed")
    write_spec(path, spec)
    assert read_model_spec(path) == spec
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == [LABELS_FILE]
    _assert_same_top1(path, list_scans(sample_test)[:2])
    again = add_standard_metadata(path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(again)) as archive:
        assert archive.namelist() == [LABELS_FILE]


def test_labels_go_on_the_probabilities_output() -> None:
    labels = ("a", "b", "c")
    assert probabilities_output([(1, 1), (1, 3)], labels, "m") == 1
    assert probabilities_output([(1, 3), (1, 1)], labels, "m") == 0
    with pytest.raises(ModelError, match=r"no output of shape \[1, 3\]"):
        probabilities_output([(1, 4)], labels, "m")


def test_a_file_without_a_tumorscan_spec_is_refused(exported_files: dict[str, Path]) -> None:
    bare = _strip_spec(exported_files["tflite-fp32"].read_bytes())
    with pytest.raises(MetadataError, match="carries no tumorscan metadata"):
        add_standard_metadata(bare)


def _strip_spec(content: bytes) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    model.metadata = [m for m in model.metadata if m.name not in (b"tumorscan", "tumorscan")]
    builder = flatbuffers.Builder(len(content))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _mediapipe_heads(model: Path, images: list[Any]) -> list[list[dict[int, float]]]:
    """Every classification head MediaPipe returns per image: category index -> score."""
    size = read_model_spec(model).input.size
    options = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(model)), max_results=-1)
    with ImageClassifier.create_from_options(options) as classifier:
        return [
            [
                {c.index: c.score for c in head.categories}
                for head in classifier.classify(
                    mp.Image(image_format=mp.ImageFormat.SRGB, data=load_pixels(image, size))
                ).classifications
            ]
            for image in images
        ]


def test_mediapipe_sees_the_distance_output_as_a_second_head(sample_test: Path) -> None:
    """Head 1 is `training_distance`: index 0 the distance ratio (above 1: far), index 1 the constant 4."""
    from tumorscan.train.nonscans import non_mri_images

    scans = _mediapipe_heads(default_model_path(), list_scans(sample_test))
    foreign = _mediapipe_heads(default_model_path(), list(non_mri_images().values()))
    for heads in scans + foreign:
        assert len(heads) == 2 and len(heads[0]) == 4 and heads[1][1] == pytest.approx(4.0, abs=0.02)
    assert all(heads[1][0] <= 1 for heads in scans)
    assert sum(heads[1][0] > 1 for heads in foreign) >= len(foreign) // 2
