"""Signatures: with trusted keys, only files signed by one of them load; hashes alone can be recomputed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tumorscan import Classifier
from tumorscan.cli import infer_command
from tumorscan.metadata import embed_tflite_metadata, read_tflite_spec
from tumorscan.signing import SignatureError, sign_file, signature_path


def _keys(folder: Path, name: str) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture()
def signed(tflite_fp32: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A copy of the tiny model signed with a fresh key: (model, private key, public key)."""
    model = tmp_path / "model.tflite"
    shutil.copy(tflite_fp32, model)
    private, public = _keys(tmp_path, "ours")
    sign_file(model, private)
    return model, private, public


def test_a_signed_file_loads_with_its_key(signed: tuple[Path, Path, Path]) -> None:
    model, _, public = signed
    identity = Classifier.load(model, trusted_keys=[public]).identity
    assert identity.signed_by is not None and f"signed by trusted key {identity.signed_by}" in str(identity)
    document = json.loads(signature_path(model).read_text(encoding="utf-8"))
    assert document["scheme"] == "tumorscan-ed25519-v1" and document["key_id"] == identity.signed_by
    assert Classifier.load(model).identity.signed_by is None  # no keys given: not checked


def test_unsigned_or_foreign_signed_files_are_refused(
    signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    model, _, public = signed
    signature_path(model).unlink()
    with pytest.raises(SignatureError, match="has no signature"):
        Classifier.load(model, trusted_keys=[public])
    other_private, _ = _keys(tmp_path, "theirs")
    sign_file(model, other_private)
    with pytest.raises(SignatureError, match="not among the trusted keys"):
        Classifier.load(model, trusted_keys=[public])


def test_an_edit_with_a_recomputed_hash_is_refused(signed: tuple[Path, Path, Path]) -> None:
    model, _, public = signed
    content = model.read_bytes()
    spec = read_tflite_spec(content)
    edited = embed_tflite_metadata(content, spec.with_updates(labels=tuple(reversed(spec.labels))))
    model.write_bytes(edited)
    assert Classifier.load(model).identity.integrity_checked  # the hash alone is satisfied
    with pytest.raises(SignatureError, match="changed after it was signed"):
        Classifier.load(model, trusted_keys=[public])


def test_a_file_without_an_integrity_hash_needs_a_signature(tflite_fp32: Path, tmp_path: Path) -> None:
    content = tflite_fp32.read_bytes()
    from tumorscan.metadata import pack_tflite_metadata

    spec = read_tflite_spec(content).with_updates(integrity=None)
    unsealed = tmp_path / "unsealed.tflite"
    unsealed.write_bytes(pack_tflite_metadata(content, spec.to_json().encode()))
    assert not Classifier.load(unsealed).identity.integrity_checked
    _, public = _keys(tmp_path, "ours")
    with pytest.raises(SignatureError):
        Classifier.load(unsealed, trusted_keys=[public])


def test_infer_with_trusted_keys(signed: tuple[Path, Path, Path], sample_test: Path, tmp_path: Path) -> None:
    model, _, public = signed
    _, stranger = _keys(tmp_path, "stranger")
    arguments = ["--model", str(model), "--jsonl", str(sample_test)]
    ok = CliRunner().invoke(
        infer_command, [*arguments, "--trusted-key", str(stranger), "--trusted-key", str(public)]
    )
    assert ok.exit_code == 0 and "signed by trusted key" in ok.stderr
    refused = CliRunner().invoke(infer_command, [*arguments, "--trusted-key", str(stranger)])
    assert refused.exit_code == 2 and "not among the trusted keys" in refused.output
    assert refused.stdout.strip() == ""


def test_a_key_that_is_not_ed25519_is_a_clear_error(signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, _, _ = signed
    bogus = tmp_path / "bogus.pub"
    bogus.write_text("not a key", encoding="utf-8")
    result = CliRunner().invoke(
        infer_command, ["--model", str(model), str(model), "--trusted-key", str(bogus)]
    )
    assert result.exit_code == 2 and "not a readable PEM public key" in result.output
