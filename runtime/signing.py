"""Model signatures: who made a model file, checked against public keys the user trusts.

The integrity hash inside a file (`tumorscan.integrity`) finds damage, but whoever edits a file can
compute it again. A signature cannot be recomputed without the private key. tumorscan signs with
Ed25519 through the `cryptography` package (the `[sign]` extra; wheels for x86-64 and aarch64, no
network): `tumor-export --sign KEY` and `tumor-seal --sign KEY` write `MODEL.sig` beside each file, a
small JSON document holding the sha256 of the whole file and the Ed25519 signature of that digest.

Loading with trusted public keys (`Classifier.load(..., trusted_keys=...)`, `tumor-infer
--trusted-key`) refuses a file without a signature, with a signature by another key, or whose bytes
changed after signing (code `untrusted_model`). Keys are PEM files, e.g. made with OpenSSL:
`openssl genpkey -algorithm ed25519 -out key.pem` and `openssl pkey -in key.pem -pubout -out key.pub`.

What it does not do: it says who signed the bytes, not that the model is good, nor which of several
files the signer made is the newest (an older signed file still verifies); a stolen private key signs
anything; and without trusted keys nothing is checked beyond the integrity hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import MissingDependencyError, ModelError
from .files import atomic_write_text

SCHEME = "tumorscan-ed25519-v1"
SIGNATURE_SUFFIX = ".sig"
CONTEXT = b"tumorscan model file sha256\n"
"""Signed together with the digest, so that the signature means nothing in another protocol."""
MAX_SIGNATURE_BYTES = 4096


class SignatureError(ModelError):
    """A model file is unsigned, signed by an untrusted key, or changed after signing."""

    code = "untrusted_model"


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError as exc:
        raise MissingDependencyError("cryptography", "sign", "Signing and checking model files") from exc
    return serialization


def signature_path(model: Path) -> Path:
    """Where a model's signature lives: `MODEL.sig` beside it."""
    return model.with_name(model.name + SIGNATURE_SUFFIX)


def _key_id(public_key: Any) -> str:
    serialization = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _read_key(path: Path, private: bool) -> Any:
    serialization = _crypto()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    kind = "private" if private else "public"
    try:
        data = path.read_bytes()
        key = (
            serialization.load_pem_private_key(data, password=None)
            if private
            else serialization.load_pem_public_key(data)
        )
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(
            f"{path}: not a readable PEM {kind} key ({exc}); pass an Ed25519 {kind} key file."
        ) from exc
    if not isinstance(key, Ed25519PrivateKey if private else Ed25519PublicKey):
        raise ModelError(
            f"{path}: is not an Ed25519 {kind} key; make one with openssl genpkey -algorithm ed25519."
        )
    return key


def check_private_key(path: Path) -> None:
    """Fail early (before any work) when `path` is not a usable Ed25519 private key.

    Raises:
        ModelError, MissingDependencyError: as `sign_file`.
    """
    _read_key(path, private=True)


def sign_file(model: Path, private_key: Path) -> Path:
    """Write `MODEL.sig` for the file as it is now; returns its path.

    Raises:
        ModelError: the key cannot be read or is not Ed25519; the model cannot be read.
        MissingDependencyError: `cryptography` is not installed.
    """
    key = _read_key(private_key, private=True)
    try:
        digest = hashlib.sha256(model.read_bytes()).digest()
    except OSError as exc:
        raise ModelError(f"{model}: cannot read the model file to sign it ({exc.strerror}).") from exc
    document = {
        "scheme": SCHEME,
        "file": model.name,
        "sha256": digest.hex(),
        "key_id": _key_id(key.public_key()),
        "signature": base64.b64encode(key.sign(CONTEXT + digest)).decode("ascii"),
    }
    path = signature_path(model)
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")
    return path


def load_public_keys(paths: Sequence[Path]) -> list[Any]:
    """Ed25519 public keys from PEM files.

    Raises:
        ModelError: a file is not a readable Ed25519 public key.
    """
    return [_read_key(path, private=False) for path in paths]


def _signature_document(model: Path, source: str) -> dict[str, Any]:
    path = signature_path(model)
    try:
        with path.open("rb") as stream:
            text = stream.read(MAX_SIGNATURE_BYTES + 1)
    except OSError as exc:
        raise SignatureError(
            f"{source}: has no signature ({path.name}: {exc.strerror}); only files signed by a trusted key "
            "are accepted. Sign it with tumor-export --sign or tumor-seal --sign, or drop --trusted-key."
        ) from exc
    try:
        document = json.loads(text)
        if len(text) > MAX_SIGNATURE_BYTES or document.get("scheme") != SCHEME:
            raise ValueError("unknown scheme or too large")
        base64.b64decode(document["signature"], validate=True)
        return dict(document)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SignatureError(f"{source}: {path.name} is not a tumorscan signature ({exc}).") from exc


def verify_signature(model: Path, content: bytes, trusted_keys: Sequence[Any], source: str) -> str:
    """The key id of the trusted key that signed exactly `content` (the model file's bytes).

    Raises:
        SignatureError: no signature, none by a trusted key, or the file changed after signing.
    """
    from cryptography.exceptions import InvalidSignature

    document = _signature_document(model, source)
    digest = hashlib.sha256(content).digest()
    signature = base64.b64decode(document["signature"])
    for key in trusted_keys:
        try:
            key.verify(signature, CONTEXT + digest)
        except InvalidSignature:
            continue
        return _key_id(key)
    if document.get("sha256") != digest.hex():
        raise SignatureError(
            f"{source}: the file changed after it was signed (its sha256 is not the signed one); use the "
            "signed original."
        )
    raise SignatureError(
        f"{source}: signed by key {document.get('key_id')!s:.16}, which is not among the trusted keys; "
        "pass that key's public file with --trusted-key if you trust it."
    )
