"""Classify scans with an exported model: `Classifier.load(path).predict(scan)`.

The model file says everything needed (labels, input size) in its embedded spec; pixels always go
through `tumorscan.images.load_pixels`.

Thread-safety: one Classifier may be shared by threads. TFLite backends give each thread its own
interpreter; the ONNX Runtime session is shared (it is thread-safe).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .backends import Backend, TensorInfo, choose_backend, open_backend
from .errors import ModelError, TumorscanError, UnexpectedError
from .explain import DEFAULT_OCCLUSION, Occlusion, occlusion_map
from .images import ImageSource, describe_source, load_pixels
from .integrity import check_self_contained, verify_integrity
from .metadata import read_model_file, spec_from_text
from .normalize import model_input
from .pipeline import decode_ahead
from .signing import load_public_keys, verify_signature
from .spec import ModelSpec
from .trust import Trust, unavailable_note

SHA256_SHORT = 12
DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made a prediction."""

    file: str
    sha256: str
    """First 12 hex digits of the file's sha256."""
    architecture: str
    quantization: str
    backend: str
    integrity_checked: bool = False
    """True when the file matched the hash in its metadata; False for a file exported without one."""
    signed_by: str | None = None
    """Key id of the trusted key whose signature the file carries (`tumorscan.signing`); None unchecked."""

    def __str__(self) -> str:
        checked = "integrity checked" if self.integrity_checked else "no integrity hash: not checked"
        signed = f", signed by trusted key {self.signed_by}" if self.signed_by else ""
        return (
            f"{self.file} (sha256 {self.sha256}, {self.architecture}, {self.quantization}, {self.backend}, "
            f"{checked}{signed})"
        )


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one scan."""

    source: str
    label: str
    confidence: float
    probabilities: Mapping[str, float]
    """Probability per label, in the model's label order (read-only)."""
    model: ModelIdentity
    abstain: bool | None = None
    """True when the model does not vouch for this answer; None when the model cannot abstain."""
    reasons: tuple[str, ...] = ()
    """Why it abstains: `low_confidence`, `out_of_distribution` (see `tumorscan.trust`)."""
    mirror: bool = False
    """True when the answer averages the scan and its left-right mirror (`Classifier.mirror`)."""

    def top(self, k: int) -> list[tuple[str, float]]:
        """The k most probable (label, probability) pairs, most probable first."""
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:k]

    def to_dict(self, top_k: int | None = None) -> dict[str, Any]:
        """A JSON-ready record."""
        record: dict[str, Any] = {
            "source": self.source,
            "status": "ok",
            "label": self.label,
            "confidence": self.confidence,
            "probabilities": dict(self.probabilities),
            "abstain": self.abstain,
        }
        if self.abstain:
            record["reasons"] = list(self.reasons)
        if self.mirror:
            record["mirror"] = True
        if top_k is not None:
            record["top"] = [{"label": label, "probability": p} for label, p in self.top(top_k)]
        return record


@dataclass(frozen=True)
class PredictionError:
    """Why one scan could not be classified (`code` is the stable code of the error class)."""

    source: str
    code: str
    message: str

    def to_dict(self, top_k: int | None = None) -> dict[str, Any]:
        """A JSON-ready record."""
        error = {"code": self.code, "message": self.message}
        return {"source": self.source, "status": "error", "error": error}


Result = Prediction | PredictionError


def _quantization_name(spec: ModelSpec, tensor: TensorInfo) -> str:
    mode = spec.quantization.mode if spec.quantization else ""
    return mode or str(tensor.dtype)


def _check_shapes(spec: ModelSpec, backend: Backend, source: str) -> None:
    height, width = spec.input.size
    nchw = spec.input.layout == "NCHW"
    expected_input = (1, 3, height, width) if nchw else (1, height, width, 3)
    actual = backend.input.shape
    if len(actual) != 4 or any(a not in (e, -1) for a, e in zip(actual, expected_input, strict=True)):
        axes = "batch x RGB x height x width" if nchw else "batch x height x width x RGB"
        raise ModelError(
            f"{source}: input shape {list(actual)} does not match the metadata's {list(expected_input)} "
            f"({axes}); re-export the model."
        )
    output = backend.output.shape
    if len(output) != 2 or output[0] not in (1, -1) or output[1] != len(spec.labels):
        raise ModelError(
            f"{source}: output shape {list(output)} does not match the {len(spec.labels)} labels "
            f"{list(spec.labels)} in its metadata; re-export the model."
        )


def mirrored(pixels: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """N x H x W x 3 pixels mirrored left to right."""
    return pixels[:, :, ::-1]


class Classifier:
    """A loaded model: labels and input size from its own metadata."""

    def __init__(self, spec: ModelSpec, backend: Backend, identity: ModelIdentity) -> None:
        self.spec = spec
        self.identity = identity
        self._backend = backend
        self.trust = Trust.from_spec(spec, identity.file)
        self.abstain_threshold: float | None = None
        """Overrides the spec's confidence threshold (and enables abstention on a model without one)."""
        self.mirror = False
        """Average each scan with its left-right mirror (see `probabilities_and_distance`)."""

    @classmethod
    def load(
        cls,
        path: str | Path,
        backend: str | None = None,
        num_threads: int | None = None,
        trusted_keys: Sequence[str | Path | Any] | None = None,
    ) -> Classifier:
        """Load a `.tflite` or `.onnx` model exported with tumorscan.

        Args:
            path: the model file.
            backend: "litert", "tflite-runtime" or "onnxruntime"; default: the first installed one
                for the file type.
            num_threads: CPU threads per inference; default: the backend's choice.
            trusted_keys: Ed25519 public keys (PEM file paths or loaded keys): the file must carry a
                signature by one of them (`MODEL.sig`, `tumorscan.signing`); None: no signature check.

        Raises:
            ModelError: missing, unreadable, malformed or inconsistent model file (named in the message).
            MetadataError: the file carries no or invalid tumorscan metadata.
            ModelIntegrityError: the file does not match the hash in its metadata (it was modified).
                A file exported without a hash loads unchecked (`identity.integrity_checked` is False).
            SignatureError: trusted keys were given and the file is not signed by one of them.
            MissingDependencyError: the backend's package is not installed.

        One black image goes through the model before it is returned, so that a file that loads but
        cannot run (a tensor without data) is a ModelError here, not in the middle of a run.
        """
        path = Path(path)
        source = str(path)
        content = read_model_file(path)
        signed_by = None
        if trusted_keys is not None:  # before the file is parsed at all
            keys = [load_public_keys([Path(k)])[0] if isinstance(k, (str, Path)) else k for k in trusted_keys]
            signed_by = verify_signature(path, content, keys, source)
        name = choose_backend(path.suffix.lower(), backend)
        if path.suffix.lower() == ".onnx":
            check_self_contained(content, source)
        runner = open_backend(name, content, source, num_threads)
        spec = spec_from_text(runner.metadata(), source)
        integrity_checked = verify_integrity(content, spec, source)
        _check_shapes(spec, runner, source)
        runner.run(model_input(np.zeros((1, *spec.input.size, 3), dtype=np.uint8), spec.input))  # can it run?
        identity = ModelIdentity(
            file=path.name,
            sha256=hashlib.sha256(content).hexdigest()[:SHA256_SHORT],
            architecture=spec.architecture,
            quantization=_quantization_name(spec, runner.input),
            backend=name,
            integrity_checked=integrity_checked,
            signed_by=signed_by,
        )
        return cls(spec, runner, identity)

    @property
    def labels(self) -> tuple[str, ...]:
        """The class labels, in output order."""
        return self.spec.labels

    @property
    def abstention_unavailable(self) -> str | None:
        """Why this model cannot abstain (no trust entry and no threshold given), else None."""
        if self.trust is None and self.abstain_threshold is None:
            return unavailable_note(self.identity.file)
        return None

    def probabilities(self, pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Class probabilities for a batch of preprocessed pixels (N x H x W x 3 uint8, from `load_pixels`).

        Outputs are probabilities (exported graphs end in softmax), so only quantization noise is
        removed: negatives clipped, each row renormalised to sum to 1. A trust entry's temperature is applied.
        With `mirror`, each row is the mean of the scan's and its mirror's.
        """
        return self.probabilities_and_distance(pixels)[0]

    def probabilities_and_distance(
        self, pixels: NDArray[np.uint8]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
        """`probabilities`, and the feature-distance ratios of a model exported with that output.

        With `mirror`, each scan and its left-right mirror run in one batch: the result is the mean of
        their calibrated probabilities and the larger of their distance ratios, the same for both.
        """
        count = len(pixels)
        batch = np.concatenate([pixels, mirrored(pixels)]) if self.mirror else pixels
        raw, distance = self._backend.run_with_distance(model_input(batch, self.spec.input))
        scores = np.clip(raw, 0.0, None)
        totals = scores.sum(axis=1, keepdims=True)
        uniform = np.full_like(scores, 1 / len(self.labels))
        probabilities: NDArray[np.float32] = np.divide(scores, totals, out=uniform, where=totals > 0)
        if self.trust:
            probabilities = self.trust.calibrate(probabilities)
        if not self.mirror:
            return probabilities, distance
        averaged = (probabilities[:count] + probabilities[count:]) / np.float32(2)
        return averaged, None if distance is None else np.maximum(distance[:count], distance[count:])

    def _predictions(self, sources: Sequence[str], pixels: NDArray[np.uint8]) -> list[Prediction]:
        """One Prediction per row of a pixel batch."""
        probabilities, distance = self.probabilities_and_distance(pixels)
        judge = None if self.abstention_unavailable else (self.trust or Trust())
        far = None if distance is None else distance > 1
        if judge and self.mirror:  # either side's input checks flag both (the same reasons for each side)
            far = judge.out_of_distribution(mirrored(pixels), far)
        reasons = judge.reasons(probabilities, pixels, self.abstain_threshold, far) if judge else None
        results = []
        for index, (source, row) in enumerate(zip(sources, probabilities, strict=True)):
            best = int(np.argmax(row))
            results.append(
                Prediction(
                    source=source,
                    label=self.labels[best],
                    confidence=float(row[best]),
                    probabilities=MappingProxyType(
                        {label: float(p) for label, p in zip(self.labels, row, strict=True)}
                    ),
                    model=self.identity,
                    abstain=None if reasons is None else bool(reasons[index]),
                    reasons=() if reasons is None else reasons[index],
                    mirror=self.mirror,
                )
            )
        return results

    def _pixels(self, source: ImageSource, name: str) -> NDArray[np.uint8]:
        """The one boundary per input: anything going wrong while reading a scan becomes a typed error."""
        try:
            return load_pixels(source, self.spec.input.size)
        except TumorscanError:
            raise
        except Exception as exc:  # a failure nobody anticipated must still not end a run
            raise UnexpectedError(
                f"{name}: reading the scan failed unexpectedly ({type(exc).__name__}: {exc}); "
                "please report it with the file."
            ) from exc

    def read(self, source: ImageSource) -> NDArray[np.uint8]:
        """The preprocessed pixels of one scan, read as `predict` reads them (the same typed errors)."""
        return self._pixels(source, describe_source(source))

    def predict(self, source: ImageSource) -> Prediction:
        """Classify one scan (file path, encoded bytes, PIL image or array).

        Raises:
            ImageError: (or a subclass) the scan cannot be read; the message names it.
            UnexpectedError: reading it failed in a way nobody anticipated (code `unexpected_error`).
        """
        name = describe_source(source)
        return self._predictions([name], self._pixels(source, name)[np.newaxis])[0]

    def explain(
        self, source: ImageSource, label: str | None = None, method: Occlusion = DEFAULT_OCCLUSION
    ) -> NDArray[np.float32]:
        """Occlusion-sensitivity map (model input size, see `tumorscan.explain`) of `label` for one scan.

        Args:
            source: the scan.
            label: the class explained; default: the predicted one.
            method: how to occlude (square, step, fill, score); default: the one `tumor-infer` uses.

        Raises:
            ImageError: the scan cannot be read.
            ValueError: `label` is not one of the model's labels.
        """
        if label is not None and label not in self.labels:
            raise ValueError(f"unknown label {label!r}; the model knows {', '.join(self.labels)}.")
        pixels = self._pixels(source, describe_source(source))

        def scores(batch: NDArray[np.uint8]) -> NDArray[np.float32]:
            return self._backend.run(model_input(batch, self.spec.input))

        target = self.labels.index(label) if label else int(np.argmax(scores(pixels[np.newaxis])[0]))
        return occlusion_map(scores, pixels, target, method, self._backend.output.scale)

    def iter_predictions(
        self, sources: Iterable[ImageSource], batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[Result]:
        """Yield one result per source, in order: a Prediction, or a PredictionError for a bad scan.

        Only the model can end the iteration early (ModelError); a bad scan never does. Scans are
        decoded by a few threads, up to two batches ahead of the model (`tumorscan.pipeline`).
        """
        for result, _ in self.iter_with_pixels(sources, batch_size):
            yield result

    def iter_with_pixels(
        self, sources: Iterable[ImageSource], batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[tuple[Result, NDArray[np.uint8] | None]]:
        """`iter_predictions`, each result with the pixels the model saw (None for a bad scan).

        Heatmaps computed from these explain the very pixels that were classified, even if the file
        changes afterwards.
        """
        batch: list[tuple[str, NDArray[np.uint8]]] = []
        pending: list[Result | None] = []

        for source, decoded in decode_ahead(self.read, sources, ahead=2 * batch_size):
            name = describe_source(source)
            try:
                batch.append((name, decoded.result()))
                pending.append(None)
            except TumorscanError as exc:
                pending.append(PredictionError(name, exc.code, str(exc)))
            if len(pending) >= batch_size:
                yield from self._merge(pending, batch)
                batch, pending = [], []
        yield from self._merge(pending, batch)

    def _merge(
        self, pending: list[Result | None], batch: list[tuple[str, NDArray[np.uint8]]]
    ) -> Iterator[tuple[Result, NDArray[np.uint8] | None]]:
        """The pending results in order, predictions for the decoded scans filled in."""
        names = [name for name, _ in batch]
        predictions = iter(self._predictions(names, np.stack([p for _, p in batch])) if batch else [])
        pixels = iter(p for _, p in batch)
        for result in pending:
            yield (result, None) if result is not None else (next(predictions), next(pixels))

    def predict_many(
        self, sources: Iterable[ImageSource], batch_size: int = DEFAULT_BATCH_SIZE
    ) -> list[Result]:
        """Classify many scans; never raises for a bad scan (it gets a PredictionError instead)."""
        return list(self.iter_predictions(sources, batch_size))
