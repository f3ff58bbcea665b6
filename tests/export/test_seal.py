"""tumor-seal: classifier files made elsewhere (TFLite NHWC, ONNX NCHW) run, checked, after sealing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tumorscan import Classifier
from tumorscan.cli import infer_command
from tumorscan.errors import ModelError
from tumorscan.export.seal import seal_command
from tumorscan.folders import scan_dataset
from tumorscan.images import load_pixels
from tumorscan.metadata import read_model_spec

IMAGENET_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)


def _keras_classifier(logits: bool = False) -> Any:
    import keras

    keras.utils.set_random_seed(5)
    return keras.Sequential(
        [
            keras.Input((24, 24, 3)),
            keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation=None if logits else "softmax"),
        ]
    )


def _tflite(model: Any, path: Path) -> Path:
    import tensorflow as tf

    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def _onnx_nchw(path: Path, weights: np.ndarray, outputs: int = 1, external: bool = False) -> Path:
    """A tiny NCHW ONNX classifier: mean per channel, a 3x3 matrix, softmax (outputs=2: a copy too)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    outs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 3])]
    if outputs == 2:
        nodes.append(helper.make_node("Identity", ["probabilities"], ["copy"]))
        outs.append(helper.make_tensor_value_info("copy", TensorProto.FLOAT, ["n", 3]))
    graph = helper.make_graph(
        nodes,
        "nchw",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 20, 20])],
        outs,
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if external:
        onnx.save(model, path, save_as_external_data=True, location="weights.bin", size_threshold=0)
    else:
        onnx.save(model, path)
    return path


def _seal(*args: str) -> Any:
    return CliRunner().invoke(seal_command, list(args))


def test_a_tflite_file_made_elsewhere_runs_after_sealing(tmp_path: Path, sample_test: Path) -> None:
    model = _keras_classifier()
    foreign = _tflite(model, tmp_path / "foreign.tflite")
    refused = CliRunner().invoke(infer_command, ["--model", str(foreign), str(sample_test)])
    assert refused.exit_code == 2 and "tumor-seal MODEL --labels" in refused.output
    result = _seal(str(foreign), "--labels", "cat,dog,fox", "--preprocess", "rescale")
    assert result.exit_code == 0, result.output
    sealed = tmp_path / "foreign-sealed.tflite"
    classifier = Classifier.load(sealed)
    assert classifier.identity.integrity_checked and classifier.labels == ("cat", "dog", "fox")
    pixels = np.stack([load_pixels(scan.path, (24, 24)) for scan in scan_dataset(sample_test)])
    expected = np.asarray(model(pixels.astype(np.float32) / 255.0))
    np.testing.assert_allclose(classifier.probabilities(pixels), expected, atol=1e-5)
    spec = read_model_spec(sealed)
    assert spec.input.normalized_by == "runtime" and spec.input.normalization == "rescale"
    other = str(tmp_path / "x.tflite")
    again = _seal(str(sealed), "--labels", "a,b,c", "--preprocess", "none", "--out", other)
    assert again.exit_code == 1 and "already carries a tumorscan spec" in again.output


def test_an_nchw_onnx_file_runs_after_sealing(tmp_path: Path, sample_test: Path) -> None:
    weights = (np.random.default_rng(1).normal(size=(3, 3)) * 0.05).astype(np.float32)
    foreign = _onnx_nchw(tmp_path / "torch.onnx", weights)
    out = tmp_path / "sealed.onnx"
    result = _seal(str(foreign), "--labels", "a,b,c", "--preprocess", "caffe", "--out", str(out))
    assert result.exit_code == 0, result.output
    classifier = Classifier.load(out)
    assert classifier.spec.input.layout == "NCHW" and classifier.spec.input.size == (20, 20)
    pixels = np.stack([load_pixels(scan.path, (20, 20)) for scan in scan_dataset(sample_test)])
    means = (pixels.astype(np.float32)[..., ::-1] - IMAGENET_BGR_MEAN).mean(axis=(1, 2))
    logits = means @ weights
    logits -= logits.max(axis=1, keepdims=True)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(classifier.probabilities(pixels), expected, atol=1e-5)
    records = CliRunner().invoke(infer_command, ["--model", str(out), "--jsonl", str(sample_test)])
    assert records.exit_code == 0 and len(records.stdout.splitlines()) == 8


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("logits", "not probabilities"),
        ("two outputs", "two outputs"),
        ("labels", "label 'a' appears twice"),
        ("count", "not one score for each of the 4 labels"),
        ("external", "separate files"),
    ],
)
def test_files_that_cannot_be_sealed_are_refused(tmp_path: Path, case: str, says: str) -> None:
    weights = np.eye(3, dtype=np.float32)
    labels = {"labels": "a,a,b", "count": "a,b,c,d"}.get(case, "a,b,c")
    if case == "logits":
        model = _tflite(_keras_classifier(logits=True), tmp_path / "m.tflite")
    else:
        outputs = 2 if case == "two outputs" else 1
        model = _onnx_nchw(tmp_path / "m.onnx", weights, outputs, case == "external")
    result = _seal(str(model), "--labels", labels, "--preprocess", "rescale")
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output
    assert [p.name for p in tmp_path.iterdir() if "sealed" in p.name] == []


def test_external_onnx_weights_are_refused_at_load(exported_files: dict[str, Path], tmp_path: Path) -> None:
    import onnx

    model = onnx.load(exported_files["onnx-fp32"])
    split = tmp_path / "split.onnx"
    onnx.save(model, split, save_as_external_data=True, location="weights.bin", size_threshold=0)
    with pytest.raises(ModelError, match="separate files"):
        Classifier.load(tmp_path / "split.onnx")
    assert Classifier.load(exported_files["onnx-fp32"]).identity.integrity_checked


def _key_pair(folder: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private, public = folder / "key.pem", folder / "key.pub"
    pkcs8, pem = serialization.PrivateFormat.PKCS8, serialization.Encoding.PEM
    private.write_bytes(key.private_bytes(pem, pkcs8, serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def test_seal_and_export_sign_their_files(tmp_path: Path, tiny_keras_model: Path) -> None:
    from tumorscan.export.cli import export_command

    private, public = _key_pair(tmp_path)
    foreign = _onnx_nchw(tmp_path / "m.onnx", np.eye(3, dtype=np.float32))
    result = _seal(str(foreign), "--labels", "a,b,c", "--preprocess", "rescale", "--sign", str(private))
    assert result.exit_code == 0, result.output
    assert Classifier.load(tmp_path / "m-sealed.onnx", trusted_keys=[public]).identity.signed_by
    out = tmp_path / "export"
    arguments = [str(tiny_keras_model), "--mode", "fp32", "--out", str(out), "--sign", str(private)]
    exported = CliRunner().invoke(export_command, arguments)
    assert exported.exit_code == 0, exported.output
    models = sorted(out.glob("*-fp32.*[xe]"))  # .onnx and .tflite
    assert len(models) == 2
    for model in models:
        assert Classifier.load(model, trusted_keys=[public]).identity.signed_by
    refused = CliRunner().invoke(
        export_command, [*arguments[:-1], str(public), "--out", str(tmp_path / "no")]
    )
    assert refused.exit_code == 1 and "not a readable PEM private key" in refused.output
    assert not (tmp_path / "no").exists()
