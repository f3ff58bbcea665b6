"""Int8 export that chooses its float layers: a model whose int8 output is too coarse gets fixed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tumorscan.export.exporter import ExportOptions, ExportReport, export_model
from tumorscan.export.formats import select_targets
from tumorscan.metadata import read_model_spec

SHRINK = 0.02
"""The coarse model's last layer is scaled by this: its probabilities are near-ties (about 0.25 each)."""


@pytest.fixture(scope="module")
def coarse_model(tiny_keras_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its logits shrunk, so that int8's 1/256 output steps turn its answers into ties."""
    from tumorscan.train.keras_file import load_keras, read_keras_spec, save_keras

    model, spec = load_keras(tiny_keras_model), read_keras_spec(tiny_keras_model)
    assert spec is not None
    last = model.get_layer("probabilities")
    last.set_weights([weight * SHRINK for weight in last.get_weights()])
    path = tmp_path_factory.mktemp("coarse") / "coarse.keras"
    save_keras(model, path, spec)
    return path


@pytest.fixture(scope="module")
def auto_exported(coarse_model: Path, sample_train: Path, sample_test: Path) -> ExportReport:
    options = ExportOptions(
        targets=select_targets(None, ["int8"]),
        out_dir=coarse_model.parent / "export",
        calibration_root=sample_train,
        parity_data=sample_test,
        auto_float=True,
    )
    return export_model(coarse_model, options)


def _float_in_tflite(path: Path, tensor: str) -> bool:
    from ai_edge_litert.interpreter import Interpreter

    details = {d["name"]: d for d in Interpreter(model_path=str(path)).get_tensor_details()}
    return bool(details[tensor]["dtype"] == np.float32)


def _float_in_onnx(path: Path, node_name: str) -> bool:
    """The named node runs in float: its weights are float initializers, or (without weights) its output
    is not quantized again."""
    import onnx

    nodes = onnx.load(str(path)).graph.node
    dequantized = {out for node in nodes if node.op_type == "DequantizeLinear" for out in node.output}
    quantized = {node.input[0] for node in nodes if node.op_type == "QuantizeLinear"}
    node = next((node for node in nodes if node.name == node_name), None)
    if node is None:
        return False
    if len(node.input) > 1:
        return not any(name in dequantized for name in node.input[1:])
    return not any(name in quantized for name in node.output)


def test_all_int8_fails_and_the_chosen_float_layers_pass(auto_exported: ExportReport) -> None:
    for exported in auto_exported.files:
        quantization, parity = exported.spec.quantization, exported.spec.parity
        assert quantization is not None and quantization.auto_float is not None and parity is not None
        search = quantization.auto_float
        assert search.all_int8.agreement < 0.99, exported.target  # the coarse output breaks parity
        assert search.passed and search.chosen.agreement >= 0.99
        assert parity.passed  # the independent check after export agrees
        reasons = [layer.reason for layer in quantization.float_layers or ()]
        assert any(reason.startswith("parity: quantization error") for reason in reasons)


def test_listed_float_layers_are_float_in_the_file(auto_exported: ExportReport) -> None:
    for exported in auto_exported.files:
        path = Path(exported.path)
        quantization = read_model_spec(path).quantization
        layers = quantization.float_layers if quantization else None
        assert layers
        float_in = _float_in_tflite if path.suffix == ".tflite" else _float_in_onnx
        assert all(float_in(path, layer.name) for layer in layers), layers


def test_auto_float_needs_a_parity_folder(coarse_model: Path, sample_train: Path, tmp_path: Path) -> None:
    from tumorscan.errors import TumorscanError

    options = ExportOptions(
        targets=select_targets(None, ["int8"]),
        out_dir=tmp_path,
        calibration_root=sample_train,
        auto_float=True,
    )
    with pytest.raises(TumorscanError, match="--auto-float needs a labelled folder"):
        export_model(coarse_model, options)


def test_the_first_range_method_that_passes_parity_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from tumorscan.export import autofloat
    from tumorscan.sections import ParityLimits

    agreement = {"minmax": 0.97, "percentile": 0.995, "entropy": 0.999}
    tried: list[str] = []
    quantizer = SimpleNamespace(methods=("minmax", "percentile", "entropy"), method="minmax")

    class Tries:
        def load(self, float_layers: list[str]) -> str:
            tried.append(quantizer.method)
            return str(quantizer.method)  # stands for the file written with that method

    def parity(trial: str, held_out: object) -> SimpleNamespace:
        return SimpleNamespace(agreement=agreement[trial], drop_points=0.0)

    monkeypatch.setattr(autofloat, "_parity", parity)
    options = SimpleNamespace(held_out=None, limits=ParityLimits(), log=lambda message: None)
    current, found = autofloat._all_int8(Tries(), quantizer, options)  # type: ignore[arg-type]
    assert (current, quantizer.method, tried) == ("percentile", "percentile", ["minmax", "percentile"])
    assert found.agreement == 0.995

    agreement.update(percentile=0.98, entropy=0.985)  # none passes: the one that agrees best
    tried.clear()
    current, found = autofloat._all_int8(Tries(), quantizer, options)  # type: ignore[arg-type]
    assert (current, quantizer.method, tried) == ("entropy", "entropy", ["minmax", "percentile", "entropy"])
