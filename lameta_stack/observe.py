"""Watching a closed loop from the broker: every request, decision and outcome of one
network, with a summary a person (or the chaos run) reads.

The observer connects with a read-only identity and decides nothing. Its notion of a
request's fate is the emulator's: a request is *settled* by its first resolving outcome
(served, rejected by the xApp, expired, shutdown), *lost* when none ever comes, and
*duplicated* when more than one does. A decision seen twice (an xApp re-publishing after
a reconnect) is counted separately: it is harmless, the emulator refuses the second.

:class:`StateKeeper` keeps the latest network state beside it (the demo draws chains on
it), whole or, for large networks, as a keyframe and deltas
(:class:`~servicekit.statefeed.StateFeed`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import structlog

from lameta_proto.v1 import network_pb2
from servicekit import codec
from servicekit.mqtt import BrokerUrl, MqttClient, TlsOptions, Topics
from servicekit.statefeed import StateFeed, StateUpdate, update_arrays

log = structlog.get_logger("lameta_stack.observe")


def percentile(values: list[float] | np.ndarray, q: float) -> float | None:
    """The ``q``-th percentile rounded to 3 decimals, None for no values."""
    return round(float(np.percentile(values, q)), 3) if len(values) else None


@dataclass
class Observer:
    """Records a network's traffic through ``client`` (not started; :meth:`start` does).

    Args:
        client: an MQTT client with a read-only identity.
        network: the network name in the topics.
        ignore_prefix: request ids injected by a test harness, left out of the counts.
    """

    client: MqttClient
    network: str = "default"
    ignore_prefix: str = "chaos-"
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: dict[str, int] = field(default_factory=dict)
    """Request id -> the request's own timestamp (ns)."""
    announced: Counter[str] = field(default_factory=Counter)
    decisions: dict[str, list[tuple[int, network_pb2.ControlDecision]]] = field(
        default_factory=dict
    )
    """Request id -> (arrival time ns, decision) of each decision seen."""
    resolving: dict[str, list[network_pb2.Outcome]] = field(default_factory=dict)
    refusals: Counter[str] = field(default_factory=Counter)
    undecodable: Counter[str] = field(default_factory=Counter)
    first_prompts: set[str] = field(default_factory=set)
    """Request ids whose prompt this observer had not seen before (the rApp's cache of
    prompt embeddings cannot have it either)."""
    states: list[int] = field(default_factory=list)
    """Arrival times (ns) of the state messages."""

    def __post_init__(self) -> None:
        self.topics = Topics.for_network(self.network)
        self._active = threading.Event()
        self.client.subscribe(self.topics.requests, self._on_request, qos=1)
        self.client.subscribe(self.topics.control, self._on_decision, qos=1)
        self.client.subscribe(self.topics.outcomes, self._on_outcome, qos=1)
        self.client.subscribe(self.topics.state, self._on_state, qos=1)
        self._prompts: set[str] = set()
        self.client.subscribe(self.client.status_topic, lambda t, p: self._active.set(), qos=1)

    def start(self, timeout: float = 15.0) -> Observer:
        """Connect and wait until the subscriptions are active.

        Raises:
            RuntimeError: not connected or not subscribed within ``timeout``.
        """
        self.client.start()
        if not (self.client.wait_connected(timeout) and self._active.wait(timeout)):
            raise RuntimeError(f"observer could not subscribe: {self.client.last_error}")
        return self

    def stop(self) -> None:
        self.client.stop(timeout=2.0)

    # ---- handlers (paho's thread) -------------------------------------------------------
    def _on_request(self, topic: str, payload: bytes) -> None:
        try:
            r = codec.decode_request(payload)
        except codec.DecodeError:
            with self.lock:
                self.undecodable["requests"] += 1
            return
        if r.request_id.startswith(self.ignore_prefix):
            return
        with self.lock:
            if r.request_id not in self.requests and r.prompt not in self._prompts:
                self._prompts.add(r.prompt)
                self.first_prompts.add(r.request_id)
            self.requests.setdefault(r.request_id, r.timestamp_ns)
            self.announced[r.request_id] += 1

    def _on_state(self, topic: str, payload: bytes) -> None:
        t = time.time_ns()  # arrival only: the state itself is the xApp's business
        with self.lock:
            self.states.append(t)

    def _on_decision(self, topic: str, payload: bytes) -> None:
        t = time.time_ns()
        try:
            d = codec.decode_decision(payload)
        except codec.DecodeError:
            with self.lock:
                self.undecodable["control"] += 1
            return
        with self.lock:
            self.decisions.setdefault(d.request_id, []).append((t, d))

    def _on_outcome(self, topic: str, payload: bytes) -> None:
        try:
            o = codec.decode_outcome(payload)
        except codec.DecodeError:
            with self.lock:
                self.undecodable["outcomes"] += 1
            return
        with self.lock:
            if o.resolved:
                self.resolving.setdefault(o.request_id, []).append(o)
            else:
                self.refusals[o.code] += 1

    # ---- queries ------------------------------------------------------------------------
    def counts(self) -> tuple[int, int]:
        """(requests seen, requests settled)."""
        with self.lock:
            return len(self.requests), sum(1 for r in self.requests if r in self.resolving)

    def latest_request(self) -> str | None:
        with self.lock:
            return next(reversed(self.requests), None) if self.requests else None

    def summary(self, exclude_windows: list[tuple[int, int]] | None = None) -> dict:
        """Counts, scores and latencies over every request seen.

        Args:
            exclude_windows: (start, end) wall-clock ns spans; a second latency summary
                leaves out requests issued in them (the run "without faults").
        """
        with self.lock:
            requests = dict(self.requests)
            decisions = {k: list(v) for k, v in self.decisions.items()}
            resolving = {k: list(v) for k, v in self.resolving.items()}
            refusals = dict(self.refusals)
            announced = dict(self.announced)
            undecodable = dict(self.undecodable)
            first_prompts = set(self.first_prompts)
            states = list(self.states)
        firsts = {rid: ds[0] for rid, ds in decisions.items() if rid in requests}
        lat = [
            ((t - requests[rid]) / 1e6, requests[rid])
            for rid, (t, _) in firsts.items()
            if requests[rid] > 0
        ]
        lat_ms = [x for x, _ in sorted(lat, key=lambda p: p[1])]
        # The same latency in two parts, at the xApp's decision time (stamped when the
        # decision is built): request to decision, and decision to this observer
        # (publish, broker, and this process's own delays).
        stamped = [
            (requests[rid], d.timestamp_ns, t)
            for rid, (t, d) in firsts.items()
            if requests[rid] > 0 and d.timestamp_ns > 0
        ]
        to_decision = [(dec - req) / 1e6 for req, dec, _ in stamped]
        to_observer = [(seen - dec) / 1e6 for _, dec, seen in stamped]
        tail = _tail_causes(
            {rid: (t - requests[rid]) / 1e6 for rid, (t, _) in firsts.items() if requests[rid] > 0},
            requests,
            first_prompts,
            states,
        )
        windows = exclude_windows or []
        calm = [x for x, ts in lat if not any(a <= ts <= b for a, b in windows)]
        outcomes = {rid: outs[0] for rid, outs in resolving.items() if rid in requests}
        codes = Counter(o.code for o in outcomes.values())
        chains = [d for _, d in firsts.values() if not d.rejection]
        rejections = Counter(
            d.rejection.split(":", 1)[0] for _, d in firsts.values() if d.rejection
        )
        scores = [
            o.normalized_score
            for o in outcomes.values()
            if o.code == "served" and math.isfinite(o.normalized_score)
        ]
        return {
            "requests": len(requests),
            "settled": len(outcomes),
            "lost": sum(1 for rid in requests if rid not in resolving),
            "duplicated": sum(1 for rid in requests if len(resolving.get(rid, ())) > 1),
            "decided": len(firsts),
            "decisions_redelivered": sum(1 for rid in firsts if len(decisions[rid]) > 1),
            "requests_reannounced": sum(1 for n in announced.values() if n > 1),
            "fallbacks": sum(1 for d in chains if d.fallback),
            "rejections_by_reason": dict(rejections),
            "outcomes": dict(codes),
            "refusals": refusals,
            "mean_normalized_score": round(float(np.mean(scores)), 4) if scores else None,
            "p50_ms": percentile(lat_ms, 50),
            "p99_ms": percentile(lat_ms, 99),
            "max_ms": round(max(lat_ms), 3) if lat_ms else None,
            "to_decision_p50_ms": percentile(to_decision, 50),
            "to_decision_p99_ms": percentile(to_decision, 99),
            "decision_to_observer_p99_ms": percentile(to_observer, 99),
            "tail": tail,
            "p50_ms_outside_faults": percentile(calm, 50),
            "p99_ms_outside_faults": percentile(calm, 99),
            "undecodable": undecodable,
        }


class StateKeeper:
    """The latest network state on the broker, for drawing chains on the network.

    Follows the state topic and its keyframe chunks through ``client`` (subscribed here,
    before the client starts). A payload it cannot use is counted in :attr:`counts`
    (``malformed_<code>``, ``malformed_keyframe_<code>``, and the feed's
    ``awaiting_keyframe`` and ``dropped_no_keyframe``) and logged; ``kept`` counts the
    states kept.
    """

    def __init__(self, client: MqttClient, topics: Topics):
        self.state: codec.StateArrays | None = None
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.feed = StateFeed(self._count)
        client.subscribe(topics.state, self._on_state, qos=1)
        client.subscribe(topics.keyframes, self._on_keyframe, qos=1)

    def _count(self, event: str) -> None:
        self.counts[event] += 1  # under self.lock: the feed runs in the handlers only

    def _on_state(self, topic: str, payload: bytes) -> None:
        self._take(self.feed.on_state, payload, "malformed_")

    def _on_keyframe(self, topic: str, payload: bytes) -> None:
        self._take(self.feed.on_keyframe_chunk, payload, "malformed_keyframe_")

    def _take(
        self, read: Callable[[bytes], StateUpdate | None], payload: bytes, dropped: str
    ) -> None:
        with self.lock:
            try:
                update = read(payload)
                if update is not None:
                    self.state = update_arrays(update)
                    self.counts["kept"] += 1
            except codec.DecodeError as exc:
                self.counts[f"{dropped}{exc.code}"] += 1
                log.warning("state_dropped", code=exc.code, reason=exc.reason, bytes=len(payload))


NEAR_STATE_MS = 10.0
"""A request issued this soon after a state message arrived is decided while the xApp
prepares that state."""


def _tail_causes(
    latency: dict[str, float], issued: dict[str, int], first: set[str], states: list[int]
) -> dict:
    """Two known sources of slow requests, each with its share of the slowest 1 %:
    requests whose prompt the run had not seen before (the rApp encodes it; later ones hit
    its embedding cache), and requests issued within :data:`NEAR_STATE_MS` of a state
    message (decided while the xApp prepares the state).

    Args:
        latency: request id -> request-to-decision latency (ms).
        issued: request id -> the request's timestamp (ns).
        first: ids of the requests whose prompt was new.
        states: arrival times (ns) of the state messages.
    """
    if not latency:
        return {}
    rids = list(latency)
    lat = np.array([latency[r] for r in rids])
    new = np.array([r in first for r in rids])
    ts = np.array([issued[r] for r in rids])
    arrived = np.sort(np.asarray(states, dtype=np.int64))
    last = np.searchsorted(arrived, ts, side="right") - 1
    since_ms = np.full(len(ts), np.inf)
    after = last >= 0
    since_ms[after] = (ts[after] - arrived[last[after]]) / 1e6
    near = since_ms < NEAR_STATE_MS
    slow = lat >= np.percentile(lat, 99)
    return {
        "slowest_1pct": int(slow.sum()),
        "first_seen_prompt": {
            "requests": int(new.sum()),
            "p50_ms": percentile(lat[new], 50),
            "in_slowest_1pct": int((slow & new).sum()),
            "p99_ms_of_the_others": percentile(lat[~new], 99),
        },
        "near_state": {
            "requests": int(near.sum()),
            "p50_ms": percentile(lat[near], 50),
            "p50_ms_of_the_others": percentile(lat[~near], 50),
            "in_slowest_1pct": int((slow & near).sum()),
        },
    }


def stack_observer(desc: dict, password: str, client_id: str = "observer") -> Observer:
    """An observer (not started) of a stack's network, logged in as the read-only
    ``observer`` user over the broker's TLS (``desc``: what :meth:`Stack.up` describes)."""
    b = desc["broker"]
    url = BrokerUrl("mqtts", b["host"], b["port"], "observer", password)
    client = MqttClient(url, "observer", client_id=client_id, tls=TlsOptions(ca_certs=b["ca_file"]))
    return Observer(client, desc["network"])
