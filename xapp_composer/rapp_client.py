"""gRPC client of the intent rApp (``lameta.v1.IntentService``), the xApp's adapter.

:class:`RappClient` implements the :class:`~xapp_composer.translation.Translator` interface
the decision core needs, plus ReportOutcome and the rApp's gRPC health:

- every Translate has a deadline; an error, a timeout or a vector that is not a
  preference vector raises :class:`~xapp_composer.translation.TranslationFailed` with a
  short cause, and the core falls back;
- after a failure that says the rApp is down or slow (UNAVAILABLE: a transport failure;
  DEADLINE_EXCEEDED) the client stops calling it for ``retry_after_s`` (requests fall
  back at once instead of each waiting for the deadline); a SERVING health check
  closes that window early. An answer about one request (INVALID_ARGUMENT, NOT_FOUND,
  a message too large, the rApp's own load shedding) never opens it: one bad request
  must not turn translation off for everyone;
- the channel reconnects with a short backoff (grpc's default grows to two minutes,
  which would keep a restarted rApp unused for that long);
- :meth:`check_health` asks ``grpc.health.v1`` for ``lameta.v1.IntentService`` and, on
  the way to SERVING, refreshes the list of E-LAMs the rApp hosts (ListModels).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentnet.intents import validate_vector
from lameta_proto.v1 import intent_pb2, intent_pb2_grpc
from xapp_composer.translation import Translation, TranslationFailed

log = structlog.get_logger("xapp_composer.rapp_client")

SERVICE_NAME = "lameta.v1.IntentService"
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 30_000),
)
DOWN_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
"""Failures that say the rApp is down or slow: they open the circuit."""
RETRY_CODES = DOWN_CODES | {grpc.StatusCode.RESOURCE_EXHAUSTED}
"""Failures worth retrying later (a ReportOutcome): also the rApp shedding load."""
_CAUSE = {
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "deadline",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "overloaded",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid_argument",
    grpc.StatusCode.NOT_FOUND: "unknown_model",
}


def _read(path: Path | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


class RappClient:
    """The rApp over gRPC.

    Args:
        target: ``host:port``.
        deadline_s: deadline of a Translate call.
        report_deadline_s: deadline of a ReportOutcome call.
        retry_after_s: after a down/slow failure, fall back without calling this long.
        tls_ca: CA bundle of the rApp's certificate (TLS when given).
        tls_cert: client certificate (mutual TLS).
        tls_key: client key (mutual TLS).
        clock: monotonic clock (s).
    """

    def __init__(
        self,
        target: str,
        *,
        deadline_s: float = 0.25,
        report_deadline_s: float = 1.0,
        retry_after_s: float = 1.0,
        tls_ca: Path | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.target = target
        self.deadline_s = float(deadline_s)
        self.report_deadline_s = float(report_deadline_s)
        self.retry_after_s = float(retry_after_s)
        self.clock = clock
        if tls_ca is not None:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(tls_ca),
                private_key=_read(tls_key),
                certificate_chain=_read(tls_cert),
            )
            self.channel = grpc.secure_channel(target, creds, options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.stub = intent_pb2_grpc.IntentServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self._lock = threading.Lock()
        self._open_until = 0.0
        self._reachable = False
        self._models: frozenset[str] | None = None
        self.default_model = ""
        self.log = log.bind(rapp=target)

    # ---- Translator ---------------------------------------------------------------------
    def served_models(self) -> frozenset[str] | None:
        """The E-LAMs the rApp hosts (None until a ListModels succeeded)."""
        return self._models

    @property
    def reachable(self) -> bool:
        """The last health check said SERVING (and no call failed since)."""
        return self._reachable

    def translate(self, prompt: str, elam: str, app: str, request_id: str) -> Translation:
        """Translate with E-LAM ``elam`` ("" = the rApp's default).

        Raises:
            TranslationFailed: with the cause.
        """
        if self.clock() < self._open_until:
            raise TranslationFailed("circuit_open", "the rApp failed recently")
        req = intent_pb2.TranslateRequest(prompt=prompt, model=elam, app=app, request_id=request_id)
        try:
            resp = self.stub.Translate(req, timeout=self.deadline_s)
        except grpc.RpcError as exc:
            code = exc.code()
            cause = _CAUSE.get(code, "error")
            if code in DOWN_CODES:
                self._trip()
            raise TranslationFailed(cause, f"{code.name}: {exc.details()}") from None
        try:
            vector = validate_vector(resp.preference)
        except ValueError as exc:
            raise TranslationFailed("invalid_vector", str(exc)) from None
        return Translation(
            vector=vector,
            elam=resp.model or elam,
            calibrated=resp.calibrated,
            fallback=resp.fallback,
            failure=resp.failure,
        )

    def _trip(self) -> None:
        with self._lock:
            self._open_until = self.clock() + self.retry_after_s
            if self._reachable:
                self.log.warning("rapp_unreachable")
            self._reachable = False

    # ---- outcomes -----------------------------------------------------------------------
    def report_outcome(
        self, prompt: str, vector: list[float], reward: float, app: str, request_id: str
    ) -> int:
        """Append an outcome to the rApp's in-context memory.

        Returns:
            The memory's size.

        Raises:
            grpc.RpcError: the call failed (the caller retries or drops).
        """
        resp = self.stub.ReportOutcome(
            intent_pb2.ReportOutcomeRequest(
                prompt=prompt,
                preference=vector,
                reward=reward,
                app=app,
                request_id=request_id,
            ),
            timeout=self.report_deadline_s,
        )
        return int(resp.memory_size)

    # ---- health -------------------------------------------------------------------------
    def check_health(self, timeout: float = 1.0) -> bool:
        """Ask the rApp's gRPC health; refresh the model list when it turns SERVING.

        Returns:
            True when ``lameta.v1.IntentService`` is SERVING.
        """
        try:
            resp = self.health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=timeout
            )
            ok = resp.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError as exc:
            ok = False
            detail = exc.code().name
        else:
            detail = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
        was = self._reachable
        if ok and (not was or self._models is None):
            self._refresh_models(timeout)
        with self._lock:
            self._reachable = ok
            if ok:
                self._open_until = 0.0
        if ok != was:
            if ok:
                self.log.info("rapp_reachable", models=sorted(self._models or ()))
            else:
                self.log.warning("rapp_unreachable", status=detail)
        return ok

    def _refresh_models(self, timeout: float) -> None:
        try:
            resp = self.stub.ListModels(intent_pb2.ListModelsRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            self.log.warning("rapp_list_models_failed", code=exc.code().name)
            return
        self._models = frozenset(m.id for m in resp.models)
        self.default_model = next((m.id for m in resp.models if m.is_default), "")

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()
