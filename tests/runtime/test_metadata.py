"""The spec travels inside model files: embedded in TFLite, read back from TFLite and ONNX."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tumorscan.errors import MetadataError, MissingDependencyError, ModelError
from tumorscan.metadata import (
    embed_tflite_metadata,
    read_model_spec,
    read_onnx_spec,
    read_tflite_spec,
    tflite_metadata_entry,
)
from tumorscan.sections import QuantizationSpec
from tumorscan.spec import METADATA_KEY, ModelSpec


def test_tflite_spec_round_trips_and_keeps_converter_entries(tflite_fp32: Path, tiny_spec: ModelSpec) -> None:
    content = tflite_fp32.read_bytes()
    spec = read_tflite_spec(content, "tiny")
    assert spec.labels == tiny_spec.labels
    assert spec.input == tiny_spec.input
    assert spec.quantization == QuantizationSpec("fp32")
    assert tflite_metadata_entry(content, "min_runtime_version") is not None


def test_embedding_twice_replaces_the_entry(tflite_fp32: Path) -> None:
    from ai_edge_litert import schema_py_generated as schema

    content = tflite_fp32.read_bytes()
    spec = read_tflite_spec(content).with_updates(architecture="replaced")
    updated = embed_tflite_metadata(content, spec)
    assert read_tflite_spec(updated) == spec
    model = schema.Model.GetRootAs(updated, 0)
    names = [model.Metadata(i).Name().decode() for i in range(model.MetadataLength())]
    assert names.count(METADATA_KEY) == 1


def test_embedded_model_still_runs(tflite_fp32: Path) -> None:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite_fp32.read_bytes())
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.full(detail["shape"], 128, dtype=np.float32))
    interpreter.invoke()
    output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert output.shape == (1, 4)
    assert abs(float(output.sum()) - 1.0) < 1e-4


def test_model_without_metadata_says_what_to_do(tflite_fp32: Path) -> None:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite_fp32.read_bytes()), 0)
    model.metadata = [m for m in model.metadata if m.name.decode() != METADATA_KEY]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with pytest.raises(MetadataError, match=r"plain\.tflite.*no tumorscan metadata.*tumor-export"):
        read_tflite_spec(bytes(builder.Output()), "plain.tflite")


def test_not_a_tflite_file(tmp_path: Path) -> None:
    path = tmp_path / "random.tflite"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelError, match=r"random\.tflite"):
        read_model_spec(path)
    with pytest.raises(ModelError, match="TFL3"):
        embed_tflite_metadata(path.read_bytes(), ModelSpec.from_json(_any_spec_json()))


def test_truncated_tflite_is_a_model_error(tflite_fp32: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.tflite"
    path.write_bytes(tflite_fp32.read_bytes()[:200])
    with pytest.raises(ModelError, match=r"cut\.tflite"):
        read_model_spec(path)


def test_onnx_spec(onnx_model: Path, onnx_plain: Path, tiny_spec: ModelSpec) -> None:
    assert read_model_spec(onnx_model).labels == tiny_spec.labels
    assert read_model_spec(str(onnx_model)) == read_model_spec(onnx_model)  # a str path works too
    assert read_onnx_spec(onnx_model.read_bytes(), "tiny").input == tiny_spec.input
    with pytest.raises(MetadataError, match=r"tiny_plain\.onnx.*no tumorscan metadata"):
        read_model_spec(onnx_plain)


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model\.pb.*\.tflite or \.onnx"):
        read_model_spec(tmp_path / "model.pb")
    with pytest.raises(ModelError, match=r"absent\.tflite.*no such model file"):
        read_model_spec(tmp_path / "absent.tflite")


def _any_spec_json() -> str:
    return '{"labels":["a","b"],"input":{"height":8,"width":8}}'


def test_writing_tflite_metadata_without_litert_names_its_extra(
    tflite_fp32: Path, tiny_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'tumorscan\[litert\]'"):
        embed_tflite_metadata(tflite_fp32.read_bytes(), tiny_spec)


@pytest.mark.parametrize(("field", "value"), [("resize", "lanczos"), ("dtype", "float32")])
def test_an_input_the_preprocessing_does_not_make_is_refused(
    tiny_spec: ModelSpec, field: str, value: str
) -> None:
    import dataclasses
    import json

    data = json.loads(tiny_spec.to_json())
    assert ModelSpec.from_json(json.dumps(data), "m.tflite").input == tiny_spec.input
    data["input"][field] = value
    with pytest.raises(MetadataError, match=f"m.tflite: invalid tumorscan metadata: .*'{value}'"):
        ModelSpec.from_json(json.dumps(data), "m.tflite")
    with pytest.raises(MetadataError, match="upgrade tumorscan"):
        tiny_spec.with_updates(input=dataclasses.replace(tiny_spec.input, **{field: value})).validate("m")
