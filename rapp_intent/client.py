"""A client of a running rApp's ``IntentService`` (``rapp-intent translate --server``).

:class:`RemoteConfig` is the connection (address, deadline, TLS files); its fields are
``rapp-intent translate``'s flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from lameta_proto.v1 import intent_pb2, intent_pb2_grpc


@dataclass(frozen=True)
class RemoteConfig:
    """How to reach a running rApp."""

    server: str | None = field(
        default=None,
        metadata={"help": "ask a running server at HOST:PORT instead of loading a model"},
    )
    timeout: float = field(
        default=30.0, metadata={"help": "deadline of --server calls (s)", "gt": 0}
    )
    ca: Path | None = field(
        default=None,
        metadata={"help": "with --server: CA bundle (PEM) of its certificate (TLS)"},
    )
    cert: Path | None = field(
        default=None, metadata={"help": "with --server: client certificate (mutual TLS)"}
    )
    key: Path | None = field(
        default=None, metadata={"help": "with --server: client private key (mutual TLS)"}
    )

    def __post_init__(self) -> None:
        if self.server is None and any(x is not None for x in (self.ca, self.cert, self.key)):
            raise ValueError("--ca/--cert/--key apply to --server calls")
        if self.cert is not None and self.ca is None:
            raise ValueError("--cert/--key (mutual TLS) need --ca")
        if (self.cert is None) != (self.key is None):
            raise ValueError("--cert and --key go together")

    def channel(self) -> grpc.Channel:
        """A channel to :attr:`server`: TLS when :attr:`ca` is given, else plaintext.

        Raises:
            OSError: a TLS file cannot be read (its name in ``filename``).
        """
        if self.ca is None:
            return grpc.insecure_channel(self.server)
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )
        return grpc.secure_channel(self.server, creds)


def translate_remote(config: RemoteConfig, prompt: str, model: str = "", app: str = "") -> Any:
    """One ``Translate`` call; the ``TranslateResponse``.

    Raises:
        grpc.RpcError: the call failed (its code and details say why).
    """
    with config.channel() as channel:
        stub = intent_pb2_grpc.IntentServiceStub(channel)
        request = intent_pb2.TranslateRequest(prompt=prompt, model=model, app=app)
        return stub.Translate(request, timeout=config.timeout)
