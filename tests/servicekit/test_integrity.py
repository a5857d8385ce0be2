"""Signed artefacts: Ed25519 over the files' hashes; any change, addition or other key fails."""

from __future__ import annotations

import json

import pytest

from servicekit.integrity import (
    IntegrityError,
    generate_keypair,
    load_private_key,
    load_public_key,
    sign_files,
    verify_files,
)


@pytest.fixture
def artefact(tmp_path):
    d = tmp_path / "policy"
    d.mkdir()
    for name, body in (("p.onnx", b"graph"), ("p.encoder.onnx", b"enc"), ("p.card.json", b"{}")):
        (d / name).write_bytes(body)
    kid = generate_keypair(tmp_path / "key.pem", tmp_path / "key.pub")
    doc = sign_files(sorted(d.iterdir()), load_private_key(tmp_path / "key.pem"))
    return d, doc, load_public_key(tmp_path / "key.pub"), kid


def test_a_signed_artefact_verifies_and_names_its_key(artefact) -> None:
    d, doc, pub, kid = artefact
    verify_files(doc, d, [p.name for p in d.iterdir()], pub)
    assert doc["key_id"] == kid and len(kid) == 16
    assert oct((d.parent / "key.pem").stat().st_mode & 0o777) == "0o600"


def test_tampering_is_refused(artefact, tmp_path) -> None:
    d, doc, pub, _ = artefact
    names = [p.name for p in d.iterdir()]
    (d / "p.onnx").write_bytes(b"negated weights")
    with pytest.raises(IntegrityError, match=r"p\.onnx was changed after signing"):
        verify_files(doc, d, names, pub)
    (d / "p.onnx").write_bytes(b"graph")
    with pytest.raises(IntegrityError, match=r"unsigned file\(s\): \['p.extra.onnx'\]"):
        verify_files(doc, d, [*names, "p.extra.onnx"], pub)
    with pytest.raises(IntegrityError, match="signed file"):
        verify_files(doc, d, names[:-1], pub)
    forged = json.loads(json.dumps(doc))
    forged["files"]["p.onnx"] = "0" * 64  # a rewritten hash, as for a rewritten card
    with pytest.raises(IntegrityError, match="does not verify"):
        verify_files(forged, d, names, pub)
    generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    with pytest.raises(IntegrityError, match="does not verify"):
        verify_files(doc, d, names, load_public_key(tmp_path / "other.pub"))
    with pytest.raises(IntegrityError, match="not a lameta-signature/1"):
        verify_files({"signature": "x"}, d, names, pub)


def test_keys_are_never_overwritten_and_bad_keys_are_named(tmp_path) -> None:
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    with pytest.raises(FileExistsError):
        generate_keypair(tmp_path / "k.pem", tmp_path / "k2.pub")
    (tmp_path / "junk.pub").write_text("not a key")
    with pytest.raises(IntegrityError, match=r"junk\.pub"):
        load_public_key(tmp_path / "junk.pub")
