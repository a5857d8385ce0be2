"""A gRPC server access log: one JSON line per call (who, what, how it ended, how big).

:class:`AccessLog` is a ``grpc.ServerInterceptor``; a server that adds it writes, for every
unary call, ``{"t", "peer", "identity", "method", "code", "request_bytes",
"response_bytes", "request_id"}`` to a file (line-buffered, appended). It is what a
monitor such as the control-plane guard reads to see each client's calls: the peer
address (``ipv4:127.0.0.1:53122``) names the client's channel, ``identity`` its mutual-TLS
certificate subject when there is one, ``request_id`` the request the call is about when
the message has such a field. Streaming methods pass through unlogged (the services here
have none).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc


def _size(message: Any) -> int:
    byte_size = getattr(message, "ByteSize", None)
    return int(byte_size()) if callable(byte_size) else 0


def _identity(context: grpc.ServicerContext) -> str:
    """The peer's mutual-TLS common name (or first SAN), '' without one."""
    try:
        auth = context.auth_context()
    except Exception:  # not every context type implements it
        return ""
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        values = auth.get(key) or []
        if values:
            v = values[0]
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return ""


class AccessLog(grpc.ServerInterceptor):
    """Writes one JSON line per unary call to ``path`` (appending).

    Args:
        path: the log file (created with its parent directory).
        clock: wall clock in seconds (the line's ``t``).
    """

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self._clock = clock

    def close(self) -> None:
        """Close the file (calls after this are not logged)."""
        with self._lock:
            self._fh.close()

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            if not self._fh.closed:
                self._fh.write(line + "\n")

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        inner = handler.unary_unary

        def logged(request: Any, context: grpc.ServicerContext) -> Any:
            response = None
            failed = False
            try:
                response = inner(request, context)
                return response
            except BaseException:
                failed = True
                raise
            finally:
                code = context.code()
                if code is None:  # an exception without a status: grpc answers UNKNOWN
                    code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
                self._write(
                    {
                        "t": round(self._clock(), 6),
                        "peer": context.peer(),
                        "identity": _identity(context),
                        "method": method,
                        "code": code.name,
                        "request_bytes": _size(request),
                        "response_bytes": _size(response),
                        "request_id": str(getattr(request, "request_id", "") or ""),
                    }
                )

        return grpc.unary_unary_rpc_method_handler(
            logged,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
