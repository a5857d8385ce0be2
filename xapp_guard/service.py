"""``xapp-guard run``: score every client's windows online and publish alerts.

The sensor's events (:mod:`xapp_guard.sensor`) go through :class:`Guard`: reordering,
windows, each client's recent windows, the ONNX detector; a window whose P(benign) is
below the threshold is an alert, published (QoS 1) on ``lameta/v1/<network>/alerts`` as
JSON::

    {"network": "default", "client": "mqtt-explorer-4711", "class": "forged_decision",
     "score": 0.97, "window": 1796653229, "window_s": 1.0, "t": 1796653231.4,
     "probs": {"benign": 0.03, ...}, "detector": "guard"}

(``window`` is the window's start in Unix seconds, ``score`` = 1 - P(benign)). The same
:class:`Guard` replays a recorded event stream offline (``xapp-guard eval``), so the
numbers reported for detection delay and false alarms are the service's own.

Prometheus metrics: events by kind, windows scored, alerts by class, clients tracked,
scoring time, the sensor's join counters.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import structlog

from xapp_guard.events import Event
from xapp_guard.features import Featurizer, History, Reorder, Window
from xapp_guard.runtime import Detector
from xapp_guard.scenarios import CLASSES
from xapp_guard.settings import GuardSettings

log = structlog.get_logger("xapp_guard.service")


@dataclass(frozen=True)
class Scored:
    """A window with its verdict."""

    window: Window
    probs: np.ndarray
    alert: bool
    attack: str
    score: float


class Guard:
    """Events in, scored windows out (online and offline alike).

    Args:
        detector: the exported model.
        network: the watched network.
        ignore: clients left out (the guard's own).
        window_s: window length.
        lag: reorder lag (s).
    """

    def __init__(self, detector: Detector, network: str, ignore: Iterable[str] = (),
                 window_s: float = 1.0, lag: float = 1.5):  # fmt: skip
        self.detector = detector
        self.network = network
        self.window_s = window_s
        self.reorder = Reorder(Featurizer(network, window_s, ignore), lag)
        self.history = History(detector.length)
        self.scored = 0
        self.alerts = 0

    def _score(self, windows: list[Window]) -> list[Scored]:
        if not windows:
            return []
        seqs = np.stack([self.history.push(w) for w in windows])
        out = []
        for w, v in zip(windows, self.detector.verdicts(seqs), strict=True):
            out.append(Scored(w, v.probs, v.alert, v.attack, v.score))
        self.scored += len(out)
        self.alerts += sum(s.alert for s in out)
        self.history.forget_idle(windows[-1].w)
        return out

    def push(self, ev: Event) -> list[Scored]:
        """One event (in arrival order); returns the windows it closed, scored."""
        return self._score(self.reorder.push(ev))

    def advance(self, now: float) -> list[Scored]:
        """Close windows that ended ``lag`` before ``now`` (call it when idle)."""
        return self._score(self.reorder.advance(now))

    def flush(self) -> list[Scored]:
        """Close everything (end of a recorded stream)."""
        return self._score(self.reorder.flush())

    def replay(self, events: Iterable[Event]) -> Iterator[Scored]:
        """Score a recorded stream as the service would have."""
        for ev in events:
            yield from self.push(ev)
        yield from self.flush()

    def alert_message(self, s: Scored) -> dict:
        """The JSON alert of a scored window."""
        return {
            "network": self.network, "client": s.window.client, "class": s.attack,
            "score": round(s.score, 4), "window": s.window.w * self.window_s,
            "window_s": self.window_s, "t": round(time.time(), 3),
            "probs": {c: round(float(p), 4) for c, p in zip(CLASSES, s.probs, strict=True)},
            "detector": self.detector.card.get("name", ""),
        }  # fmt: skip


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.events = Counter("xapp_guard_events_total", "sensor events", ["kind"],
                              registry=self.registry)  # fmt: skip
        self.windows = Counter("xapp_guard_windows_total", "windows scored", registry=self.registry)
        self.alerts = Counter("xapp_guard_alerts_total", "alerts published", ["cls"],
                              registry=self.registry)  # fmt: skip
        self.clients = Gauge("xapp_guard_clients", "clients with recent windows",
                             registry=self.registry)  # fmt: skip
        self.latency = Histogram("xapp_guard_score_seconds", "scoring time per batch",
                                 registry=self.registry)  # fmt: skip
        self.join = Gauge("xapp_guard_sensor", "sensor join counters", ["counter"],
                          registry=self.registry)  # fmt: skip

    def serve(self, host: str, port: int) -> None:
        from prometheus_client import start_http_server

        start_http_server(port, host, registry=self.registry)


def main_run(settings: GuardSettings, stop: threading.Event | None = None) -> int:
    """Run the guard until ``stop`` (or SIGTERM/SIGINT); returns the exit code."""
    from servicekit.logs import configure_logging
    from servicekit.signals import stop_on_signals
    from xapp_guard.sensor import Sensor

    configure_logging(settings.log_level, settings.log_format)
    detector = Detector(settings.model, settings.threshold, settings.threads)
    client = settings.mqtt_client()
    sensor = Sensor(settings.network, settings.broker_log, client, settings.access_log,
                    join_timeout=settings.join_timeout, from_start=settings.from_start)  # fmt: skip
    guard = Guard(detector, settings.network, ignore=(client.client_id,),
                  window_s=settings.window, lag=settings.lag)  # fmt: skip
    metrics = _Metrics()
    if settings.metrics_port:
        metrics.serve(settings.metrics_host, settings.metrics_port)
    stop = stop or threading.Event()
    log.info("guard_starting", model=str(settings.model), threshold=detector.threshold,
             broker_log=str(settings.broker_log), access_log=str(settings.access_log))  # fmt: skip
    with stop_on_signals(stop):
        sensor.start(settings.connect_timeout)
        next_stats = 0.0
        try:
            while not stop.is_set():
                try:
                    ev = sensor.events.get(timeout=0.25)
                except queue.Empty:
                    ev = None
                t0 = time.perf_counter()
                if ev is not None:
                    metrics.events.labels(ev.kind).inc()
                    scored = guard.push(ev)
                else:
                    scored = guard.advance(time.time())
                if scored:
                    metrics.latency.observe(time.perf_counter() - t0)
                    metrics.windows.inc(len(scored))
                    metrics.clients.set(len(guard.history))
                for s in scored:
                    if s.alert:
                        msg = guard.alert_message(s)
                        client.publish(settings.alerts_topic,
                                       json.dumps(msg).encode(), qos=1)  # fmt: skip
                        metrics.alerts.labels(s.attack).inc()
                        log.warning("alert", client=msg["client"], cls=msg["class"],
                                    score=msg["score"], window=msg["window"])  # fmt: skip
                if time.monotonic() >= next_stats:  # the sensor's counters, once a second
                    next_stats = time.monotonic() + 1.0
                    for k, v in sensor.stats().items():
                        metrics.join.labels(k).set(v)
        finally:
            sensor.stop()
    log.info("guard_stopped", windows=guard.scored, alerts=guard.alerts)
    return 0
