"""HTTP health and metrics of a service: the O-RAN SC paths and Prometheus.

=========================  ==============================================================
path                       answer
=========================  ==============================================================
``/ric/v1/health/alive``   200 while the process serves (the liveness probe)
``/ric/v1/health/ready``   200 when every readiness check of the service passes (the
                           xApp: broker connected, the rApp SERVING, a policy loaded;
                           the negotiation rApp: broker connected, a state observed),
                           else 503; the body (JSON) says which check failed
``/metrics``               Prometheus text format
=========================  ==============================================================
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

ALIVE_PATH = "/ric/v1/health/alive"
READY_PATH = "/ric/v1/health/ready"
METRICS_PATH = "/metrics"

log = structlog.get_logger("servicekit.health")


class HealthServer:
    """A small threaded HTTP server on its own daemon thread.

    Args:
        host: bind address.
        port: TCP port (0: any free port; see :attr:`port`).
        checks: ``checks()`` -> ``{name: ok}``; ready when every one is True.
        registry: the Prometheus registry of ``/metrics``.
        alive: ``alive()`` -> False once the service is shutting down for good.
        name: the server thread's name.
    """

    def __init__(
        self,
        host: str,
        port: int,
        checks: Callable[[], dict[str, bool]],
        registry: CollectorRegistry,
        alive: Callable[[], bool] = lambda: True,
        name: str = "health",
    ):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].rstrip("/")
                if path == ALIVE_PATH:
                    ok = outer.alive()
                    self._json(
                        HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, {"alive": ok}
                    )
                elif path == READY_PATH:
                    try:
                        checks = outer.checks()
                    except Exception:  # a failing check is a not-ready answer, not a 500
                        log.exception("readiness_check_failed")
                        checks = {"checks": False}
                    ready = all(checks.values())
                    code = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
                    self._json(code, {"ready": ready, **checks})
                elif path == METRICS_PATH:
                    body = generate_latest(outer.registry)
                    self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, body)
                else:
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no such path {path!r}"})

            def _json(self, code: HTTPStatus, obj: dict) -> None:
                self._send(code, "application/json", json.dumps(obj).encode())

            def _send(self, code: HTTPStatus, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # probes every few seconds would flood the logs

        self.checks = checks
        self.registry = registry
        self.alive = alive
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    def start(self) -> HealthServer:
        """Serve in the background."""
        self._thread.start()
        log.info(
            "health_serving",
            host=self.host,
            port=self.port,
            paths=[ALIVE_PATH, READY_PATH, METRICS_PATH],
        )
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
