"""Prometheus metrics of the intent rApp (one registry per server instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class RappMetrics:
    """Request counts by method and status code, latency, E-LAM failures and fallbacks.

    Args:
        registry: collector registry (a fresh one by default, so several servers can live
            in one process, as in tests).
    """

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "rapp_requests", "gRPC calls by method and status code", ["method", "code"], registry=r
        )
        self.latency = Histogram(
            "rapp_request_seconds",
            "gRPC call latency by method",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("rapp_in_flight_requests", "IntentService calls running", registry=r)
        self.translations = Counter(
            "rapp_translations", "prompts translated by E-LAM", ["model"], registry=r
        )
        self.failures = Counter(
            "rapp_elam_failures",
            "E-LAM outputs that failed validation, by reason",
            ["model", "reason"],
            registry=r,
        )
        self.fallbacks = Counter(
            "rapp_fallbacks",
            "translations served from the fallback (recent mean, app profile or even)",
            ["model", "source"],
            registry=r,
        )
        self.calibrations = Counter(
            "rapp_calibrations", "translations calibrated by eq. 46", ["model"], registry=r
        )
        self.memory_appends = Counter(
            "rapp_memory_appends", "records appended by ReportOutcome", ["app"], registry=r
        )
        self.memory_refused = Counter(
            "rapp_memory_refused",
            "ReportOutcome records not averaged in, by reason (denied: caller not allowed; "
            "rate_limited; duplicate: request id already stored; quarantined: stored but far "
            "from the application's history)",
            ["app", "reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "rapp_translate_batch_size",
            "Translate calls served by one micro-batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.ready = Gauge("rapp_ready", "1 when the E-LAMs are loaded and warm", registry=r)
        self._http = None

    def serve_http(self, host: str, port: int) -> int:
        """Expose ``/metrics`` on ``host:port`` (0: any free port); returns the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        return int(server.server_port)

    def close(self) -> None:
        """Stop the HTTP endpoint (idempotent)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
