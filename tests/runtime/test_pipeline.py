"""Decoding ahead of inference: input order, one result per input, bounded work in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tumorscan import Classifier
from tumorscan.pipeline import decode_ahead


def test_results_come_in_input_order_even_when_later_items_finish_first() -> None:
    def slow_for_small(n: int) -> int:
        time.sleep(0.002 * (10 - n))
        if n == 7:
            raise ValueError("seven")
        return n * n

    out = []
    for item, future in decode_ahead(slow_for_small, range(10), ahead=4, workers=3):
        try:
            out.append((item, future.result()))
        except ValueError as exc:
            out.append((item, str(exc)))
    assert out == [(n, "seven" if n == 7 else n * n) for n in range(10)]


def test_items_are_read_lazily_and_work_in_flight_is_bounded() -> None:
    read = 0
    running = 0
    most = 0
    lock = threading.Lock()

    def items() -> Iterator[int]:
        nonlocal read
        for n in range(100):
            read += 1
            yield n

    def work(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.001)
        with lock:
            running -= 1
        return n

    pipeline = decode_ahead(work, items(), ahead=5, workers=2)
    first = [next(pipeline)[1].result() for _ in range(3)]
    assert first == [0, 1, 2]
    assert read <= 3 + 6  # the three taken, at most `ahead` queued, one being read
    assert most <= 2
    pipeline.close()  # leaving early cancels the rest and stops the threads
    assert read < 100


def test_classifier_pipeline_matches_one_by_one(
    tflite_int8: Path, sample_test: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans = sorted(sample_test.rglob("*.jpg"))
    sources = [*scans, sample_test / "missing.png", *reversed(scans)]
    classifier = Classifier.load(tflite_int8)
    expected = [classifier.predict(s) for s in scans]
    decoding_threads = set()

    import tumorscan.classifier as module

    real_load = module.load_pixels

    def spying_load(source: object, size: tuple[int, int]) -> object:
        decoding_threads.add(threading.current_thread().name)
        return real_load(source, size)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "load_pixels", spying_load)
    results = classifier.predict_many(sources, batch_size=3)
    assert [r.source for r in results] == [str(s) for s in sources]
    assert results[len(scans)].to_dict()["status"] == "error"
    for got, want in zip(results[: len(scans)], expected, strict=True):
        assert got == want
    assert decoding_threads and all(name.startswith("tumorscan-decode") for name in decoding_threads)
