"""deploy/tls/make-certs.sh and deploy/tls/init.sh: the deployment's certificates, checked
with the ``cryptography`` package and ``openssl verify``, and handed to each compose
service as its own files."""

from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deploy.deploy_support import TLS_INIT, make_certs, needs_openssl, run_script
from lameta_stack.pki import CertificateAuthority

pytestmark = needs_openssl

SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
EXPECTED = {
    # component: (CN, extended key usages, subjectAltNames)
    "broker": ("broker", {SERVER}, {"mosquitto", "localhost", "127.0.0.1"}),
    "rapp": ("rapp-intent", {SERVER, CLIENT}, {"rapp", "localhost", "127.0.0.1"}),
    "xapp": ("xapp-composer", {CLIENT}, None),
    "operator": ("operator", {CLIENT}, None),
}


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _names(cert: x509.Certificate) -> set[str] | None:
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    ips = {str(ip) for ip in alt.get_values_for_type(x509.IPAddress)}
    return set(alt.get_values_for_type(x509.DNSName)) | ips


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _verify(ca: Path, cert: Path, purpose: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), "-purpose", purpose, str(cert)],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("component", sorted(EXPECTED))
def test_each_component_gets_its_identity(pki: Path, component: str) -> None:
    cn, usages, names = EXPECTED[component]
    d = pki / component
    assert sorted(p.name for p in d.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    assert (d / "ca.crt").read_bytes() == (pki / "ca.crt").read_bytes()
    assert _mode(d / "tls.key") == 0o600
    cert, ca = _cert(d / "tls.crt"), _cert(pki / "ca.crt")
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == usages
    assert _names(cert) == names
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    for usage, purpose in ((SERVER, "sslserver"), (CLIENT, "sslclient")):
        done = _verify(pki / "ca.crt", d / "tls.crt", purpose)
        assert (done.returncode == 0) == (usage in usages), (purpose, done.stdout, done.stderr)


def test_the_ca_signs_and_only_signs(pki: Path) -> None:
    ca = _cert(pki / "ca" / "ca.crt")
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is True and bc.path_length == 0
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert _mode(pki / "ca" / "ca.key") == 0o600


def test_a_second_run_keeps_everything_and_reissues_what_was_deleted(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    assert make_certs(out).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = make_certs(out)
    assert again.returncode == 0 and "kept" in again.stdout
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # Rotation of one identity: delete its directory, run again.
    old_xapp = (out / "xapp" / "tls.crt").read_bytes()
    for p in (out / "xapp").iterdir():
        p.unlink()
    (out / "xapp").rmdir()
    assert make_certs(out).returncode == 0
    assert (out / "xapp" / "tls.crt").read_bytes() != old_xapp
    assert (out / "broker" / "tls.crt").read_bytes() == before[out / "broker" / "tls.crt"]
    _cert(out / "xapp" / "tls.crt").verify_directly_issued_by(_cert(out / "ca.crt"))


def test_names_for_kubernetes_and_an_existing_ca(tmp_path: Path) -> None:
    """The certificates of a Helm release, signed by the CA of a `lameta-stack up`
    directory (its pki/ca.pem and ca.key)."""
    stack_ca = CertificateAuthority(tmp_path / "stack-pki")
    out = tmp_path / "pki"
    done = make_certs(
        out,
        CA_CERT=str(stack_ca.cert_path),
        CA_KEY=str(stack_ca.key_path),
        BROKER_NAMES="lab-lameta-mosquitto,lab-lameta-mosquitto.ric.svc",
        RAPP_NAMES="lab-lameta-rapp,lab-lameta-rapp.ric.svc,10.0.0.7,::1",
    )
    assert done.returncode == 0, done.stderr
    assert not (out / "ca").exists()  # the CA's key stays where it is
    ca = _cert(stack_ca.cert_path)
    for component in EXPECTED:
        _cert(out / component / "tls.crt").verify_directly_issued_by(ca)
    assert _names(_cert(out / "broker" / "tls.crt")) == {
        "lab-lameta-mosquitto", "lab-lameta-mosquitto.ric.svc"}  # fmt: skip
    rapp = _cert(out / "rapp" / "tls.crt")
    alt = rapp.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(alt.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("10.0.0.7"), ipaddress.ip_address("::1")}  # fmt: skip


def test_bad_invocations_say_what_is_wrong(tmp_path: Path) -> None:
    usage = subprocess.run(["sh", str(TLS_INIT.parent / "make-certs.sh")], capture_output=True)
    assert usage.returncode == 2 and b"usage" in usage.stderr
    half = make_certs(tmp_path / "x", CA_CERT=str(tmp_path / "nope.pem"))
    assert half.returncode == 1 and "CA_CERT and CA_KEY" in half.stderr
    days = make_certs(tmp_path / "y", DAYS="soon")
    assert days.returncode == 1 and "DAYS" in days.stderr


def test_tls_init_gives_each_service_only_its_own_files(pki: Path, tmp_path: Path) -> None:
    out = tmp_path / "volumes"
    done = run_script(TLS_INIT, {"SRC": str(pki), "OUT": str(out)})
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["broker", "ca", "rapp", "xapp"]
    assert [p.name for p in (out / "ca").iterdir()] == ["ca.crt"]
    owners = {"broker": 1883, "rapp": 10001, "xapp": 10001}
    for component, uid in owners.items():
        d = out / component
        assert sorted(p.name for p in d.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
        assert (d / "tls.key").read_bytes() == (pki / component / "tls.key").read_bytes()
        assert _mode(d / "tls.key") == 0o400 and _mode(d / "tls.crt") == 0o444
        if os.geteuid() == 0:
            assert (d / "tls.key").stat().st_uid == uid
    # Run again (a restart of the stack): the same files, nothing left over.
    assert run_script(TLS_INIT, {"SRC": str(pki), "OUT": str(out)}).returncode == 0
    assert sorted(p.name for p in (out / "rapp").iterdir()) == ["ca.crt", "tls.crt", "tls.key"]


def test_tls_init_refuses_a_missing_pki(tmp_path: Path) -> None:
    done = run_script(TLS_INIT, {"SRC": str(tmp_path / "empty"), "OUT": str(tmp_path / "o")})
    assert done.returncode == 1 and "make-certs.sh" in done.stderr
