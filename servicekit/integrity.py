"""Integrity and authenticity of shipped artefacts.

A model card's sha256 guards against corruption, not against whoever can write the
directory: rewrite a graph and its card's hash together and the card still agrees. A
signed manifest closes that: Ed25519 (the ``cryptography`` package) over the canonical
JSON list of every file of an artefact with its sha256. With a public key configured, a
consumer accepts an artefact only when the signature verifies and the files on disk are
exactly the signed ones, with the signed hashes.

Keys are PEM files: the private key PKCS#8 (mode 0600), the public key
SubjectPublicKeyInfo. ``key_id`` is the first 16 hex digits of the sha256 of the raw
public key, written into each signature so an operator can tell which key signed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SIGNATURE_FORMAT = "lameta-signature/1"
SIGNATURE_SUFFIX = ".signature.json"
"""The signature of an artefact ``<stem>.<ext>`` is ``<stem>.signature.json`` beside it;
it covers every ``<stem>.*`` file but itself."""


class IntegrityError(ValueError):
    """An artefact does not match its card or its signature."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------
def generate_keypair(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new Ed25519 key pair (private key mode 0600). Returns its key id.

    Raises:
        FileExistsError: the private key file exists (never overwritten).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_path, public_path = Path(private_path), Path(public_path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = key.public_key()
    public_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_id(public)


def load_private_key(path: str | Path):
    """An Ed25519 private key from a PEM file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise IntegrityError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: str | Path):
    """An Ed25519 public key from a PEM file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except ValueError as exc:
        raise IntegrityError(f"{path}: not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise IntegrityError(f"{path}: not an Ed25519 public key")
    return key


def key_id(public_key: Any) -> str:
    """First 16 hex digits of the sha256 of the raw public key."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signature_path(artefact: str | Path) -> Path:
    """``<stem>.signature.json`` beside ``artefact``."""
    artefact = Path(artefact)
    return artefact.with_name(artefact.stem + SIGNATURE_SUFFIX)


def artefact_files(artefact: str | Path) -> list[Path]:
    """The files a signature of ``artefact`` covers: every ``<stem>.*`` beside it but the
    signature itself."""
    artefact = Path(artefact)
    return sorted(
        p
        for p in artefact.parent.glob(f"{artefact.stem}.*")
        if not p.name.endswith(SIGNATURE_SUFFIX)
    )


def sign_artefact(artefact: str | Path, private_key: Any) -> Path:
    """Sign every file of ``artefact`` (:func:`artefact_files`); returns the signature."""
    doc = sign_files(artefact_files(artefact), private_key)
    path = signature_path(artefact)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def verify_artefact(artefact: str | Path, public_key: Any) -> str:
    """Check ``artefact``'s signature against its files; returns the signing key id.

    Raises:
        IntegrityError: no signature, or it does not verify (with the reason).
    """
    path = signature_path(artefact)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise IntegrityError(f"{path.name} is missing: the artefact is not signed") from None
    except ValueError as exc:
        raise IntegrityError(f"{path.name} is not a signature: {exc}") from None
    names = [p.name for p in artefact_files(artefact)]
    verify_files(doc, Path(artefact).parent, names, public_key)
    return str(doc.get("key_id", ""))


# --------------------------------------------------------------------------------------
# Signed manifests
# --------------------------------------------------------------------------------------
def _canonical(files: dict[str, str]) -> bytes:
    return json.dumps(
        {"format": SIGNATURE_FORMAT, "files": dict(sorted(files.items()))},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def sign_files(paths: Iterable[str | Path], private_key: Any) -> dict[str, Any]:
    """A signature document over ``paths`` (all in one directory), by file name.

    Raises:
        IntegrityError: the files are not in one directory, or two share a name.
    """
    paths = [Path(p) for p in paths]
    if len({p.parent.resolve() for p in paths}) > 1:
        raise IntegrityError("signed files must share one directory")
    files = {p.name: sha256_file(p) for p in paths}
    if len(files) != len(paths):
        raise IntegrityError("two signed files share a name")
    signature = private_key.sign(_canonical(files))
    return {
        "format": SIGNATURE_FORMAT,
        "algorithm": "ed25519",
        "key_id": key_id(private_key.public_key()),
        "files": dict(sorted(files.items())),
        "signature": base64.b64encode(signature).decode(),
    }


def verify_files(
    document: dict[str, Any], directory: str | Path, expected: Iterable[str], public_key: Any
) -> None:
    """Check a signature document against the files in ``directory``.

    Args:
        document: what :func:`sign_files` wrote.
        directory: where the files are.
        expected: the names the artefact consists of now (all must be signed, and
            nothing else may be).
        public_key: the trusted Ed25519 public key.

    Raises:
        IntegrityError: with the reason (format, key, signature, a file added, missing
            or changed).
    """
    from cryptography.exceptions import InvalidSignature

    if not isinstance(document, dict) or document.get("format") != SIGNATURE_FORMAT:
        raise IntegrityError(f"not a {SIGNATURE_FORMAT} document")
    if document.get("algorithm") != "ed25519":
        raise IntegrityError(f"unsupported signature algorithm {document.get('algorithm')!r}")
    files = document.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise IntegrityError("the signature's file list is malformed")
    try:
        signature = base64.b64decode(document.get("signature", ""), validate=True)
        public_key.verify(signature, _canonical(files))
    except (InvalidSignature, ValueError, TypeError):
        raise IntegrityError(
            f"signature does not verify with key {key_id(public_key)} "
            f"(signed by {document.get('key_id', '?')})"
        ) from None
    names = set(expected)
    unsigned = sorted(names - set(files))
    if unsigned:
        raise IntegrityError(f"unsigned file(s): {unsigned}")
    missing = sorted(set(files) - names)
    if missing:
        raise IntegrityError(f"signed file(s) missing: {missing}")
    for name, digest in files.items():
        if sha256_file(Path(directory) / name) != digest:
            raise IntegrityError(f"{name} was changed after signing")
