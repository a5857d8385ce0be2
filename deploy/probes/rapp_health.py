"""The rApp's health probe over mutual TLS (compose healthcheck, Kubernetes exec probes).

Kubernetes' built-in gRPC probe and a plain ``grpc.insecure_channel`` cannot speak TLS, so
the probe runs inside the rApp's container and authenticates with the rApp's own
certificate (issued for serving and as a client; an identity that may not report
outcomes). It reads the container's settings: ``RAPP_PORT``, ``RAPP_TLS_CERT``,
``RAPP_TLS_KEY`` and ``RAPP_TLS_CLIENT_CA`` (the CA that signed every certificate). The
server certificate must carry ``--server-name``, the name clients dial (``rapp`` in
compose, the Service's name in Kubernetes): a certificate the xApp would reject fails the
probe too.

Exit status 0 when ``grpc.health.v1`` answers SERVING for ``--service``, else 1 with the
reason on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-name", required=True, help="name the certificate must carry")
    parser.add_argument("--service", default="", help="health service name ('': the server)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds for the call")
    args = parser.parse_args(argv)

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    env = {k: os.environ.get(k, "") for k in
           ("RAPP_PORT", "RAPP_TLS_CERT", "RAPP_TLS_KEY", "RAPP_TLS_CLIENT_CA")}  # fmt: skip
    missing = [k for k, v in env.items() if not v]
    if missing:
        print(f"rapp_health: {', '.join(missing)} not set", file=sys.stderr)
        return 1
    try:
        creds = grpc.ssl_channel_credentials(
            root_certificates=Path(env["RAPP_TLS_CLIENT_CA"]).read_bytes(),
            private_key=Path(env["RAPP_TLS_KEY"]).read_bytes(),
            certificate_chain=Path(env["RAPP_TLS_CERT"]).read_bytes(),
        )
    except OSError as exc:
        print(f"rapp_health: {exc}", file=sys.stderr)
        return 1
    options = [("grpc.ssl_target_name_override", args.server_name)]
    with grpc.secure_channel(f"127.0.0.1:{env['RAPP_PORT']}", creds, options) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(f"rapp_health: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"rapp_health: {args.service or 'server'} is {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
