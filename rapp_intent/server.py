"""gRPC server of the intent rApp: ``lameta.v1.IntentService`` plus health and reflection.

The servicer is thin: it turns protobuf messages into :mod:`rapp_intent.service` inputs,
calls :class:`~rapp_intent.service.IntentTranslator`, and turns results and errors back
into protobuf and status codes:

============================  =====================
InvalidInput (bad prompt...)  INVALID_ARGUMENT
NotFound (unknown model)      NOT_FOUND
Unavailable (loading/drain)   UNAVAILABLE
DeadlineTooShort              DEADLINE_EXCEEDED
too many concurrent calls     RESOURCE_EXHAUSTED
ReportOutcome over the rate   RESOURCE_EXHAUSTED
ReportOutcome by a caller     PERMISSION_DENIED
not in report_identities
anything unexpected           INTERNAL (with an error id that is logged with the traceback)
============================  =====================

A request whose bytes do not parse (for example a string field that is not UTF-8) is
answered INVALID_ARGUMENT too: the request deserialisers keep the parse error instead of
letting grpc answer INTERNAL.

Every refusal, whatever its cause, is counted in ``rapp_requests_total{method, code}``:
the servicer's own admission limit (``max_concurrent_rpcs``) refuses before grpc's, which
is set well above it.

Who may write the memory: ``ReportOutcome`` is accepted only from a caller whose mutual-TLS
client certificate has a common name in ``report_identities`` ('*' admits any caller,
unauthenticated ones included), at most ``report_rate`` records per second per
application (token bucket of ``report_burst``); the memory itself ignores a request id it
already holds and quarantines records far from the application's history.

Translate calls are micro-batched (:class:`~rapp_intent.service.MicroBatcher`, settings
``batch_window_ms`` and ``batch_max``): concurrent calls share one E-LAM pass and get the
answers single calls would get; ``rapp_translate_batch_size`` counts the batch sizes.

Lifecycle (:class:`RappServer`): the port opens at once with health NOT_SERVING; the E-LAMs
load and warm up in the background, then health turns SERVING. On stop (SIGTERM in
:func:`serve`) health answers NOT_SERVING and new IntentService calls get UNAVAILABLE while
in-flight calls finish (at most ``grace_s`` seconds); only then does the port close.
"""

from __future__ import annotations

import functools
import signal
import threading
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lameta_proto.v1 import intent_pb2
from rapp_intent.elam.registry import Registry, load_registry
from rapp_intent.memory import Memory
from rapp_intent.metrics import RappMetrics
from rapp_intent.service import (
    DeadlineTooShort,
    IntentTranslator,
    InvalidInput,
    MicroBatcher,
    NotFound,
    TranslateInput,
    TranslateOutput,
    Unavailable,
)
from rapp_intent.settings import RappSettings
from servicekit.grpc_access import AccessLog
from servicekit.heap import freeze_startup

log = structlog.get_logger(__name__)

SERVICE_NAME = intent_pb2.DESCRIPTOR.services_by_name["IntentService"].full_name
_CODES = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineTooShort: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class _Undecodable:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, error: str):
        self.error = error


def _lenient(message_cls: Any) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return message_cls.FromString(data)
        except DecodeError as exc:
            return _Undecodable(str(exc))

    return deserialize


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _rpc(method: str) -> Callable:
    """Wrap a servicer method: admission, error mapping, metrics, logging."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(self: IntentServicer, request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            message = ""
            admitted = False
            try:
                if isinstance(request, _Undecodable):
                    raise InvalidInput(f"malformed request: {request.error}")
                translator = self.state.translator
                if self.state.draining:
                    raise Unavailable("the service is shutting down")
                if translator is None:
                    raise Unavailable("the E-LAMs are still loading; retry when health is SERVING")
                admitted = self._admit()
                if not admitted:
                    raise _Abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"more than {self._max_concurrent} concurrent calls; retry later",
                    )
                self.metrics.in_flight.inc()
                return fn(self, translator, request, context)
            except _Abort as exc:
                code, message = exc.code, exc.message
            except tuple(_CODES) as exc:
                code, message = _CODES[type(exc)], str(exc)
            except Exception:
                error_id = uuid.uuid4().hex[:12]
                log.exception("rpc.internal_error", method=method, error_id=error_id)
                code, message = grpc.StatusCode.INTERNAL, f"internal error (id {error_id})"
            finally:
                if admitted:
                    self.metrics.in_flight.dec()
                    self._release()
                if code is grpc.StatusCode.OK:
                    self.metrics.requests.labels(method, code.name).inc()
                    self.metrics.latency.labels(method).observe(time.perf_counter() - start)
            self.metrics.requests.labels(method, code.name).inc()
            self.metrics.latency.labels(method).observe(time.perf_counter() - start)
            log.info("rpc.refused", method=method, code=code.name, reason=message)
            context.abort(code, message)

        return wrapper

    return decorate


def caller_identity(context: grpc.ServicerContext) -> str | None:
    """The common name of the caller's verified client certificate (mutual TLS), or None."""
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode("utf-8", "replace") if names else None


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens per second, at most ``burst`` saved."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self._clock = rate, float(burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        """Take one token for ``key``; False when its bucket is empty."""
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1.0, now)
            return True


class ReportPolicy:
    """Who may call ReportOutcome, and how often (see the module docstring)."""

    def __init__(self, identities: list[str], rate: float, burst: int):
        self.anyone = "*" in identities
        self.identities = frozenset(i for i in identities if i != "*")
        self.buckets = TokenBuckets(rate, burst)

    def check(self, context: grpc.ServicerContext, app: str) -> tuple[str, str] | None:
        """None when the call may write, else (reason, message)."""
        if not self.anyone:
            who = caller_identity(context)
            if who is None:
                return "denied", (
                    "ReportOutcome needs a client certificate (mutual TLS) whose name is in "
                    "RAPP_REPORT_IDENTITIES"
                )
            if who not in self.identities:
                return "denied", f"client {who!r} may not write the memory (RAPP_REPORT_IDENTITIES)"
        if not self.buckets.take(app):
            return "rate_limited", f"more than the allowed ReportOutcome rate for app {app!r}"
        return None


class ServiceState:
    """What the servicer reads on every call: the translator once loaded, its micro-batcher
    (None: no micro-batching), drain flag."""

    def __init__(self) -> None:
        self.translator: IntentTranslator | None = None
        self.batcher: MicroBatcher | None = None
        self.draining = False


def _deadline(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e8:  # no deadline set by the client
        return None
    return time.monotonic() + remaining


def _message(cls: Any, obj: Any) -> Any:
    """A protobuf message of ``cls`` from the same-named attributes of ``obj``."""
    return cls(**{f.name: getattr(obj, f.name) for f in cls.DESCRIPTOR.fields})


def _response(out: TranslateOutput) -> intent_pb2.TranslateResponse:
    return _message(intent_pb2.TranslateResponse, out)


def _input(req: intent_pb2.TranslateRequest) -> TranslateInput:
    return TranslateInput(
        prompt=req.prompt, model=req.model, app=req.app, request_id=req.request_id
    )


class IntentServicer:
    """``lameta.v1.IntentService``: protobuf in, :class:`IntentTranslator` call, protobuf out."""

    def __init__(
        self,
        state: ServiceState,
        metrics: RappMetrics,
        max_concurrent: int,
        reports: ReportPolicy,
    ):
        self.state = state
        self.metrics = metrics
        self.reports = reports
        self._max_concurrent = max_concurrent
        self._running = 0
        self._lock = threading.Lock()

    def in_flight(self) -> int:
        """IntentService calls admitted and not yet answered."""
        return self._running

    def _admit(self) -> bool:
        with self._lock:
            if self._running >= self._max_concurrent:
                return False
            self._running += 1
            return True

    def _release(self) -> None:
        with self._lock:
            self._running -= 1

    def _count(self, outputs: list[TranslateOutput]) -> None:
        m = self.metrics
        for out in outputs:
            m.translations.labels(out.model).inc()
            if out.fallback:
                m.failures.labels(out.model, out.failure_reason or "error").inc()
                m.fallbacks.labels(out.model, out.source).inc()
            if out.calibrated:
                m.calibrations.labels(out.model).inc()

    @_rpc("Translate")
    def Translate(self, translator, request, context):
        batcher = self.state.batcher
        single = batcher.translate if batcher is not None else translator.translate
        out = single(_input(request), _deadline(context))
        self._count([out])
        return _response(out)

    @_rpc("TranslateBatch")
    def TranslateBatch(self, translator, request, context):
        outs = translator.translate_batch([_input(r) for r in request.requests], _deadline(context))
        self._count(outs)
        return intent_pb2.TranslateBatchResponse(responses=[_response(o) for o in outs])

    @_rpc("ReportOutcome")
    def ReportOutcome(self, translator, request, context):
        refused = self.reports.check(context, request.app)
        if refused is not None:
            reason, message = refused
            self.metrics.memory_refused.labels(request.app, reason).inc()
            code = grpc.StatusCode.PERMISSION_DENIED
            if reason == "rate_limited":
                code = grpc.StatusCode.RESOURCE_EXHAUSTED
            raise _Abort(code, message)
        done = translator.report_outcome(
            request.prompt,
            list(request.preference),
            request.reward,
            request.app,
            request.request_id,
        )
        if not done.stored:
            self.metrics.memory_refused.labels(request.app, "duplicate").inc()
        else:
            self.metrics.memory_appends.labels(request.app).inc()
            if done.quarantined:
                self.metrics.memory_refused.labels(request.app, "quarantined").inc()
        return intent_pb2.ReportOutcomeResponse(memory_size=done.count)

    @_rpc("ListModels")
    def ListModels(self, translator, request, context):
        models = [_message(intent_pb2.ModelInfo, m) for m in translator.list_models()]
        return intent_pb2.ListModelsResponse(models=models)

    def handler(self) -> grpc.GenericRpcHandler:
        """Method handlers with lenient request deserialisers (see the module docstring)."""
        methods = {
            "Translate": (intent_pb2.TranslateRequest, intent_pb2.TranslateResponse),
            "TranslateBatch": (intent_pb2.TranslateBatchRequest, intent_pb2.TranslateBatchResponse),
            "ReportOutcome": (intent_pb2.ReportOutcomeRequest, intent_pb2.ReportOutcomeResponse),
            "ListModels": (intent_pb2.ListModelsRequest, intent_pb2.ListModelsResponse),
        }
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                name: grpc.unary_unary_rpc_method_handler(
                    getattr(self, name),
                    request_deserializer=_lenient(req),
                    response_serializer=resp.SerializeToString,
                )
                for name, (req, resp) in methods.items()
            },
        )


def _read(path: Path | None) -> bytes | None:
    return Path(path).read_bytes() if path is not None else None


def server_credentials(settings: RappSettings) -> grpc.ServerCredentials | None:
    """TLS (and mutual TLS when ``tls_client_ca`` is set) credentials, or None."""
    if settings.tls_cert is None:
        return None
    client_ca = _read(settings.tls_client_ca)
    return grpc.ssl_server_credentials(
        [(_read(settings.tls_key), _read(settings.tls_cert))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


class RappServer:
    """The rApp's gRPC server and its lifecycle.

    Args:
        settings: service settings.
        registry: E-LAMs already loaded (tests share them); None loads them from the
            settings in the background after the port opens.
        memory: in-context memory (default: the SQLite file of the settings).
        freeze_heap: once the E-LAMs are loaded and warm, freeze the process's objects
            out of the garbage collector's full passes (:mod:`servicekit.heap`; what the
            ``serve`` process does; it concerns the whole process, so not for a server
            sharing its process with others).
    """

    def __init__(
        self,
        settings: RappSettings,
        registry: Registry | None = None,
        memory: Memory | None = None,
        *,
        freeze_heap: bool = False,
    ):
        self.settings = settings
        self.freeze_heap = freeze_heap
        self.metrics = RappMetrics()
        self.state = ServiceState()
        self.health = health.HealthServicer()
        self.memory = memory or Memory(settings.memory_path, settings.memory_max_records)
        self._registry = registry
        self._ready = threading.Event()
        self.load_error: BaseException | None = None
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._server: grpc.Server | None = None
        self._loader: threading.Thread | None = None
        self._stopped = False
        self._access_log: AccessLog | None = None
        self._servicer: IntentServicer | None = None

    def in_flight(self) -> int:
        """IntentService calls admitted and not yet answered (0 before start)."""
        return self._servicer.in_flight() if self._servicer is not None else 0

    def _set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def start(self) -> int:
        """Open the port (health NOT_SERVING) and start loading; returns the bound port."""
        s = self.settings
        # The servicer admits max_concurrent_rpcs calls and refuses (and counts) the rest
        # in microseconds; grpc's own limit, which nothing can count, sits far above it.
        workers = s.max_concurrent_rpcs + 64
        if s.access_log is not None:
            self._access_log = AccessLog(s.access_log)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rapp-rpc"),
            interceptors=[self._access_log] if self._access_log is not None else None,
            maximum_concurrent_rpcs=4 * workers,
            options=[("grpc.so_reuseport", 0)],
        )
        reports = ReportPolicy(s.report_identities, s.report_rate, s.report_burst)
        if not reports.anyone and s.tls_client_ca is None:
            log.warning(
                "rapp.reports_refused",
                reason="without mutual TLS no caller has an identity: every ReportOutcome "
                "is refused (set RAPP_TLS_CLIENT_CA, or RAPP_REPORT_IDENTITIES='*' in "
                "development)",
            )
        servicer = IntentServicer(self.state, self.metrics, s.max_concurrent_rpcs, reports)
        server.add_generic_rpc_handlers((servicer.handler(),))
        self._servicer = servicer
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        address = f"{s.host}:{s.port}"
        creds = server_credentials(s)
        port = (
            server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
        )
        if port == 0:
            raise OSError(f"could not bind {address}")
        server.start()
        self._server, self.port = server, port
        if s.metrics_port:
            self.metrics_port = self.metrics.serve_http(s.metrics_host, s.metrics_port)
        log.info(
            "rapp.listening",
            address=address,
            tls=creds is not None,
            port=port,
            metrics_port=self.metrics_port,
        )
        self._loader = threading.Thread(target=self._load, name="rapp-loader", daemon=True)
        self._loader.start()
        return port

    def _load(self) -> None:
        try:
            registry = self._registry or load_registry(self.settings)
            registry.warmup()
            translator = IntentTranslator.from_settings(registry, self.memory, self.settings)
        except BaseException as exc:  # reported by wait_ready / serve, never swallowed
            self.load_error = exc
            log.exception("rapp.load_failed")
            self._ready.set()
            return
        if self._stopped:
            self._ready.set()
            return
        self._registry = registry
        s = self.settings
        if s.batch_max > 1:
            self.state.batcher = MicroBatcher(
                translator,
                s.batch_window_ms / 1000.0,
                s.batch_max,
                self.metrics.batch_size.observe,
                new_apart=s.batch_new_apart,
            )
        self.state.translator = translator
        if self.freeze_heap:  # loaded and warm: out of the full GC passes' way
            log.info("rapp.heap_frozen", objects=freeze_startup())
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self.metrics.ready.set(1)
        log.info("rapp.serving", models=[e.id for e in registry], default=registry.default_id)
        self._ready.set()

    @property
    def registry(self) -> Registry | None:
        """The loaded E-LAMs (None while loading)."""
        return self._registry if self.state.translator is not None else None

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until loaded (True) or timeout (False).

        Raises:
            RuntimeError: loading failed (the cause is chained).
        """
        if not self._ready.wait(timeout):
            return False
        if self.load_error is not None:
            raise RuntimeError("the E-LAMs failed to load") from self.load_error
        return True

    def stop(self, grace: float | None = None) -> None:
        """Graceful stop: NOT_SERVING, refuse new calls, let in-flight ones finish."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.settings.grace_s if grace is None else grace
        log.info("rapp.stopping", grace_s=grace)
        # Health keeps answering (NOT_SERVING) while in-flight calls finish; new
        # IntentService calls get UNAVAILABLE from the servicer. Then the port closes.
        self.health.enter_graceful_shutdown()
        self.metrics.ready.set(0)
        self.state.draining = True
        end = time.monotonic() + grace
        while self.in_flight() > 0 and time.monotonic() < end:
            time.sleep(0.02)
        if self._server is not None:
            self._server.stop(max(0.0, end - time.monotonic())).wait()
        if self.state.batcher is not None:
            self.state.batcher.close()
        self.metrics.close()
        self.memory.close()
        if self._access_log is not None:
            self._access_log.close()
        log.info("rapp.stopped")


def serve(settings: RappSettings) -> int:
    """Run the rApp until SIGTERM or SIGINT; returns the process exit code."""
    server = RappServer(settings, freeze_heap=True)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("rapp.signal", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    server.start()
    code = 0
    while not stop.is_set():
        if server._ready.is_set() and server.load_error is not None:
            code = 1
            break
        stop.wait(0.2)
    server.stop()
    return code
