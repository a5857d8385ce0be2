"""Mutual TLS between the xApp and the rApp with the certificates of
deploy/tls/make-certs.sh, on a real gRPC server over a socket configured as the rApp
configures its own (client certificates required, signed by the deployment's CA); and
the rApp's health probe (deploy/probes/rapp_health.py), run as compose runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from deploy.deploy_support import DEPLOY, PROBE, make_certs, needs_openssl

pytestmark = needs_openssl

SERVICE = "lameta.v1.IntentService"


class RecordingHealth(health.HealthServicer):
    """grpc.health.v1 that records who called (the certificate's common name)."""

    def __init__(self) -> None:
        super().__init__()
        self.callers: list[str] = []

    def Check(self, request, context):
        names = context.auth_context().get("x509_common_name", [b"?"])
        self.callers.append(names[0].decode())
        return super().Check(request, context)


@pytest.fixture
def rapp(pki: Path):
    """A gRPC server with the rApp's certificate, requiring client certificates."""
    d = pki / "rapp"
    creds = grpc.ssl_server_credentials(
        [((d / "tls.key").read_bytes(), (d / "tls.crt").read_bytes())],
        root_certificates=(d / "ca.crt").read_bytes(),
        require_client_auth=True,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = RecordingHealth()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    yield port, servicer
    server.stop(grace=None)


def _check(port: int, pki: Path, client: str | None, name: str = "rapp", ca: Path | None = None):
    key = cert = None
    if client is not None:
        key = (pki / client / "tls.key").read_bytes()
        cert = (pki / client / "tls.crt").read_bytes()
    creds = grpc.ssl_channel_credentials(
        root_certificates=(ca or pki / "ca.crt").read_bytes(),
        private_key=key,
        certificate_chain=cert,
    )
    options = [("grpc.ssl_target_name_override", name)]
    with grpc.secure_channel(f"127.0.0.1:{port}", creds, options) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)


def test_the_xapp_is_known_to_the_rapp_by_its_certificate(rapp, pki: Path) -> None:
    port, servicer = rapp
    assert _check(port, pki, "xapp").status == health_pb2.HealthCheckResponse.SERVING
    assert _check(port, pki, "operator").status == health_pb2.HealthCheckResponse.SERVING
    # RAPP_REPORT_IDENTITIES matches these names: compose and Helm allow xapp-composer.
    assert servicer.callers == ["xapp-composer", "operator"]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert compose["services"]["rapp"]["environment"]["RAPP_REPORT_IDENTITIES"] == "xapp-composer"


def test_strangers_are_refused(rapp, pki: Path, tmp_path: Path) -> None:
    port, servicer = rapp
    with pytest.raises(grpc.RpcError) as no_cert:
        _check(port, pki, None)
    assert no_cert.value.code() == grpc.StatusCode.UNAVAILABLE
    other = tmp_path / "other"
    assert make_certs(other).returncode == 0  # another deployment's CA
    with pytest.raises(grpc.RpcError):
        _check(port, other, "xapp", ca=pki / "ca.crt")
    with pytest.raises(grpc.RpcError):  # the client does not trust the rApp either
        _check(port, pki, "xapp", ca=other / "ca.crt")
    with pytest.raises(grpc.RpcError):  # a name the rApp's certificate does not carry
        _check(port, pki, "xapp", name="elsewhere")
    assert servicer.callers == []


def _probe_argv() -> list[str]:
    """The rApp's compose health check, with the script at its place in the repository."""
    test = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["rapp"]["healthcheck"][
        "test"
    ]
    assert test[:3] == ["CMD", "python", "/opt/lameta/rapp_health.py"]
    return [sys.executable, str(PROBE), *test[3:]]


def _probe(port: int, pki: Path, argv: list[str] | None = None) -> subprocess.CompletedProcess:
    d = pki / "rapp"
    env = {**os.environ, "RAPP_PORT": str(port), "RAPP_TLS_CERT": str(d / "tls.crt"),
           "RAPP_TLS_KEY": str(d / "tls.key"), "RAPP_TLS_CLIENT_CA": str(d / "ca.crt")}  # fmt: skip
    return subprocess.run(argv or _probe_argv(), env=env, capture_output=True, text=True)


def test_the_health_probe_passes_once_the_service_is_serving(rapp, pki: Path) -> None:
    port, servicer = rapp
    servicer.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    down = _probe(port, pki)
    assert down.returncode == 1 and "NOT_SERVING" in down.stderr
    servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    up = _probe(port, pki)
    assert up.returncode == 0, up.stderr
    assert servicer.callers[-1] == "rapp-intent"  # its own certificate, not an xApp's


def test_the_health_probe_fails_on_a_certificate_the_xapp_would_reject(rapp, pki) -> None:
    port, servicer = rapp
    servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    argv = _probe_argv()
    argv[argv.index("--server-name") + 1] = "not-in-the-certificate"
    wrong = _probe(port, pki, argv)
    assert wrong.returncode == 1 and "UNAVAILABLE" in wrong.stderr


def test_the_health_probe_says_what_is_missing(pki: Path) -> None:
    done = subprocess.run(_probe_argv(), env={"PATH": os.environ["PATH"]},
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1 and "RAPP_PORT" in done.stderr and "RAPP_TLS_CERT" in done.stderr
