"""The relay of served outcomes to the rApp's in-context memory (ReportOutcome).

The xApp hears every outcome on the network's outcomes topic; the ones of its own
decisions made on a real translation go to the rApp (eq. 46 calibrates with them), in
order, and survive an rApp outage in a bounded queue.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import grpc
import structlog

from lameta_proto.v1 import network_pb2
from xapp_composer.metrics import XappMetrics
from xapp_composer.rapp_client import RETRY_CODES

log = structlog.get_logger("xapp_composer.outcome_relay")

POLL_S = 0.25
"""How long :meth:`OutcomeRelay.run` waits for an outcome before it checks for a stop."""


class OutcomeRelay:
    """Reports served outcomes to the rApp (ReportOutcome), in order, with retries.

    Outcomes wait in a bounded queue; beyond the bound new ones are dropped (counted and
    logged). While the rApp is down the head is retried with exponential backoff up to
    ``retry_max_s``; an outcome the rApp refuses as invalid is dropped (retrying cannot
    help).

    Args:
        report: the ReportOutcome call (``RappClient.report_outcome``).
        metrics: counts.
        capacity: queue bound.
        retry_max_s: longest wait between retries.
    """

    def __init__(
        self,
        report: Callable[..., int],
        metrics: XappMetrics,
        *,
        capacity: int = 10_000,
        retry_max_s: float = 10.0,
    ):
        self.report = report
        self.metrics = metrics
        self.capacity = int(capacity)
        self.retry_max_s = float(retry_max_s)
        self._queue: deque[network_pb2.Outcome] = deque()
        self._cond = threading.Condition()
        self._backoff = 0.0
        self.memory_size = 0
        """The rApp's memory size after the last successful report."""

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def offer(self, outcome: network_pb2.Outcome) -> bool:
        """Queue an outcome (any thread). False: the queue is full and it was dropped."""
        with self._cond:
            if len(self._queue) >= self.capacity:
                self.metrics.outcome("dropped_queue_full")
                log.error(
                    "outcome_dropped_queue_full",
                    request_id=outcome.request_id,
                    capacity=self.capacity,
                )
                return False
            self._queue.append(outcome)
            self.metrics.outcome_queue.set(len(self._queue))
            self._cond.notify()
        return True

    def run_once(self, timeout: float) -> bool:
        """Report the head of the queue if there is one (waits up to ``timeout``).

        Returns:
            True if an outcome was reported or dropped; False if nothing was done
            (empty queue, or a failed attempt that keeps the outcome for a retry).
        """
        with self._cond:
            if not self._queue:
                self._cond.wait(timeout)
                if not self._queue:
                    return False
            head = self._queue[0]
        try:
            self.memory_size = self.report(
                head.prompt, list(head.predicted), head.reward, head.app, head.request_id
            )
        except grpc.RpcError as exc:
            code = exc.code()
            if code in RETRY_CODES:
                self._backoff = min(max(2 * self._backoff, 0.2), self.retry_max_s)
                self.metrics.event("outcome_retry")
                log.warning(
                    "outcome_report_retry",
                    request_id=head.request_id,
                    code=code.name,
                    retry_in_s=round(self._backoff, 2),
                    queued=len(self),
                )
                return False
            self._pop()
            self.metrics.outcome("refused_by_rapp")
            log.error(
                "outcome_refused_by_rapp",
                request_id=head.request_id,
                code=code.name,
                detail=exc.details(),
            )
            return True
        self._pop()
        self._backoff = 0.0
        self.metrics.outcome("relayed")
        return True

    def _pop(self) -> None:
        with self._cond:
            self._queue.popleft()
            self.metrics.outcome_queue.set(len(self._queue))

    def run(self, stop: threading.Event) -> None:
        """Relay until ``stop`` is set."""
        while not stop.is_set():
            if not self.run_once(POLL_S) and self._backoff and len(self):
                stop.wait(self._backoff)

    def drain(self, timeout: float) -> int:
        """Report what can be reported within ``timeout``; count the rest as dropped.

        Returns:
            Outcomes left unreported.
        """
        deadline = time.monotonic() + timeout
        while len(self) and time.monotonic() < deadline:
            if not self.run_once(0.0) and self._backoff:
                break  # the rApp is down: no point in waiting for it at shutdown
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
        if left:
            self.metrics.outcome("dropped_shutdown")
            log.warning("outcomes_unreported_at_shutdown", count=left)
        return left
