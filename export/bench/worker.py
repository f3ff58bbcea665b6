"""One benchmark measurement in a process of its own: `python -m tumorscan.export.bench.worker JOB.json`.

Each format runs in a fresh process, so its import, load time and peak memory are its own, and the
runtime formats never import TensorFlow (the worker reports whether it did). The job file, written
by `tumorscan.export.bench.run`, names the model, its format, the pre-decoded pixels and the settings;
the worker prints one JSON line of measurements and saves the model's probabilities on every scan.

`python -m tumorscan.export.bench.worker keras-predict MODEL.keras SCAN THREADS` classifies one scan
through Keras and prints its label: the cold-start reference for `tumor-infer`.
"""

from __future__ import annotations

import importlib
import itertools
import json
import math
import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tumorscan.errors import ModelError, TumorscanError

KERAS = "keras"
KERAS_PREDICT = "keras-predict"
MIN_THROUGHPUT_BATCHES = 2
PIPELINE_ROUNDS = 3

Pixels = NDArray[np.uint8]


@dataclass(frozen=True)
class Runner:
    """A loaded model, as the benchmark calls it.

    Attributes:
        prepare: pre-made pixels (N x H x W x 3 uint8) -> what `call` takes (done outside the timings).
        call: the bare model call on prepared pixels.
        scan: file in, label out (decoding and resizing included).
        probabilities: class probabilities of a batch of uint8 pixels.
        backend: what runs the model.
        size: (height, width) the model takes.
        source_sha256: sha256 of the .keras file the model was exported from, when it says.
        import_s: seconds to import the inference framework (TensorFlow and Keras, LiteRT, onnxruntime).
        load_s: seconds to load the model file.
    """

    prepare: Callable[[Pixels], Any]
    call: Callable[[Any], Any]
    scan: Callable[[str], str]
    probabilities: Callable[[Pixels], NDArray[np.float32]]
    backend: str
    size: tuple[int, int]
    source_sha256: str | None
    import_s: float
    load_s: float
    classifier: Any = None
    """The runtime's Classifier (runtime formats only): decode and pipeline timings."""


def keras_runner(path: Path, threads: int) -> Runner:
    """A .keras model called directly (`model(x, training=False)`), TensorFlow limited to `threads`."""
    started = time.perf_counter()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    from tumorscan.images import load_pixels
    from tumorscan.train.batches import keras_outputs
    from tumorscan.train.keras_file import load_keras, require_keras_spec

    imported = time.perf_counter()
    spec = require_keras_spec(path, "save it with tumor-train.")
    model = load_keras(path)
    loaded = time.perf_counter()

    def call(x: Any) -> Any:
        return model(x, training=False)

    def scan(source: str) -> str:
        pixels = load_pixels(source, spec.input.size)[np.newaxis].astype(np.float32)
        return spec.labels[int(np.argmax(np.asarray(call(pixels))[0]))]

    return Runner(
        prepare=lambda pixels: pixels.astype(np.float32),
        call=call,
        scan=scan,
        probabilities=lambda pixels: keras_outputs(model, pixels, batch_size=len(pixels)),
        backend=f"keras {keras.__version__} (TensorFlow {tf.__version__})",
        size=spec.input.size,
        source_sha256=None,
        import_s=imported - started,
        load_s=loaded - imported,
    )


def runtime_runner(path: Path, threads: int) -> Runner:
    """A .tflite or .onnx file through the runtime's Classifier, as a device runs it."""
    started = time.perf_counter()
    from tumorscan import Classifier
    from tumorscan.backends import BACKENDS, choose_backend
    from tumorscan.backends.tflite import INTERPRETER_MODULES

    name = choose_backend(path.suffix.lower())
    importlib.import_module(INTERPRETER_MODULES.get(name, BACKENDS[name].package))
    imported = time.perf_counter()
    classifier = Classifier.load(path, backend=name, num_threads=threads)
    loaded = time.perf_counter()
    return Runner(
        prepare=lambda pixels: pixels,
        call=classifier.probabilities,
        scan=lambda source: classifier.predict(source).label,
        probabilities=classifier.probabilities,
        backend=name,
        size=classifier.spec.input.size,
        source_sha256=classifier.spec.source_sha256,
        import_s=imported - started,
        load_s=loaded - imported,
        classifier=classifier,
    )


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB (1e6 bytes).

    Linux: VmHWM of /proc/self/status. `getrusage().ru_maxrss` is not used there, because a process
    started by a large parent inherits the parent's peak through fork and exec.
    """
    try:
        status = Path("/proc/self/status").read_text(encoding="utf-8")
    except OSError:
        kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kilobytes * (1 if sys.platform == "darwin" else 1024) / 1e6
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024 / 1e6


def timings(call: Callable[[], object], runs: int, warmup: int) -> list[float]:
    """Seconds of each of `runs` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """Median and 90th percentile, in milliseconds."""
    values = np.asarray(seconds) * 1000.0
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90))}


def read_pixels(job: dict[str, Any], start: int, stop: int) -> Pixels:
    """Rows start..stop of the job's raw N x H x W x 3 uint8 pixel file (only those rows are read)."""
    height, width = job["size"]
    image = height * width * 3
    data = np.fromfile(job["pixels"], dtype=np.uint8, count=(stop - start) * image, offset=start * image)
    return data.reshape(stop - start, height, width, 3)


def _throughput(runner: Runner, job: dict[str, Any]) -> float:
    """Scans per second through the model call at the job's batch size."""
    batch_size: int = job["batch_size"]
    first = read_pixels(job, 0, min(batch_size, job["count"]))
    batch = runner.prepare(first[np.arange(batch_size) % len(first)])
    rounds = max(MIN_THROUGHPUT_BATCHES, math.ceil(int(job["runs"]) / batch_size))
    seconds = timings(lambda: runner.call(batch), rounds, warmup=1)
    return batch_size * rounds / sum(seconds)


def _all_probabilities(runner: Runner, job: dict[str, Any]) -> NDArray[np.float32]:
    """Probabilities on every scan of the job, one batch in memory at a time."""
    count, batch_size = job["count"], job["batch_size"]
    rows = [
        runner.probabilities(read_pixels(job, start, min(start + batch_size, count)))
        for start in range(0, count, batch_size)
    ]
    return np.concatenate(rows).astype(np.float32)


def _full_decode_label(classifier: Any, source: str) -> str:
    """File in, label out as before half-scale decoding: the whole JPEG decoded, then resized.

    After decoding it takes the same path as `Classifier.predict` (input checks, abstention, the record).
    """
    from tumorscan.images import decode_scan, resize, to_rgb

    size = classifier.spec.input.size
    pixels = np.asarray(resize(to_rgb(decode_scan(source)), size), dtype=np.uint8)
    return str(classifier._predictions([source], pixels[np.newaxis])[0].label)


def decoders(size: tuple[int, int]) -> dict[str, Callable[[str], Pixels]]:
    """Ways to turn a scan file into model pixels: the rule (`load_pixels`) and the others measured beside it.

    full: the whole JPEG decoded (the rule before half-scale decoding). any_scale: Pillow's draft at
    the smallest DCT scale (1/2, 1/4 or 1/8) still at least the target. reduce: full decode, then
    `Image.reduce` by the largest whole factor, then the resize. Only `rule` is what models see.
    """
    from PIL import Image

    from tumorscan.images import decode_scan, load_pixels, resize, to_rgb

    def pixels(image: Image.Image) -> Pixels:
        return np.asarray(resize(to_rgb(image), size), dtype=np.uint8)

    def any_scale(source: str) -> Pixels:
        with Image.open(source) as image:
            image.draft(image.mode, (size[1], size[0]))
            return pixels(image)

    def reduce(source: str) -> Pixels:
        image = decode_scan(source)
        factor = max(1, min(image.width // size[1], image.height // size[0]))
        return pixels(image.reduce(factor) if factor > 1 else image)

    return {
        "rule": lambda source: load_pixels(source, size),
        "full": lambda source: pixels(decode_scan(source)),
        "any_scale": any_scale,
        "reduce": reduce,
    }


def decode_speed(size: tuple[int, int], scans: list[str], warmup: int) -> dict[str, Any]:
    """Each of `decoders` on each scan in turn: milliseconds, and how often it gives the rule's pixels."""
    ways = decoders(size)
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    same: dict[str, list[bool]] = {name: [] for name in ways}
    for index, scan in enumerate(scans):
        results = {}
        for name, way in ways.items():
            start = time.perf_counter()
            results[name] = way(scan)
            if index >= warmup:
                seconds[name].append(time.perf_counter() - start)
        for name, found in results.items():
            same[name].append(bool(np.array_equal(found, results["rule"])))
    return {
        name: {**summary_ms(values), "same_pixels": float(np.mean(same[name]))}
        for name, values in seconds.items()
    }


def _serial_many(classifier: Any, sources: list[str], batch_size: int) -> None:
    """predict_many as before the pipeline: decode each scan in turn, run each full batch."""
    from tumorscan.images import load_pixels

    size = classifier.spec.input.size
    for start in range(0, len(sources), batch_size):
        batch = [load_pixels(source, size) for source in sources[start : start + batch_size]]
        classifier.probabilities(np.stack(batch))


def pipeline_speed(runner: Runner, job: dict[str, Any]) -> dict[str, Any]:
    """Decode options and the many-scan pipeline against the bare model call, interleaved.

    One scan (each timed run: the three ways in turn on the same scan): the bare call on pre-decoded
    pixels, file in, label out with half-scale decoding (as now) and with a full decode (as before).
    Many scans (every scan of the data), in `PIPELINE_ROUNDS` rounds of the three ways in turn: the bare
    calls one scan at a time, the old serial loop, and `predict_many`; seconds are medians of the rounds.
    """
    classifier, sources = runner.classifier, job["all_scans"]
    one = read_pixels(job, 0, 1)
    singles: dict[str, Callable[[str], object]] = {
        "bare_ms": lambda scan: classifier.probabilities(one),
        "e2e_ms": classifier.predict,
        "e2e_full_decode_ms": lambda scan: _full_decode_label(classifier, scan),
    }
    single_seconds: dict[str, list[float]] = {name: [] for name in singles}
    for index, scan in enumerate(job["scans"]):  # warm-up scans first, then the timed ones
        for name, way in singles.items():
            start = time.perf_counter()
            way(scan)
            if index >= job["warmup"]:
                single_seconds[name].append(time.perf_counter() - start)
    pixels = read_pixels(job, 0, job["count"])
    ways: dict[str, Callable[[], object]] = {
        "bare_calls": lambda: [classifier.probabilities(pixels[i : i + 1]) for i in range(len(pixels))],
        "serial": lambda: _serial_many(classifier, sources, job["batch_size"]),
        "pipeline": lambda: classifier.predict_many(sources, batch_size=job["batch_size"]),
    }
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(PIPELINE_ROUNDS):
        for name, run in ways.items():
            seconds[name] += timings(run, 1, 0)
    return {
        **{name: summary_ms(values) for name, values in single_seconds.items()},
        "decode_ms": decode_speed(classifier.spec.input.size, job["scans"], job["warmup"]),
        "scans": len(sources),
        **{f"{name}_s": float(np.median(values)) for name, values in seconds.items()},
    }


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Every measurement of one model file; saves its probabilities to `job["probabilities"]`."""
    path = Path(job["model"])
    runner = (keras_runner if job["format"] == KERAS else runtime_runner)(path, job["threads"])
    if list(runner.size) != list(job["size"]):
        raise ModelError(
            f"{path}: takes {runner.size[0]}x{runner.size[1]} images, but the .keras model takes "
            f"{job['size'][0]}x{job['size'][1]}; re-export it from that model."
        )
    one = runner.prepare(read_pixels(job, 0, 1))
    latency = timings(lambda: runner.call(one), job["runs"], job["warmup"])
    scans: Iterator[str] = itertools.cycle(job["scans"])
    end_to_end = timings(lambda: runner.scan(next(scans)), job["runs"], job["warmup"])
    throughput = _throughput(runner, job)
    np.save(job["probabilities"], _all_probabilities(runner, job))
    return {
        "format": job["format"],
        "backend": runner.backend,
        "source_sha256": runner.source_sha256,
        "import_s": runner.import_s,
        "load_s": runner.load_s,
        "latency_ms": summary_ms(latency),
        "e2e_ms": summary_ms(end_to_end),
        "throughput": throughput,
        "peak_rss_mb": peak_rss_mb(),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "pipeline": pipeline_speed(runner, job) if runner.classifier and job.get("all_scans") else None,
    }


def main(argv: list[str]) -> int:
    """Run a job file, or classify one scan through Keras (`keras-predict MODEL SCAN THREADS`)."""
    try:
        if len(argv) == 4 and argv[0] == KERAS_PREDICT:
            print(keras_runner(Path(argv[1]), int(argv[3])).scan(argv[2]))
        elif len(argv) == 1:
            job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
            print(json.dumps(measure(job)))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except TumorscanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
