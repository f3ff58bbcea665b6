"""Standard TFLite image-classifier metadata, read by MediaPipe Tasks, the TFLite Task Library and
Android Studio's model binding.

The standard metadata is a `ModelMetadata` flatbuffer (TFLite Support's `metadata_schema.fbs`, file
identifier M001) stored as the model's "TFLITE_METADATA" entry, describing the input as an RGB image
(normalisation mean 0, std 1: the graph normalises RGB 0-255 itself) and the probabilities output,
whose labels are an associated file `labels.txt` (TENSOR_AXIS_LABELS). Associated files travel in a
ZIP archive appended after the flatbuffer, so this metadata is written last: re-serialising the model
(as writing the tumorscan spec does) drops the ZIP, and `add_standard_metadata` must run again.
The tables are built with the schema's generated module shipped in the `mediapipe` wheel.

For a file exported before: `python -m tumorscan.export.tflite_metadata MODEL.tflite [--out OUT]`.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import click

from tumorscan.cli_support import user_errors
from tumorscan.errors import ModelError
from tumorscan.files import atomic_write_bytes
from tumorscan.metadata import (
    embed_tflite_metadata,
    read_model_file,
    read_tflite_spec,
    set_tflite_metadata_entry,
)
from tumorscan.quiet import quiet_unless_verbose
from tumorscan.spec import ModelSpec

from .formats import import_optional

STANDARD_KEY = "TFLITE_METADATA"
"""Name of the model metadata entry readers look for."""
METADATA_IDENTIFIER = b"M001"
LABELS_FILE = "labels.txt"
MIN_PARSER_VERSION = "1.0.0"
"""Every table written here exists since version 1.0.0 of the metadata schema."""


def _schema() -> Any:
    return import_optional(
        "mediapipe.tasks.metadata.metadata_schema_py_generated", "Writing standard TFLite metadata"
    )


def output_shapes(model_bytes: bytes) -> list[tuple[int, ...]]:
    """The shapes of the model's output tensors, in output order (first subgraph)."""
    from ai_edge_litert import schema_py_generated as tflite

    subgraph = tflite.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0).subgraphs[0]
    return [tuple(int(d) for d in subgraph.tensors[index].shape) for index in subgraph.outputs]


def probabilities_output(shapes: list[tuple[int, ...]], labels: tuple[str, ...], source: str) -> int:
    """Index of the output holding one probability per label: the first of shape [1, len(labels)].

    Raises:
        ModelError: no output has that shape.
    """
    for index, shape in enumerate(shapes):
        if shape == (1, len(labels)):
            return index
    raise ModelError(
        f"{source}: no output of shape [1, {len(labels)}] to carry the {len(labels)} labels "
        f"(outputs {[list(shape) for shape in shapes]}); re-export the model with tumor-export."
    )


def _input_metadata(schema: Any, spec: ModelSpec) -> Any:
    image = schema.ImagePropertiesT()
    image.colorSpace = schema.ColorSpaceType.RGB
    content = schema.ContentT()
    content.contentPropertiesType = schema.ContentProperties.ImageProperties
    content.contentProperties = image
    normalization = schema.NormalizationOptionsT()
    normalization.mean, normalization.std = [0.0], [1.0]
    unit = schema.ProcessUnitT()
    unit.optionsType = schema.ProcessUnitOptions.NormalizationOptions
    unit.options = normalization
    stats = schema.StatsT()
    stats.min, stats.max = [0.0], [255.0]
    tensor = schema.TensorMetadataT()
    tensor.name = "image"
    tensor.description = (
        f"RGB scan resized to {spec.input.height}x{spec.input.width} ({spec.input.resize}), "
        "pixel values 0-255; the model normalises them itself."
    )
    tensor.content, tensor.processUnits, tensor.stats = content, [unit], stats
    return tensor


def _output_metadata(schema: Any, labelled: bool) -> Any:
    content = schema.ContentT()
    content.contentPropertiesType = schema.ContentProperties.FeatureProperties
    content.contentProperties = schema.FeaturePropertiesT()
    tensor = schema.TensorMetadataT()
    tensor.content = content
    if labelled:
        labels = schema.AssociatedFileT()
        labels.name = LABELS_FILE
        labels.description = "Class names, one per line, in output order."
        labels.type = schema.AssociatedFileType.TENSOR_AXIS_LABELS
        stats = schema.StatsT()
        stats.min, stats.max = [0.0], [1.0]
        tensor.name, tensor.description = "probabilities", "Probability of each class."
        tensor.associatedFiles, tensor.stats = [labels], stats
    return tensor


def standard_metadata(spec: ModelSpec, shapes: list[tuple[int, ...]], source: str = "model") -> bytes:
    """The ModelMetadata flatbuffer of an image classifier with `spec` and outputs of these shapes."""
    import flatbuffers

    schema = _schema()
    labelled = probabilities_output(shapes, spec.labels, source)
    subgraph = schema.SubGraphMetadataT()
    subgraph.name = "image_classifier"
    subgraph.inputTensorMetadata = [_input_metadata(schema, spec)]
    subgraph.outputTensorMetadata = [_output_metadata(schema, i == labelled) for i in range(len(shapes))]
    metadata = schema.ModelMetadataT()
    metadata.name = f"tumorscan {spec.architecture}"
    metadata.description = f"Brain-MRI classifier of {len(spec.labels)} classes: {', '.join(spec.labels)}."
    metadata.version = spec.quantization.mode if spec.quantization else ""
    metadata.author = "tumorscan"
    metadata.subgraphMetadata = [subgraph]
    metadata.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(1024)
    builder.Finish(metadata.Pack(builder), file_identifier=METADATA_IDENTIFIER)
    return bytes(builder.Output())


def append_labels(model_bytes: bytes, labels: tuple[str, ...]) -> bytes:
    """The model followed by the associated-files archive holding `labels.txt` (stored uncompressed).

    Like TFLite Support's writer, the archive is opened in append mode over the model bytes, so its
    offsets count from the start of the file.
    """
    buffer = io.BytesIO(model_bytes)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(LABELS_FILE, "".join(f"{label}\n" for label in labels))
    return buffer.getvalue()


def add_standard_metadata(model_bytes: bytes, source: str = "model") -> bytes:
    """A copy of a tumorscan TFLite model that also carries the standard image-classifier metadata.

    The tumorscan spec already embedded supplies the labels and input size; an older standard entry
    and its archive are replaced. The runtime keeps reading the tumorscan entry.

    Raises:
        ModelError: not a TFLite model, or no output matches the labels.
        MetadataError: the file carries no tumorscan spec.
    """
    return with_standard_metadata(model_bytes, read_tflite_spec(model_bytes, source), source)


def with_standard_metadata(model_bytes: bytes, spec: ModelSpec, source: str = "model") -> bytes:
    """A copy of a TFLite model with the standard metadata for `spec`, `spec` itself embedded and sealed
    after it (the new entry changes the flatbuffer), then the label archive appended.

    Raises:
        ModelError: not a TFLite model, or no output matches the labels.
    """
    metadata = standard_metadata(spec, output_shapes(model_bytes), source)
    with_entry = set_tflite_metadata_entry(model_bytes, STANDARD_KEY, metadata)
    return append_labels(embed_tflite_metadata(with_entry, spec), spec.labels)


def add_standard_metadata_to_file(path: Path, out: Path | None = None) -> Path:
    """Add the standard metadata to a tumorscan .tflite file, in place or into `out` (atomically)."""
    target = out or path
    atomic_write_bytes(target, add_standard_metadata(read_model_file(path), str(path)))
    return target


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here. [default: MODEL]")
@quiet_unless_verbose
@user_errors
def standard_metadata_command(model: Path, out: Path | None) -> None:
    """Add the standard image-classifier metadata to a tumorscan MODEL.tflite exported earlier."""
    target = add_standard_metadata_to_file(model, out)
    click.echo(f"Wrote {target}: standard metadata with {LABELS_FILE} beside the tumorscan spec.")


if __name__ == "__main__":
    standard_metadata_command()
