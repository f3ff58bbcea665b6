"""The Classifier API: every model kind, every source kind, typed errors, backend choice, threads."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tumorscan.backends as backends
from tumorscan import Classifier, Prediction, PredictionError
from tumorscan.errors import MetadataError, MissingDependencyError, ModelError
from tumorscan.images import load_pixels
from tumorscan.metadata import embed_tflite_metadata, read_tflite_spec
from tumorscan.spec import InputSpec


@pytest.fixture(scope="module")
def scans(sample_test: Path) -> list[Path]:
    return sorted(sample_test.rglob("*.jpg"))


@pytest.fixture(scope="module")
def keras_probabilities(tiny_keras_model: Path, scans: list[Path]) -> np.ndarray:
    from tumorscan.train.keras_file import load_keras

    model = load_keras(tiny_keras_model)
    return np.asarray(model.predict(np.stack([load_pixels(s, (32, 32)) for s in scans]), verbose=0))


def _probabilities(classifier: Classifier, scans: list[Path]) -> np.ndarray:
    results = classifier.predict_many(scans)
    assert all(isinstance(r, Prediction) for r in results)
    return np.array([[r.probabilities[label] for label in classifier.labels] for r in results])  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fixture", "backend", "tolerance"),
    [
        ("tflite_fp32", "litert", 1e-5),
        ("tflite_int8", "litert", 0.03),
        ("tflite_int8_signed", "litert", 0.03),
        ("onnx_model", "onnxruntime", 1e-5),
    ],
)
def test_models_agree_with_keras(
    request: pytest.FixtureRequest,
    fixture: str,
    backend: str,
    tolerance: float,
    scans: list[Path],
    keras_probabilities: np.ndarray,
) -> None:
    classifier = Classifier.load(request.getfixturevalue(fixture))
    assert classifier.identity.backend == backend
    got = _probabilities(classifier, scans)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(got - keras_probabilities).max() < tolerance
    assert (got.argmax(axis=1) == keras_probabilities.argmax(axis=1)).mean() >= 0.75


@pytest.mark.parametrize(("fixture", "dtype"), [("tflite_int8", np.uint8), ("tflite_int8_signed", np.int8)])
def test_int8_models_read_their_own_quantization(
    request: pytest.FixtureRequest, fixture: str, dtype: type
) -> None:
    classifier = Classifier.load(request.getfixturevalue(fixture))
    tensor_in, tensor_out = classifier._backend.input, classifier._backend.output
    assert tensor_in.dtype == dtype and tensor_in.quantized
    assert tensor_out.dtype == dtype and tensor_out.quantized
    assert classifier.identity.quantization == "int8"


def test_quantization_arithmetic() -> None:
    signed = backends.TensorInfo((1, 2, 2, 3), np.dtype(np.int8), scale=1.0, zero_point=-128)
    pixels = np.array([0, 1, 128, 255], dtype=np.uint8).reshape(1, 2, 2, 1).repeat(3, axis=3)
    np.testing.assert_array_equal(
        backends.to_model_input(pixels, signed, "m")[0, :, :, 0].ravel(), [-128, -127, 0, 127]
    )
    coarse = backends.TensorInfo((1, 4), np.dtype(np.uint8), scale=2.0, zero_point=10)
    np.testing.assert_array_equal(
        backends.to_model_input(pixels, coarse, "m")[0, :, :, 0].ravel(), [10, 10, 74, 138]
    )
    output = backends.TensorInfo((1, 4), np.dtype(np.int8), scale=1 / 256, zero_point=-128)
    raw = np.array([[-128, 127, 0, -64]], dtype=np.int8)
    np.testing.assert_allclose(backends.to_scores(raw, output), [[0, 255 / 256, 0.5, 0.25]])
    floats = backends.TensorInfo((1, 2, 2, 3), np.dtype(np.float32))
    assert backends.to_model_input(pixels, floats, "m").dtype == np.float32
    with pytest.raises(ModelError, match="m: input type int8 without quantization"):
        backends.to_model_input(pixels, backends.TensorInfo((1,), np.dtype(np.int8)), "m")


def test_prediction_is_typed_frozen_and_names_its_model(tflite_fp32: Path, scans: list[Path]) -> None:
    classifier = Classifier.load(tflite_fp32)
    prediction = classifier.predict(scans[0])
    assert prediction.source == str(scans[0])
    assert prediction.label == max(prediction.probabilities, key=prediction.probabilities.__getitem__)
    assert prediction.confidence == prediction.probabilities[prediction.label]
    assert list(prediction.probabilities) == list(classifier.labels)
    assert prediction.model.file == "tiny_fp32.tflite"
    assert len(prediction.model.sha256) == 12
    assert (prediction.model.architecture, prediction.model.quantization) == ("cnn2", "fp32")
    assert prediction.top(2)[0][0] == prediction.label
    with pytest.raises(dataclasses.FrozenInstanceError):
        prediction.label = "other"  # type: ignore[misc]


def test_every_source_kind_gives_the_same_answer(tflite_fp32: Path, scans: list[Path]) -> None:
    classifier = Classifier.load(tflite_fp32)
    path = scans[0]
    with Image.open(path) as image:
        image.load()
        sources = [path, str(path), path.read_bytes(), image, np.asarray(image.convert("RGB"))]
        results = [classifier.predict(source) for source in sources]
    for result in results[1:3]:  # encoded sources: decoded the same way, reduced scale included
        assert result.probabilities == pytest.approx(results[0].probabilities, abs=1e-6)
    assert results[4].probabilities == pytest.approx(results[3].probabilities, abs=1e-6)
    # an image decoded by the caller at full scale is close to, not equal to, the reduced-scale decode
    assert results[3].probabilities == pytest.approx(results[0].probabilities, abs=0.05)
    assert results[2].source.endswith("bytes>")


def test_predict_many_keeps_order_and_never_raises(
    tflite_fp32: Path, scans: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(scans[0].read_bytes()[:2000])
    sources = [scans[0], broken, tmp_path / "missing.jpg", tmp_path / "notes.txt", scans[1], b"junk"]
    results = Classifier.load(tflite_fp32).predict_many(sources, batch_size=2)
    assert [type(r) for r in results] == [
        Prediction,
        PredictionError,
        PredictionError,
        PredictionError,
        Prediction,
        PredictionError,
    ]
    errors = [r for r in results if isinstance(r, PredictionError)]
    codes = ["bad_image", "no_such_file", "unsupported_format", "unsupported_format"]
    assert [e.code for e in errors] == codes
    assert all(e.source in e.message for e in errors)
    assert results[4].source == str(scans[1])


def test_onnx_batches_match_single_predictions(onnx_model: Path, scans: list[Path]) -> None:
    classifier = Classifier.load(onnx_model)
    batched = _probabilities(classifier, scans)
    single = np.array([list(classifier.predict(s).probabilities.values()) for s in scans])
    np.testing.assert_allclose(batched, single, atol=1e-6)


def test_backend_is_chosen_through_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    assert backends.choose_backend(".tflite") == "litert"
    assert backends.choose_backend(".onnx") == "onnxruntime"
    monkeypatch.setattr(backends, "is_installed", lambda name: name == "tflite-runtime")
    assert backends.choose_backend(".tflite") == "tflite-runtime"
    monkeypatch.setattr(backends, "is_installed", lambda name: False)
    with pytest.raises(MissingDependencyError, match=r"tumorscan\[onnx\]"):
        backends.choose_backend(".onnx")


def test_missing_backend_hints_name_what_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "is_installed", lambda name: False)
    with pytest.raises(MissingDependencyError) as runtime_error:
        backends.choose_backend(".tflite", "tflite-runtime")
    assert "Install it with: pip install 'tflite-runtime'" in str(runtime_error.value)
    with pytest.raises(MissingDependencyError) as litert_error:
        backends.choose_backend(".tflite")
    assert "Install it with: pip install 'tumorscan[litert]'" in str(litert_error.value)


def test_backend_override_is_checked(tflite_fp32: Path) -> None:
    with pytest.raises(backends.UnknownBackendError, match="choose one of litert"):
        Classifier.load(tflite_fp32, backend="tensorflow")
    with pytest.raises(ModelError, match=r"onnxruntime backend runs \.onnx models"):
        Classifier.load(tflite_fp32, backend="onnxruntime")
    if not backends.is_installed("tflite-runtime"):
        with pytest.raises(MissingDependencyError, match="tflite-runtime"):
            Classifier.load(tflite_fp32, backend="tflite-runtime")
    assert Classifier.load(tflite_fp32, backend="litert", num_threads=1).identity.backend == "litert"


def _respec(model: Path, tmp_path: Path, name: str, **changes: object) -> Path:
    content = model.read_bytes()
    path = tmp_path / name
    path.write_bytes(embed_tflite_metadata(content, read_tflite_spec(content).with_updates(**changes)))
    return path


def test_output_size_must_match_labels(tflite_fp32: Path, tmp_path: Path) -> None:
    path = _respec(tflite_fp32, tmp_path, "three.tflite", labels=("a", "b", "c"))
    with pytest.raises(ModelError, match=r"three\.tflite: output shape \[1, 4\] does not match the 3 labels"):
        Classifier.load(path)


def test_input_size_must_match_metadata(tflite_int8: Path, tmp_path: Path) -> None:
    path = _respec(tflite_int8, tmp_path, "big.tflite", input=InputSpec(64, 64))
    with pytest.raises(ModelError, match=r"big\.tflite: input shape \[1, 32, 32, 3\] does not match.*64, 64"):
        Classifier.load(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("random.tflite", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))),
        ("empty.tflite", b""),
        ("fake_identifier.tflite", b"\x10\x00\x00\x00TFL3" + b"\xff" * 200),
        ("random.onnx", bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8))),
    ],
)
def test_garbage_model_files_are_model_errors(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelError, match=name.replace(".", r"\.")):
        Classifier.load(path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_truncated_tflite_is_a_model_error(tflite_fp32: Path, tmp_path: Path, fraction: float) -> None:
    content = tflite_fp32.read_bytes()
    path = tmp_path / "cut.tflite"
    path.write_bytes(content[: int(len(content) * fraction)])
    with pytest.raises(ModelError, match=r"cut\.tflite"):
        Classifier.load(path)


def test_tampered_tflite_never_crashes(tflite_fp32: Path, tmp_path: Path) -> None:
    content = tflite_fp32.read_bytes()
    rng = np.random.default_rng(2)
    path = tmp_path / "tampered.tflite"
    for _ in range(20):
        tampered = bytearray(content)
        for position in rng.integers(8, len(content), 8):
            tampered[position] = int(rng.integers(0, 256))
        path.write_bytes(bytes(tampered))
        try:
            Classifier.load(path).predict(np.zeros((32, 32, 3), dtype=np.uint8))
        except ModelError as exc:
            assert "tampered.tflite" in str(exc)


def test_onnx_without_metadata(onnx_plain: Path) -> None:
    with pytest.raises(MetadataError, match=r"tiny_plain\.onnx: carries no tumorscan metadata"):
        Classifier.load(onnx_plain)


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nothing\.tflite: no such model file"):
        Classifier.load(tmp_path / "nothing.tflite")


@pytest.mark.parametrize("fixture", ["tflite_int8", "onnx_model"])
def test_one_classifier_shared_by_threads(
    request: pytest.FixtureRequest, fixture: str, scans: list[Path]
) -> None:
    classifier = Classifier.load(request.getfixturevalue(fixture))
    expected = [classifier.predict(s).probabilities for s in scans]
    seen_interpreters: set[int] = set()
    lock = threading.Lock()

    def work(index: int) -> dict[str, float]:
        result = classifier.predict(scans[index % len(scans)]).probabilities
        local = getattr(classifier._backend, "_local", None)
        if local is not None:
            with lock:
                seen_interpreters.add(id(local.interpreter))
        return result

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(work, range(60)))
    for index, result in enumerate(results):
        assert result == pytest.approx(expected[index % len(scans)], abs=1e-6)
    if fixture.startswith("tflite"):
        assert len(seen_interpreters) > 1  # one interpreter per thread
