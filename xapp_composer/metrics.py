"""Prometheus metrics of the xApp, in a registry of its own (one per service instance).

:class:`XappMetrics` wraps the prometheus-client objects and keeps a plain mirror of
every count, so that the loop, the demo summary and the tests read the same numbers
that ``/metrics`` exposes.
"""

from __future__ import annotations

import threading
from collections import Counter

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

STAGES = ("state_prepare", "translate", "propose", "compose", "publish", "end_to_end")
"""Latency stages: state prepare (per state), and per request: translate (rApp call or
fallback), propose (the action-space proposer's top k and the reduced graph, on large
networks when it is on), compose (E-LAM choice, chain, feasibility check, repair; without
the propose stage), publish, end to end (from the request's arrival at the xApp to its
decision handed to the broker)."""

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


class XappMetrics:
    """Counters, gauges and latency histograms of one xApp.

    Args:
        registry: where to register (default: a new registry).
    """

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        """Mirror of every counter: ``name`` or ``name{label}``."""
        self.decisions = PromCounter(
            "xapp_decisions", "Decisions published (a chain)", ["fallback"], registry=r
        )
        self.rejections = PromCounter(
            "xapp_rejections", "Explicit rejections published, by reason", ["reason"], registry=r
        )
        self.fallbacks = PromCounter(
            "xapp_fallbacks",
            "Decisions made on a fallback vector, by cause",
            ["cause"],
            registry=r,
        )
        self.duplicates = PromCounter(
            "xapp_duplicates", "Redelivered requests recognised and not decided again", registry=r
        )
        self.dropped = PromCounter(
            "xapp_requests_dropped",
            "Requests that got no decision, by reason (no request id, queue full, ...)",
            ["reason"],
            registry=r,
        )
        self.states = PromCounter(
            "xapp_states", "Network states received, by result", ["result"], registry=r
        )
        self.outcomes = PromCounter(
            "xapp_outcomes", "Outcomes received, by what became of them", ["result"], registry=r
        )
        self.reloads = PromCounter(
            "xapp_policy_reloads", "Policy hot reloads, by result", ["result"], registry=r
        )
        self.proposals = PromCounter(
            "xapp_proposals",
            "Requests decided on the proposer's reduced graph (top k agents per position)",
            registry=r,
        )
        self.events = PromCounter("xapp_events", "Other loop events", ["event"], registry=r)
        self.latency = Histogram(
            "xapp_stage_latency_seconds",
            "Latency per stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "xapp_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.rapp_reachable = Gauge(
            "xapp_rapp_reachable", "1 while the rApp's gRPC health is SERVING", registry=r
        )
        self.policy_loaded = Gauge("xapp_policy_loaded", "1 while a policy serves", registry=r)
        self.policy_info = Gauge(
            "xapp_policy_info", "The serving policy", ["version", "provider"], registry=r
        )
        self.state_seq = Gauge("xapp_state_seq", "Sequence number of the serving state", registry=r)
        self.outcome_queue = Gauge(
            "xapp_outcome_queue", "Outcomes waiting to be reported to the rApp", registry=r
        )
        self.inbound_queue = Gauge(
            "xapp_inbound_queue", "Requests waiting for the decider", registry=r
        )
        for stage in STAGES:
            self.latency.labels(stage)

    def _count(self, counter: PromCounter, label: str | None, *keys: str) -> None:
        """Increment ``counter`` (with ``label`` when it has one) and the mirror's ``keys``."""
        (counter if label is None else counter.labels(label)).inc()
        with self._lock:
            for key in keys:
                self.counts[key] += 1

    # ---- counting -----------------------------------------------------------------------
    def decision(self, fallback: bool) -> None:
        """One decision (a chain) published."""
        keys = ("decisions", "decisions_fallback") if fallback else ("decisions",)
        self._count(self.decisions, str(fallback).lower(), *keys)

    def rejection(self, reason: str) -> None:
        """One rejection published."""
        self._count(self.rejections, reason, "rejections", f"rejections{{{reason}}}")

    def fallback(self, cause: str) -> None:
        """A fallback vector was used."""
        self._count(self.fallbacks, cause, "fallbacks", f"fallbacks{{{cause}}}")

    def duplicate(self) -> None:
        """A redelivered request was recognised."""
        self._count(self.duplicates, None, "duplicates")

    def proposal(self) -> None:
        """A request's action space was reduced by the proposer."""
        self._count(self.proposals, None, "proposals")

    def drop(self, reason: str) -> None:
        """A request got no decision (logged where it happens)."""
        self._count(self.dropped, reason, "dropped", f"dropped{{{reason}}}")

    def state(self, result: str) -> None:
        """A state message was handled."""
        self._count(self.states, result, f"states{{{result}}}")

    def outcome(self, result: str) -> None:
        """An outcome was handled."""
        self._count(self.outcomes, result, f"outcomes{{{result}}}")

    def reload(self, result: str) -> None:
        """A hot reload was attempted."""
        self._count(self.reloads, result, f"reloads{{{result}}}")

    def event(self, name: str) -> None:
        """Any other counted event."""
        self._count(self.events, name, name)

    def observe(self, stage: str, seconds: float) -> None:
        """Record the latency of a stage."""
        self.latency.labels(stage).observe(seconds)

    def set_policy(self, version: str, provider: str) -> None:
        """The policy now serving."""
        self.policy_info.clear()
        self.policy_info.labels(version, provider).set(1)
        self.policy_loaded.set(1)

    def snapshot(self) -> dict[str, float]:
        """A copy of the counter mirror."""
        with self._lock:
            return dict(self.counts)
