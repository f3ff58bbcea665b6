"""The model zoo: keras.applications families and the shapes real files come in, in every format and mode.

Each model is built with `weights=None` at a small input size, saved as `.keras` and exported like a
file made elsewhere (`--labels`, `--preprocess`, `--logits`). fp32 files must match Keras within
FP32_TOLERANCE; the other files must run through `tumorscan.Classifier`. Two tiny models holding the
tricky layers run in the fast suite; everything runs with `-m slow`.

The zoo table of docs/results.md comes from `python tests/export/test_zoo.py [MODEL NAME...]` (prints it in
Markdown, for every model or the ones named).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tumorscan import Classifier
from tumorscan.errors import TumorscanError
from tumorscan.export.adapt import GREY_WEIGHTS
from tumorscan.export.exporter import ExportOptions, export_model
from tumorscan.export.formats import TARGETS, ExportTarget
from tumorscan.folders import scan_dataset
from tumorscan.images import load_pixels

LABELS = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
FP32_TOLERANCE = 1e-4
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "mri"
WORKS = "works"
KNOWN_CELLS = {("EfficientNetB0", "tflite-fp32"): "differs from Keras by 1"}
"""Cells that are not WORKS, and why. EfficientNetB0 at random weights: on the noise image its logits reach
3e3 and LiteRT's default XNNPACK fp32 kernels pick another class than Keras; LiteRT's reference kernels
(`OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`) pick Keras's class on every check image."""


@dataclass(frozen=True)
class ZooModel:
    """A classifier as a user would bring it, and how it is exported."""

    name: str
    build: Callable[[], Any]
    """Returns the Keras model (built with a fixed seed)."""
    preprocess: str = "none"
    """What the model expects of RGB 0-255, outside its graph (--preprocess)."""
    logits: bool = False
    input_size: tuple[int, int] | None = None

    def reference(self, model: Any, pixels: np.ndarray) -> np.ndarray:
        """Keras probabilities for RGB 0-255 pixels, computed without the export code."""
        x = pixels.astype(np.float32)
        if model.input_shape[-1] == 1:
            x = x @ np.asarray(GREY_WEIGHTS, dtype=np.float32)[:, np.newaxis]
        x = {"rescale": x / 255.0, "symmetric": x / 127.5 - 1.0, "none": x}[self.preprocess]
        outputs = model(x, training=False)
        scores = np.asarray(outputs[0] if isinstance(outputs, list) else outputs, dtype=np.float64)
        if self.logits:
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
        return scores


def _layers(model: Any) -> Iterator[Any]:
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _layers(layer)


def _estimate_batch_norm(model: Any) -> None:
    """Set each BatchNormalization's moving statistics to those of the sample training scans.

    At random weights, with the initial statistics, most families return the same probabilities for
    every image, which no comparison could fault; one training-mode pass at momentum 0 fixes that.
    """
    import keras

    norms = [layer for layer in _layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return
    pixels = np.stack(
        [load_pixels(scan.path, model.input_shape[1:3]) for scan in scan_dataset(SAMPLE / "train")]
    )
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.momentum = 0.0
    model(pixels.astype(np.float32), training=True)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum


def _seeded(build: Callable[[], Any]) -> Callable[[], Any]:
    def seeded() -> Any:
        import keras

        keras.utils.set_random_seed(0)
        model = build()
        _estimate_batch_norm(model)
        return model

    return seeded


def _application(family: str, size: int = 32, **kwargs: Any) -> ZooModel:
    """A keras.applications family without downloaded weights, with a logits head."""

    def build() -> Any:
        import keras

        return getattr(keras.applications, family)(
            weights=None,
            input_shape=(size, size, 3),
            classes=len(LABELS),
            classifier_activation=None,
            **kwargs,
        )

    return ZooModel(family, _seeded(build), logits=True)


def _sequential_backbone() -> Any:
    """A Sequential holding a MobileNetV2 backbone, [-1, 1] scaling inside, softmax head."""
    import keras

    backbone = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), include_top=False, pooling="avg", alpha=0.35
    )
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Rescaling(1 / 127.5, offset=-1),
            backbone,
            keras.layers.Dense(len(LABELS), activation="softmax"),
        ]
    )


def _tiny_block(channels: int) -> Any:
    """A nested functional model with the layers converters trip on: a Normalization holding its
    statistics as variables, a depthwise convolution written as a grouped Conv2D, exact GELU."""
    import keras

    inputs = keras.Input((None, None, channels))
    x = keras.layers.Normalization(mean=[0.3] * channels, variance=[0.1] * channels)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", groups=8, name="grouped_depthwise")(x)
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.Activation("gelu")(x)
    return keras.Model(inputs, x, name="block")


def _nested_list_output(channels: int = 3) -> Any:
    """Functional around a nested model, whose outputs are a one-element list of logits."""
    import keras

    inputs = keras.Input((24, 24, channels))
    x = _tiny_block(channels)(inputs)
    x = keras.layers.Flatten()(x)
    head = keras.layers.Dense(len(LABELS), kernel_initializer=keras.initializers.RandomNormal(stddev=0.1))
    return keras.Model(inputs, [head(x)])


def _dynamic_size() -> Any:
    """Input size (None, None): the size comes from --input-size."""
    import keras

    return keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(LABELS), activation="softmax"),
        ]
    )


FAST = (
    ZooModel("nested model, list output, logits", _seeded(_nested_list_output), "symmetric", logits=True),
    ZooModel("one-channel (grey) input", _seeded(lambda: _nested_list_output(1)), "rescale", logits=True),
)
ZOO = (
    _application("MobileNetV2"),
    _application("MobileNetV3Small"),
    _application("MobileNetV3Large"),
    _application("EfficientNetB0"),
    _application("EfficientNetV2B0"),
    _application("ResNet50"),
    _application("ResNet50V2"),
    _application("DenseNet121"),
    _application("Xception", size=71),
    _application("InceptionV3", size=75),
    _application("ConvNeXtTiny"),
    ZooModel("Sequential with a MobileNetV2 backbone", _seeded(_sequential_backbone), "none"),
    ZooModel("dynamic input size", _seeded(_dynamic_size), "rescale", input_size=(40, 32)),
    *FAST,
)


def _pixels(size: tuple[int, int]) -> np.ndarray:
    """The committed test scans, then black, white, red and noise images (models at random weights
    barely tell scans apart; these move their outputs)."""
    scans = np.stack([load_pixels(scan.path, size) for scan in scan_dataset(SAMPLE / "test")])
    others = np.zeros((4, *size, 3), dtype=np.uint8)
    others[1], others[2, ..., 0] = 255, 255
    others[3] = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    return np.concatenate([scans, others])


def output_spread(zoo: ZooModel) -> float:
    """How far the Keras probabilities move over the check images: how much an fp32 match proves."""
    model = zoo.build()
    probabilities = zoo.reference(model, _pixels(zoo.input_size or tuple(model.input_shape[1:3])))
    return float(np.ptp(probabilities, axis=0).max())


def _check_file(path: Path, target: ExportTarget, expected: np.ndarray, pixels: np.ndarray) -> str:
    """WORKS, or why the file is wrong: fp32 off Keras, or probabilities that are not probabilities."""
    classifier = Classifier.load(path)
    probabilities = classifier.probabilities(pixels)
    if classifier.labels != LABELS or probabilities.shape != expected.shape:
        return f"wrong labels or shape {probabilities.shape}"
    if target.mode == "fp32":
        difference = float(np.abs(probabilities - expected).max())
        return WORKS if difference <= FP32_TOLERANCE else f"differs from Keras by {difference:.2g}"
    sums = probabilities.sum(axis=1)
    return WORKS if np.all(np.abs(sums - 1) < 0.05) else f"rows sum to {np.round(sums, 2).tolist()}"


def export_zoo_model(
    zoo: ZooModel, folder: Path, targets: tuple[ExportTarget, ...] = TARGETS
) -> dict[str, str]:
    """Save `zoo` as .keras, export it to `targets` and check each file: {target name: WORKS or why not}.

    All targets are written in one export; when that stops, each is tried alone to name which fail.
    """
    model = zoo.build()
    source = folder / "model.keras"
    model.save(source)
    size = zoo.input_size or tuple(model.input_shape[1:3])
    pixels = _pixels(size)
    expected = zoo.reference(model, pixels)

    def export(chosen: tuple[ExportTarget, ...], out: Path) -> dict[str, str]:
        options = ExportOptions(
            targets=chosen,
            out_dir=out,
            calibration_root=SAMPLE / "train",
            labels=LABELS,
            preprocess=zoo.preprocess,
            logits=zoo.logits,
            input_size=zoo.input_size,
        )
        report = export_model(source, options)
        return {
            file.target: _check_file(Path(file.path), target, expected, pixels)
            for file, target in zip(report.files, chosen, strict=True)
        }

    try:
        return export(targets, folder / "all")
    except TumorscanError:
        results = {}
        for target in targets:
            try:
                results.update(export((target,), folder / target.name))
            except TumorscanError as exc:
                results[target.name] = str(exc).splitlines()[0]
        return results


@pytest.fixture(autouse=True)
def _free_models() -> Iterator[None]:
    """Free each test's models: TensorFlow keeps memory from one model to the next."""
    yield
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()


@pytest.mark.parametrize("zoo", FAST, ids=lambda zoo: zoo.name)
def test_tiny_models_with_tricky_layers_export_to_fp32_and_int8(zoo: ZooModel, tmp_path: Path) -> None:
    assert output_spread(zoo) > 0.05  # the fp32 comparison can fail
    targets = tuple(target for target in TARGETS if target.mode in ("fp32", "int8"))
    assert export_zoo_model(zoo, tmp_path, targets) == {target.name: WORKS for target in targets}


@pytest.mark.slow
@pytest.mark.parametrize("zoo", ZOO, ids=lambda zoo: zoo.name)
def test_every_zoo_model_exports_to_every_format_and_mode(zoo: ZooModel, tmp_path: Path) -> None:
    assert output_spread(zoo) > 0.05  # the fp32 comparison can fail
    expected = {target.name: KNOWN_CELLS.get((zoo.name, target.name), WORKS) for target in TARGETS}
    assert export_zoo_model(zoo, tmp_path) == expected


def zoo_row(name: str) -> str:
    """One row of the zoo table (docs/results.md): its cells (WORKS or the one-line reason), then its output
    spread."""
    import tempfile

    (zoo,) = (zoo for zoo in ZOO if zoo.name == name)
    with tempfile.TemporaryDirectory(prefix="tumorscan-zoo-") as folder:
        results = export_zoo_model(zoo, Path(folder))
    cells = [results[target.name] for target in TARGETS] + [f"{output_spread(zoo):.2g}"]
    return f"| {zoo.name} | " + " | ".join(cells) + " |"


def zoo_table(names: list[str]) -> str:
    """The zoo table (docs/results.md) for the models named (or all), each exported in its own process
    (TensorFlow keeps memory from one model to the next)."""
    import subprocess

    rows = ["| model | " + " | ".join(target.name for target in TARGETS) + " | output spread |"]
    rows.append("|---" * (len(TARGETS) + 2) + "|")
    for zoo in ZOO:
        if names and zoo.name not in names:
            continue
        child = subprocess.run(
            [sys.executable, __file__, "--row", zoo.name], capture_output=True, text=True, check=False
        )
        lines = child.stdout.splitlines()
        rows.append(
            lines[-1] if child.returncode == 0 and lines else f"| {zoo.name} | crashed: {child.returncode} |"
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--row"]:
        print(zoo_row(sys.argv[2]))
    else:
        print(zoo_table(sys.argv[1:]), end="")
