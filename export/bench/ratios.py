"""Benchmark ratios: how each is computed from the measured rows, and the target it should reach."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

from .report import (
    BASELINE,
    INFER,
    KERAS,
    TFLITE_INT8,
    ModelBench,
    Ratio,
    Timing,
)


def _latency(bench: ModelBench, name: str, kind: str = "latency_ms") -> float | None:
    row = bench.result(name)
    timing: Timing | None = getattr(row, kind) if row else None
    return timing.median if timing else None


def _quotient(numerator: float | None, denominator: float | None, scale: float = 1.0) -> float | None:
    if numerator is None or not denominator:
        return None
    return scale * numerator / denominator


def _size(bench: ModelBench, name: str) -> float | None:
    row = bench.result(name)
    return float(row.size_bytes) if row and row.size_bytes is not None else None


def _cold(bench: ModelBench, name: str) -> float | None:
    cold = bench.cold_start.get(name)
    return cold.median_s if cold else None


def _accuracy_drop(bench: ModelBench) -> float | None:
    keras, int8 = bench.result(KERAS), bench.result(TFLITE_INT8)
    if keras is None or int8 is None or keras.accuracy is None or int8.accuracy is None:
        return None
    return 100.0 * (keras.accuracy - int8.accuracy)


def _int8_rss(bench: ModelBench) -> float | None:
    row = bench.result(TFLITE_INT8)
    return row.peak_rss_mb if row else None


@dataclass(frozen=True)
class RatioTarget:
    """How one ratio is computed and what it should reach."""

    name: str
    description: str
    comparison: str
    target: float
    unit: str
    compute: Callable[[ModelBench], float | None]


COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}

RATIO_TARGETS: tuple[RatioTarget, ...] = (
    RatioTarget(
        "keras_over_tflite_int8_latency",
        "Keras-direct latency / TFLite int8 latency",
        ">=",
        5.0,
        "x",
        lambda b: _quotient(_latency(b, KERAS), _latency(b, TFLITE_INT8)),
    ),
    RatioTarget(
        "tflite_int8_size_share",
        "TFLite int8 size / .keras size",
        "<=",
        26.0,
        "%",
        lambda b: _quotient(_size(b, TFLITE_INT8), _size(b, KERAS), scale=100.0),
    ),
    RatioTarget(
        "onnx_fp32_over_int8_latency",
        "ONNX fp32 latency / ONNX int8 latency",
        ">=",
        2.0,
        "x",
        lambda b: _quotient(_latency(b, "onnx-fp32"), _latency(b, "onnx-int8")),
    ),
    RatioTarget(
        "tflite_int8_e2e_over_bare",
        "TFLite int8 end-to-end / bare interpreter call",
        "<=",
        1.5,
        "x",
        lambda b: _quotient(_latency(b, TFLITE_INT8, "e2e_ms"), _latency(b, TFLITE_INT8)),
    ),
    RatioTarget(
        "keras_over_infer_cold_start",
        "Keras cold start / tumor-infer cold start",
        ">=",
        5.0,
        "x",
        lambda b: _quotient(_cold(b, KERAS), _cold(b, INFER)),
    ),
    RatioTarget("infer_cold_start_s", "tumor-infer cold start", "<", 0.5, " s", lambda b: _cold(b, INFER)),
    RatioTarget("tflite_int8_peak_rss_mb", "TFLite int8 process peak RSS", "<=", 150.0, " MB", _int8_rss),
    RatioTarget(
        "tflite_int8_accuracy_drop_points",
        "Accuracy drop, Keras -> TFLite int8",
        "<=",
        1.0,
        " points",
        _accuracy_drop,
    ),
)


def _pipeline(bench: ModelBench, name: str, numerator: str, denominator: str) -> float | None:
    row = bench.result(name)
    speed = row.pipeline if row else None
    return _quotient(speed[numerator], speed[denominator]) if speed else None


def _single(bench: ModelBench, name: str, numerator: str) -> float | None:
    """One-scan timings of the pipeline measurement (interleaved), over its bare call."""
    row = bench.result(name)
    speed = row.pipeline if row else None
    return _quotient(speed[numerator]["median"], speed["bare_ms"]["median"]) if speed else None


SPEED_TARGETS: tuple[RatioTarget, ...] = (
    RatioTarget(
        "tflite_int8_e2e_over_bare_now",
        "TFLite int8 file->label / bare call, interleaved",
        "<=",
        2.0,
        "x",
        lambda b: _single(b, TFLITE_INT8, "e2e_ms"),
    ),
    RatioTarget(
        "tflite_int8_e2e_full_decode_over_bare",
        "  same, full JPEG decode (before)",
        "<=",
        2.0,
        "x",
        lambda b: _single(b, TFLITE_INT8, "e2e_full_decode_ms"),
    ),
    RatioTarget(
        "tflite_int8_predict_many_over_bare",
        "TFLite int8 predict_many (pipeline) / bare calls",
        "<=",
        1.5,
        "x",
        lambda b: _pipeline(b, TFLITE_INT8, "pipeline_s", "bare_calls_s"),
    ),
    RatioTarget(
        "tflite_int8_serial_over_bare",
        "  same, serial decode then batch (before)",
        "<=",
        1.5,
        "x",
        lambda b: _pipeline(b, TFLITE_INT8, "serial_s", "bare_calls_s"),
    ),
    RatioTarget(
        "onnx_fp32_over_baseline_int8_latency",
        f"ONNX fp32 latency / ONNX int8 {BASELINE} latency",
        ">=",
        2.0,
        "x",
        lambda b: _quotient(_latency(b, "onnx-fp32"), _latency(b, f"onnx-int8 {BASELINE}")),
    ),
)
"""Decoding, pipeline and int8 layer choice, each beside the way it was done before."""


def compute_ratios(bench: ModelBench) -> tuple[Ratio, ...]:
    """Every ratio of RATIO_TARGETS for one model, each passed or failed (None: not measured)."""
    ratios = []
    for target in (*RATIO_TARGETS, *SPEED_TARGETS):
        value = target.compute(bench)
        passed = None if value is None else COMPARISONS[target.comparison](value, target.target)
        ratios.append(
            Ratio(
                target.name, target.description, value, target.comparison, target.target, target.unit, passed
            )
        )
    return tuple(ratios)
