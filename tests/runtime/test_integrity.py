"""Model files are untrusted: a modified file is refused, hostile metadata is a bad_metadata error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tumorscan import Classifier
from tumorscan.cli import infer_command
from tumorscan.errors import MetadataError, ModelError, ModelIntegrityError
from tumorscan.integrity import onnx_digest, tflite_digest
from tumorscan.metadata import pack_tflite_metadata, tflite_metadata_entry, tflite_metadata_span
from tumorscan.sections import QuantizationSpec
from tumorscan.spec import METADATA_KEY


def _spec_json(model: Path) -> dict[str, object]:
    entry = tflite_metadata_entry(model.read_bytes(), METADATA_KEY)
    assert entry is not None
    data: dict[str, object] = json.loads(entry)
    return data


def test_an_exported_tflite_file_is_checked_at_load(tflite_fp32: Path) -> None:
    classifier = Classifier.load(tflite_fp32)
    assert classifier.identity.integrity_checked
    assert "integrity checked" in str(classifier.identity)
    record = _spec_json(tflite_fp32)["integrity"]
    assert isinstance(record, dict) and record["scheme"] == "tflite-v1"
    assert record["bytes"] == tflite_fp32.stat().st_size


def test_appending_to_a_tflite_file_keeps_it_valid(tflite_fp32: Path, tmp_path: Path) -> None:
    appended = tmp_path / "appended.tflite"
    appended.write_bytes(tflite_fp32.read_bytes() + b"PK\x03\x04 an associated-files zip" + bytes(100))
    assert Classifier.load(appended).identity.integrity_checked


def test_a_modified_weight_is_refused(tflite_fp32: Path, tmp_path: Path) -> None:
    content = bytearray(tflite_fp32.read_bytes())
    position = len(content) // 2  # inside the weights, which make up most of the file
    span = tflite_metadata_span(bytes(content), METADATA_KEY)
    assert span is not None and not span[0] <= position < span[1]
    content[position] ^= 0x40
    tampered = tmp_path / "tampered.tflite"
    tampered.write_bytes(bytes(content))
    with pytest.raises(ModelIntegrityError, match=r"tampered\.tflite: the model content does not match"):
        Classifier.load(tampered)
    result = CliRunner().invoke(infer_command, [str(tampered), "--model", str(tampered)])
    assert result.exit_code == 2 and "the file was modified" in result.output
    assert ModelIntegrityError.code == "modified_model" and issubclass(ModelIntegrityError, ModelError)


def test_a_modified_onnx_weight_is_refused(onnx_plain: Path, tiny_spec: object, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    from tumorscan.export.onnx import set_spec

    proto = onnx.load(str(onnx_plain))
    set_spec(proto, tiny_spec.with_updates(quantization=QuantizationSpec("fp32")))  # type: ignore[attr-defined]
    sealed = tmp_path / "sealed.onnx"
    sealed.write_bytes(proto.SerializeToString())
    assert Classifier.load(sealed).identity.integrity_checked
    proto.metadata_props.add(key="other", value="metadata added later does not matter")
    sealed.write_bytes(proto.SerializeToString())
    assert Classifier.load(sealed).identity.integrity_checked
    weights = max(proto.graph.initializer, key=lambda tensor: numpy_helper.to_array(tensor).size)
    array = numpy_helper.to_array(weights).copy()
    array.flat[0] += 1
    weights.CopyFrom(numpy_helper.from_array(array, weights.name))
    tampered = tmp_path / "tampered.onnx"
    tampered.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelIntegrityError, match=r"tampered\.onnx"):
        Classifier.load(tampered)
    assert onnx_digest(tampered.read_bytes()) != onnx_digest(sealed.read_bytes())


def test_files_without_a_hash_still_load_unchecked(
    tflite_fp32: Path, onnx_model: Path, tmp_path: Path
) -> None:
    spec = _spec_json(tflite_fp32)
    del spec["integrity"]
    old = tmp_path / "old.tflite"
    old.write_bytes(pack_tflite_metadata(tflite_fp32.read_bytes(), json.dumps(spec).encode()))
    for path in (old, onnx_model):
        identity = Classifier.load(path).identity
        assert not identity.integrity_checked and "no integrity hash: not checked" in str(identity)


def test_truncated_coverage_is_a_modification(tflite_fp32: Path) -> None:
    content = tflite_fp32.read_bytes()
    with pytest.raises(ModelIntegrityError, match="shorter"):
        tflite_digest(content[:-10], len(content), "cut.tflite")


def _hostile(tflite_fp32: Path, tmp_path: Path, name: str, text: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(pack_tflite_metadata(tflite_fp32.read_bytes(), text))
    return path


def _with(tflite_fp32: Path, **changes: object) -> bytes:
    spec = _spec_json(tflite_fp32)
    spec.pop("integrity")
    spec.update(changes)
    return json.dumps(spec).encode()


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("deep", "nests too deeply"),
        ("height_text", "input: height: must be int, not str"),
        ("labels_text", "labels: must be list, not str"),
        ("label_numbers", "labels: must be names"),
        ("huge_side", "height: must be 8 to 8192 pixels"),
        ("bool_width", "width: must be int, not bool"),
        ("list", "must be a JSON object"),
        ("nested_provenance", "nests over 16 levels"),
        ("bad_hash", "integrity: sha256: must be 64 lowercase hex digits"),
        ("not_json", "is not JSON"),
    ],
)
def test_hostile_metadata_is_bad_metadata_with_exit_2(
    tflite_fp32: Path, tmp_path: Path, case: str, says: str
) -> None:
    spec = _spec_json(tflite_fp32)
    texts = {
        "deep": b"[" * 100_000 + b"]" * 100_000,
        "height_text": _with(tflite_fp32, input={**spec["input"], "height": "32"}),  # type: ignore[dict-item]
        "labels_text": _with(tflite_fp32, labels="abcd"),
        "label_numbers": _with(tflite_fp32, labels=[1, 2, 3, 4]),
        "huge_side": _with(tflite_fp32, input={**spec["input"], "height": 10**9}),  # type: ignore[dict-item]
        "bool_width": _with(tflite_fp32, input={**spec["input"], "width": True}),  # type: ignore[dict-item]
        "list": b"[1, 2]",
        "nested_provenance": _with(tflite_fp32, provenance=json.loads('{"a":' * 20 + "1" + "}" * 20)),
        "bad_hash": _with(tflite_fp32, integrity={"scheme": "tflite-v1", "sha256": "xyz"}),
        "not_json": b"\xff{",
    }
    path = _hostile(tflite_fp32, tmp_path, f"{case}.tflite", texts[case])
    with pytest.raises(MetadataError, match=says) as caught:
        Classifier.load(path)
    assert caught.value.code == "bad_metadata"
    result = CliRunner().invoke(infer_command, [str(path), "--model", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_a_zero_byte_model_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match=r"empty\.tflite: the model file is empty \(0 bytes\)"):
        Classifier.load(empty)
