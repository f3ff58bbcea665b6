"""Int8 export that keeps the fewest layers in float: faster where int8 is slower, parity where it fails.

The search (after NNCF's accuracy control and ONNX Runtime's `nodes_to_exclude`):

1. Quantize every layer with the first activation-range method that passes the parity limits (the
   job's; for ONNX then percentile and entropy: clipping rare outliers can fix parity with no float
   layer), else the one that agrees best; rank the layers by their own quantization error (ONNX
   Runtime's qdq_loss_debug SQNR, or LiteRT's QuantizationDebugger RMSE / scale), worst first.
2. Speed: each convolution or dense layer is tried in float; it stays float when the whole model
   is then at least `speed_margin` faster, both in the fastest round and in the median of paired
   rounds (A/B timings, interleaved, on one held-out scan).
   The trust heads (`tumorscan.train.distance`, `tumorscan.train.scan_check`) are not candidates: they
   exist to flag, not to classify, and a float head between int8 layers does not load in XNNPACK.
3. Parity: while the file fails the parity limits on the held-out labelled scans, the worst-ranked
   layer still quantized is reverted to float; a revert that does not raise agreement is stepped
   back. The search stops when parity passes, at `max_float` reverts, or when the ranking runs out.

Each format supplies a `Quantizer`; the chosen layers and why are stored in the file's spec
(`quantization.float_layers`, `quantization.auto_float`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from tumorscan.classifier import Classifier
from tumorscan.errors import DatasetError
from tumorscan.sections import AutoFloatRecord, FloatLayer, ParityLimits, ParityPoint, RankedLayer
from tumorscan.spec import ModelSpec
from tumorscan.train.batches import in_batches, keras_outputs
from tumorscan.train.distance import is_head_layer

from .parity import (
    SubsetParity,
    _without_manifest,
    compare_probabilities,
)

if TYPE_CHECKING:
    from .formats import ExportJob

RANKING_SAMPLES = 16
"""Held-out scans the layers are ranked on (the debuggers keep every activation of each in memory)."""
RANKING_SHOWN = 10
"""How many of the worst-ranked layers the spec lists."""
SPEED_ROUNDS = 15
SPEED_CALLS = 10
"""Each speed comparison: this many interleaved rounds of this many calls per file."""

Log = Callable[[str], None]


def _silent(message: str) -> None:
    """A log that says nothing."""


@dataclass(frozen=True)
class HeldOut:
    """Labelled scans that judge each try, and the original model's probabilities on them."""

    folder: str
    pixels: NDArray[np.uint8]
    truth: NDArray[np.int64]
    reference: NDArray[np.float32]
    labels: tuple[str, ...]
    names: tuple[str, ...]


def load_held_out(
    model: Any, spec: ModelSpec, data: Path, manifest: Path | None, progress: bool = False
) -> HeldOut:
    """The labelled scans of `data` (less the calibration scans of `manifest`) and the model's answers."""
    from tumorscan.train.data import load_dataset

    scans = load_dataset(data, spec.input.size, cache_dir=None, labels=spec.labels, progress=progress)
    rows = np.arange(len(scans), dtype=np.int64)
    if manifest is not None:
        rows, _ = _without_manifest(scans.sha256, rows, manifest)
    if not len(rows):
        raise DatasetError(f"{data}: no scans left to choose float layers on.")
    pixels = np.asarray(scans.pixels[rows])
    names = scans.relative_paths()
    return HeldOut(
        folder=str(data),
        pixels=pixels,
        truth=np.asarray(scans.label_ids[rows], dtype=np.int64),
        reference=keras_outputs(model, pixels),
        labels=tuple(spec.labels),
        names=tuple(names[row] for row in rows),
    )


@dataclass(frozen=True)
class AutoFloat:
    """How the search runs (see the module docstring)."""

    held_out: HeldOut
    limits: ParityLimits
    max_float: int
    speed_margin: float = 0.10
    """A float layer must make the model this much faster: on the shared 2-core development machine, paired
    rounds of two identical-speed files (int8 ONNX with and without one float dense layer that ONNX Runtime
    runs as fast either way) differed by 7%."""
    time_layers: bool = True
    threads: int = 2
    log: Log = _silent


@dataclass(frozen=True)
class Layer:
    """A quantized layer: its name as the quantizer knows it, its op, and its own quantization error."""

    name: str
    op: str
    error: float
    """Larger is worse."""
    error_text: str


class Quantizer(Protocol):
    """One format's int8 writer with a choice of float layers."""

    speed_ops: tuple[str, ...]
    """Ops worth timing in float (convolutions, dense layers)."""
    methods: tuple[str, ...]
    """Activation-range methods to try, the job's first."""
    method: str
    """The method `layers` and `write` use."""

    def layers(self, samples: NDArray[np.uint8]) -> list[Layer]:
        """Every quantized layer with its error on `samples`, worst first."""

    def write(self, float_layers: Sequence[str], path: Path) -> None:
        """Write the int8 model with these layers in float, its spec embedded, to `path`."""


def _parity(classifier: Classifier, held_out: HeldOut) -> SubsetParity:
    probabilities = in_batches(classifier.probabilities, held_out.pixels)
    return compare_probabilities(
        held_out.reference, probabilities, held_out.truth, held_out.labels, held_out.names
    )


def _passes(parity: SubsetParity, limits: ParityLimits) -> bool:
    return parity.agreement >= limits.min_agreement and parity.drop_points <= limits.max_drop


def _describe(parity: SubsetParity) -> ParityPoint:
    return ParityPoint(agreement=round(parity.agreement, 4), drop_points=round(parity.drop_points, 2))


def compare_speed(
    first: Classifier, second: Classifier, image: NDArray[np.uint8]
) -> tuple[float, float, float]:
    """Two models on one image, timed in interleaved rounds: the fastest round of each (ms per call), and
    the median over rounds of second / first (rounds pair the two under the same load)."""
    times: tuple[list[float], list[float]] = ([], [])
    for classifier in (first, second):
        classifier.probabilities(image)  # warm up
    for _ in range(SPEED_ROUNDS):
        for classifier, seconds in zip((first, second), times, strict=True):
            start = time.perf_counter()
            for _ in range(SPEED_CALLS):
                classifier.probabilities(image)
            seconds.append((time.perf_counter() - start) / SPEED_CALLS)
    ratio = float(np.median(np.divide(times[1], times[0])))
    return min(times[0]) * 1000, min(times[1]) * 1000, ratio


class _Tries:
    """Writes and loads candidate files in a temporary folder."""

    def __init__(self, quantizer: Quantizer, folder: Path, suffix: str, threads: int) -> None:
        self.quantizer, self.folder, self.suffix, self.threads = quantizer, folder, suffix, threads
        self.count = 0

    def load(self, float_layers: Sequence[str]) -> Classifier:
        self.count += 1
        path = self.folder / f"try{self.count}{self.suffix}"
        self.quantizer.write(float_layers, path)
        return Classifier.load(path, num_threads=self.threads)


@dataclass
class _Search:
    """The search so far: the layers kept in float, the current file and its parity."""

    tries: _Tries
    held_out: HeldOut
    log: Log
    chosen: dict[str, FloatLayer]
    current: Classifier
    parity: SubsetParity

    def keep(self, layer: Layer, reason: str, trial: Classifier, parity: SubsetParity) -> None:
        """Keep `layer` in float: `trial` (with its `parity`) becomes the current file."""
        self.chosen[layer.name] = FloatLayer(layer.name, layer.op, reason)
        self.current, self.parity = trial, parity
        self.log(f"  {layer.name}: {reason}")


def _all_int8(tries: _Tries, quantizer: Quantizer, options: AutoFloat) -> tuple[Classifier, SubsetParity]:
    """The all-int8 file of the first method that passes parity, else of the best one (step 1)."""
    tried: list[tuple[str, Classifier, SubsetParity]] = []
    for method in quantizer.methods:
        quantizer.method = method
        trial = tries.load([])
        parity = _parity(trial, options.held_out)
        tried.append((method, trial, parity))
        options.log(
            f"  all int8, {method} ranges: agreement {parity.agreement:.2%}, "
            f"drop {parity.drop_points:.2f} points"
        )
        if _passes(parity, options.limits):
            break
    method, current, parity = max(tried, key=lambda t: (_passes(t[2], options.limits), t[2].agreement))
    quantizer.method = method
    return current, parity


def _float_for_speed(search: _Search, ranked: list[Layer], quantizer: Quantizer, options: AutoFloat) -> None:
    """Keep in float each timed layer whose float version makes the whole model faster (step 2)."""
    image = search.held_out.pixels[:1]
    timed = [x for x in ranked if x.op in quantizer.speed_ops] if options.time_layers else []
    for layer in timed:
        trial = search.tries.load([*search.chosen, layer.name])
        int8_ms, float_ms, ratio = compare_speed(search.current, trial, image)
        if max(float_ms / int8_ms, ratio) < 1 - options.speed_margin:  # both views must agree
            reason = (
                f"faster in float: model call {float_ms:.3f} ms instead of {int8_ms:.3f} ms "
                f"(median paired ratio {ratio:.2f})"
            )
            search.keep(layer, reason, trial, _parity(trial, search.held_out))


def _float_for_parity(search: _Search, ranked: list[Layer], options: AutoFloat) -> None:
    """While parity fails, revert the worst-ranked int8 layers to float, keeping those that help (step 3)."""
    reverts = 0
    for layer in (x for x in ranked if x.name not in search.chosen):
        if _passes(search.parity, options.limits) or reverts >= options.max_float:
            break
        trial = search.tries.load([*search.chosen, layer.name])
        found = _parity(trial, search.held_out)
        if found.agreement <= search.parity.agreement:
            search.log(f"  {layer.name} in float: agreement {found.agreement:.2%}, no better; stepped back")
            continue
        reason = (
            f"parity: quantization error {layer.error_text}; agreement {search.parity.agreement:.2%} -> "
            f"{found.agreement:.2%}"
        )
        search.keep(layer, reason, trial, found)
        reverts += 1


def choose_float_layers(
    quantizer: Quantizer, suffix: str, options: AutoFloat
) -> tuple[list[FloatLayer], AutoFloatRecord]:
    """Run the search; returns the float layers and a summary for the spec (`quantization.auto_float`)."""
    held_out, log = options.held_out, options.log
    samples = held_out.pixels[:: max(1, len(held_out.pixels) // RANKING_SAMPLES)][:RANKING_SAMPLES]
    with tempfile.TemporaryDirectory(prefix="tumorscan-autofloat-") as folder:
        tries = _Tries(quantizer, Path(folder), suffix, options.threads)
        current, parity = _all_int8(tries, quantizer, options)
        all_int8 = parity
        ranked = [x for x in quantizer.layers(samples) if not is_head_layer(x.name)]
        log(
            f"  {len(ranked)} quantized layers; worst: "
            + ", ".join(f"{x.name} ({x.error_text})" for x in ranked[:3])
        )
        search = _Search(tries, held_out, log, {}, current, parity)
        _float_for_speed(search, ranked, quantizer, options)
        _float_for_parity(search, ranked, options)
    chosen, parity = search.chosen, search.parity
    passed = _passes(parity, options.limits)
    summary = AutoFloatRecord(
        held_out=held_out.folder,
        scans=len(held_out.truth),
        limits=options.limits,
        max_float=options.max_float,
        all_int8=_describe(all_int8),
        chosen=_describe(parity),
        passed=passed,
        ranking=tuple(RankedLayer(x.name, x.op, x.error_text) for x in ranked[:RANKING_SHOWN]),
    )
    log(f"  kept {len(chosen)} layers in float; parity {'passes' if passed else 'still fails'}")
    return list(chosen.values()), summary


def choose_float(quantizer: Quantizer, suffix: str, job: ExportJob) -> tuple[list[str], dict[str, Any]]:
    """The layers to keep float for an int8 job, and the spec's `quantization` entries recording why.

    Without `job.auto_float`: none, and nothing to record.
    """
    if job.auto_float is None:
        return [], {}
    job.auto_float.log(f"Choosing float layers for {job.path.name} on {job.auto_float.held_out.folder}")
    chosen, summary = choose_float_layers(quantizer, suffix, job.auto_float)
    return [layer.name for layer in chosen], {"float_layers": tuple(chosen), "auto_float": summary}
