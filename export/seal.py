"""`tumor-seal`: a .tflite or .onnx classifier made elsewhere, given labels and preprocessing, becomes a
file tumorscan runs, checks and (with --sign) trusts.

The file's graph is left as it is. Its input (NHWC or NCHW, 3 channels, float or uint8) and output (one
score per label; at most one output) are read through the runtime's own backends; the scores must be
probabilities on a few random images (a model ending in logits is refused). The spec records the labels,
the input size, the preprocessing, and that the runtime applies it (`normalized_by: runtime`), and seals
the file with its integrity hash (`tumorscan.integrity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from tumorscan.backends import Backend, choose_backend, open_backend
from tumorscan.classifier import Classifier
from tumorscan.cli_support import user_errors, version_option
from tumorscan.errors import ModelError, TumorscanError
from tumorscan.files import atomic_write_bytes
from tumorscan.integrity import check_self_contained
from tumorscan.metadata import embed_tflite_metadata, is_tflite, read_model_file
from tumorscan.normalize import model_input
from tumorscan.quiet import quiet_unless_verbose
from tumorscan.signing import check_private_key, sign_file
from tumorscan.spec import METADATA_KEY, NORMALIZATIONS, InputSpec, ModelSpec, labels_problem
from tumorscan.train.keras_file import file_sha256

from .cli import labels_option, sign_option, size_option
from .exporter import provenance
from .formats import import_optional

CHECK_IMAGES = 4
PROBABILITY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class SealOptions:
    """What a file made elsewhere does not say about itself."""

    labels: tuple[str, ...]
    preprocess: str
    input_size: tuple[int, int] | None = None
    architecture: str | None = None


def _layout(shape: tuple[int, ...], source: str) -> str:
    if len(shape) == 4 and shape[3] == 3:
        return "NHWC"
    if len(shape) == 4 and shape[1] == 3:
        return "NCHW"
    raise ModelError(
        f"{source}: input shape {list(shape)} is not one RGB image (batch, height, width, 3) or "
        "(batch, 3, height, width); tumor-seal takes image classifiers with 3 colour channels."
    )


def _size(
    shape: tuple[int, ...], layout: str, requested: tuple[int, int] | None, source: str
) -> tuple[int, int]:
    own = shape[1:3] if layout == "NHWC" else shape[2:4]
    if -1 in own:
        if requested is None:
            raise ModelError(f"{source}: the model's input size is dynamic; pass --input-size HxW.")
        return requested
    if requested is not None and requested != own:
        raise ModelError(
            f"{source}: the model takes {own[0]}x{own[1]} images, not {requested[0]}x{requested[1]}."
        )
    return (int(own[0]), int(own[1]))


def _input_spec(backend: Backend, options: SealOptions, source: str) -> InputSpec:
    tensor = backend.input
    layout = _layout(tensor.shape, source)
    if backend.distance is not None:
        raise ModelError(f"{source}: the model has two outputs; tumor-seal takes one output of class scores.")
    if not tensor.quantized and tensor.dtype == np.uint8 and options.preprocess != "none":
        raise ModelError(
            f"{source}: the model takes raw uint8 pixels and normalises them itself; pass --preprocess none."
        )
    height, width = _size(tensor.shape, layout, options.input_size, source)
    return InputSpec(height, width, normalization=options.preprocess, normalized_by="runtime", layout=layout)


def _check_outputs(backend: Backend, spec: ModelSpec, source: str) -> None:
    """One score per label, and probabilities on a few random images."""
    if len(backend.output.shape) != 2 or backend.output.shape[1] != len(spec.labels):
        raise ModelError(
            f"{source}: the model outputs shape {list(backend.output.shape)}, not one score for each of the "
            f"{len(spec.labels)} labels ({', '.join(spec.labels)}); pass one label per output."
        )
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (CHECK_IMAGES, *spec.input.size, 3), dtype=np.uint8)
    scores = backend.run(model_input(pixels, spec.input))
    sums = scores.sum(axis=1)
    if scores.min() < -PROBABILITY_TOLERANCE or np.abs(sums - 1).max() > PROBABILITY_TOLERANCE:
        raise ModelError(
            f"{source}: the outputs are not probabilities (row sums {[round(float(t), 3) for t in sums]}); "
            "tumor-seal takes models ending in a softmax: export the model with one."
        )


def _embed(content: bytes, spec: ModelSpec, source: str) -> bytes:
    if is_tflite(content):
        return embed_tflite_metadata(content, spec)
    onnx = import_optional("onnx", "Sealing ONNX files")
    from .onnx import set_spec

    try:
        proto = onnx.load_from_string(content)
    except Exception as exc:  # onnx raises DecodeError and others on a malformed file
        raise ModelError(f"{source}: not a readable ONNX file ({exc}).") from exc
    set_spec(proto, spec)
    serialized: bytes = proto.SerializeToString()
    return serialized


def seal_model(model: Path, out: Path, options: SealOptions) -> Classifier:
    """Write `model` with a tumorscan spec to `out` and load it back (the check that it runs).

    Raises:
        TumorscanError: (or a subclass) a bad label list, a file tumorscan cannot run, one already
            carrying a spec, a model that is not an image classifier, or `out` being `model`.
    """
    source = str(model)
    problem = labels_problem(options.labels)
    if problem is not None:
        raise TumorscanError(f"{problem}; pass one distinct name per output.")
    if out.resolve() == model.resolve():
        raise TumorscanError(f"{out}: is the model itself; choose another --out file.")
    content = read_model_file(model)
    if model.suffix.lower() == ".onnx":
        check_self_contained(content, source)
    backend = open_backend(choose_backend(model.suffix.lower()), content, source)
    if backend.metadata():
        raise TumorscanError(
            f"{source}: already carries a tumorscan spec ({METADATA_KEY}); it needs no seal."
        )
    spec = ModelSpec(
        labels=options.labels,
        input=_input_spec(backend, options, source),
        architecture=options.architecture or model.stem,
        source_sha256=file_sha256(model),
        provenance=provenance(),
    )
    spec.validate(source)
    _check_outputs(backend, spec, source)
    atomic_write_bytes(out, _embed(content, spec, source))
    return Classifier.load(out)


@click.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--labels", required=True, callback=labels_option, help="Comma-separated class names, in output order."
)
@click.option(
    "--preprocess",
    required=True,
    type=click.Choice(NORMALIZATIONS),
    help="What the model expects of RGB 0-255: rescale (0-1), symmetric (-1-1), caffe (BGR minus ImageNet "
    "means) or none (the graph normalises 0-255 itself).",
)
@click.option(
    "--input-size", callback=size_option, help="HEIGHTxWIDTH, for a model whose input size is dynamic."
)
@click.option("--architecture", help="Name recorded in the spec. [default: the file name]")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Sealed file. [default: MODEL-sealed beside MODEL]",
)
@sign_option
@quiet_unless_verbose
@version_option
@user_errors
def seal_command(
    model: Path,
    labels: tuple[str, ...],
    preprocess: str,
    input_size: tuple[int, int] | None,
    architecture: str | None,
    out: Path | None,
    sign: Path | None,
) -> None:
    """Give a .tflite or .onnx classifier MODEL made elsewhere the labels and preprocessing tumorscan needs.

    The graph is kept as it is; the file gets tumorscan's spec and integrity hash, and then runs with
    tumor-infer and the Classifier API. Exit status 2 for a file that is not such a classifier.
    """
    out = out or model.with_name(f"{model.stem}-sealed{model.suffix}")
    options = SealOptions(labels, preprocess, input_size, architecture)
    try:
        if sign is not None:
            check_private_key(sign)
        classifier = seal_model(model, out, options)
    except ModelError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"wrote {out}: {classifier.identity}", err=True)
    if sign is not None:
        click.echo(f"signed {sign_file(out, sign)}", err=True)
