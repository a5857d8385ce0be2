"""``rapp-negotiation run``: MAESTRO's business plane as a service on the MQTT bus.

================================  =========  ==============================================
topic                             direction  what
================================  =========  ==============================================
``lameta/v1/<network>/state``     in         the emulator's state: λ_cap and the load
``…/state/keyframe/<i>``          in         large networks: the keyframe the state's
                                             deltas refer to
``lameta/v1/<network>/policy``    out        the consensus λ* (retained, QoS 1); the only
                                             topic the service publishes besides its status
``lameta/v1/status/rapp-negotiation``  out   "online" / "offline" (retained, last will)
================================  =========  ==============================================

One thread runs the loop; paho's network thread only queues state payloads and keyframe
chunks. The loop follows them with a :class:`~servicekit.statefeed.StateFeed` (whole
states, or deltas with their keyframe; a delta whose keyframe has not arrived is counted
and waits for it), keeps the newest state (older ones are superseded, bad ones are
counted drops), and the observability unit decides
(:class:`~rapp_negotiation.observability.Trigger`):

- a negotiation starts on the first state, when λ_cap moves by more than ``retrigger``,
  when capacity returns after a halt, when the intents file changes (an operator's new
  business intents) and on SIGHUP (an operator's request);
- while a negotiation runs, every new state is observed between its steps: λ_cap = 0
  halts it and publishes a suspension (λ* = 0, reason ``no_capacity``); a move beyond
  ``retrigger`` halts it and starts a new one at the new capacity (the topic adapts);
- its outcome is published as a retained :class:`~lameta_proto.v1.network_pb2.Policy`.

Each round is logged (``negotiation_round``), so is each negotiation's start, end and
policy. Prometheus metrics and the O-RAN SC health paths are served on ``health_port``.
"""

from __future__ import annotations

import contextlib
import math
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from rapp_negotiation.arbitral import Arbitral, LLMArbiter, ToxicityClassifier
from rapp_negotiation.embedding import shared_minilm
from rapp_negotiation.engine import Context, Negotiation, NegotiationConfig, NegotiationResult, run
from rapp_negotiation.negotiators import LLMNegotiator, Negotiator, ScriptedNegotiator
from rapp_negotiation.observability import Observation, Trigger, observe
from rapp_negotiation.regulatory import Regulatory
from rapp_negotiation.scenario import DEFAULT_TENANTS, Tenant, load_tenants
from rapp_negotiation.settings import NegoSettings
from servicekit import codec
from servicekit.health import HealthServer
from servicekit.logs import configure_logging
from servicekit.mqtt import MqttClient, Topics
from servicekit.signals import stop_on_signals
from servicekit.statefeed import StateFeed, StateUpdate

EXIT_CONFIG = 2
EXIT_BROKER_REFUSED = 3
MAX_WAIT_S = 0.5
"""Longest the loop blocks on its queue (bounds the reaction to a stop)."""


class Metrics:
    """The service's Prometheus metrics (one registry per service)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.negotiations = Counter("nego_negotiations", "Negotiations by outcome", ["status"],
                                    registry=r)  # fmt: skip
        self.rounds = Histogram("nego_rounds", "Rounds per negotiation",
                                buckets=(1, 2, 3, 4, 5, 6, 8, 10), registry=r)  # fmt: skip
        self.messages = Counter("nego_messages", "Messages exchanged", registry=r)
        self.fallbacks = Counter("nego_fallbacks", "LLM outputs replaced by the validation unit",
                                 registry=r)  # fmt: skip
        self.decisions = Counter(
            "nego_decisions",
            "Decisions by role and source (llm or scripted: the negotiator's own value; "
            "imposed; fallback)",
            ["role", "source"],
            registry=r,
        )
        self.warnings = Counter("nego_warnings", "Arbitral warnings", registry=r)
        self.penalties = Counter("nego_penalties", "Arbitral weight halvings", registry=r)
        self.policies = Counter("nego_policies", "Policies published", ["reason"], registry=r)
        self.states = Counter("nego_states", "State payloads", ["result"], registry=r)
        self.intents = Counter("nego_intents_reloads", "Intents file reloads", ["result"],
                               registry=r)  # fmt: skip
        self.capacity = Gauge("nego_capacity", "λ_cap of the latest state", registry=r)
        self.load = Gauge("nego_load", "λ of the latest state", registry=r)
        self.admitted = Gauge("nego_admitted_rate", "λ* of the last policy", registry=r)
        self.theoretical = Gauge("nego_theoretical", "x* of the last negotiation", registry=r)
        self.error = Gauge("nego_error", "|agreed - x*| of the last negotiation", registry=r)
        self.connected = Gauge("nego_mqtt_connected", "1 while connected", registry=r)


class IntentsSource:
    """The tenants' business intents: a file re-read when it changes, else the defaults.

    Args:
        path: the JSON or YAML file (None: :data:`~rapp_negotiation.scenario.DEFAULT_TENANTS`).
    """

    def __init__(self, path: Path | None):
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self.tenants: tuple[Tenant, ...] = DEFAULT_TENANTS if path is None else load_tenants(path)
        self._stamp = self._current()

    def _current(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def changed(self) -> tuple[bool, str]:
        """(reloaded, error): re-read the file if it changed since the last read."""
        stamp = self._current()
        if self.path is None or stamp == self._stamp:
            return False, ""
        self._stamp = stamp
        try:
            self.tenants = load_tenants(self.path)
        except (OSError, ValueError) as exc:
            return False, str(exc)
        return True, ""


class NegotiationService:
    """The MQTT adapter around the negotiation engine (module docstring).

    Args:
        settings: the service settings.
        client: an MQTT client (not started).
        negotiator: the LLM unit's backend.
        regulatory: the regulatory unit.
        arbitral: the mediator's arbitral unit (None: off).
        intents: the tenants' business intents.
        observe_state: decoded state -> observation (the observability unit; injectable).
    """

    def __init__(
        self,
        settings: NegoSettings,
        client: MqttClient,
        negotiator: Negotiator,
        regulatory: Regulatory,
        arbitral: Arbitral | None,
        intents: IntentsSource,
        observe_state: Callable[[StateUpdate], Observation] = observe,
    ):
        self.settings = settings
        self.client = client
        self.negotiator = negotiator
        self.regulatory = regulatory
        self.arbitral = arbitral
        self.intents = intents
        self.observe_state = observe_state
        self.topics = Topics.for_network(settings.network)
        self.inbound: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1000)
        self.trigger = Trigger(settings.retrigger)
        self.metrics = Metrics()
        self.feed = StateFeed(lambda event: self.metrics.states.labels(event).inc())
        self.latest: Observation | None = None
        self.operator_request = threading.Event()
        self.results: list[NegotiationResult] = []
        self.log = structlog.get_logger("rapp_negotiation.service").bind(network=settings.network)
        self.cfg = NegotiationConfig(
            design=settings.design, rounds=settings.rounds, tolerance=settings.tolerance
        )
        client.subscribe(self.topics.state, self._on_state, qos=1)
        client.subscribe(self.topics.keyframes, self._on_keyframe, qos=1)

    # ---- paho thread: only enqueue ------------------------------------------------------
    def _on_state(self, topic: str, payload: bytes) -> None:
        try:
            self.inbound.put_nowait(("state", payload))
        except queue.Full:
            self.metrics.states.labels("queue_full").inc()

    def _on_keyframe(self, topic: str, payload: bytes) -> None:
        try:
            self.inbound.put_nowait(("keyframe", payload))
        except queue.Full:
            self.metrics.states.labels("keyframe_queue_full").inc()

    # ---- observing ----------------------------------------------------------------------
    def _drain_states(self, timeout: float) -> Observation | None:
        """Wait up to ``timeout`` for states; observe the newest one (others superseded).
        Every keyframe chunk is taken, in order, before the newest state payload."""
        try:
            items = [
                self.inbound.get(timeout=timeout) if timeout > 0 else self.inbound.get_nowait()
            ]
        except queue.Empty:
            return None
        while True:
            try:
                items.append(self.inbound.get_nowait())
            except queue.Empty:
                break
        newest: StateUpdate | None = None
        payload: bytes | None = None
        for kind, data in items:
            if kind == "state":
                if payload is not None:
                    self.metrics.states.labels("superseded").inc()
                payload = data
                continue
            try:
                # The delta that waited for this keyframe, now whole.
                parts = self.feed.on_keyframe_chunk(data)
            except codec.DecodeError as exc:
                self.metrics.states.labels(f"keyframe_{exc.code}").inc()
                self.log.warning("keyframe_dropped", code=exc.code, reason=exc.reason)
                continue
            if parts is not None:
                newest = parts
        if payload is not None:
            try:
                update = self.feed.on_state(payload)
            except codec.DecodeError as exc:
                update = None
                self.metrics.states.labels(exc.code).inc()
                self.log.warning("state_dropped", code=exc.code, reason=exc.reason)
            if update is not None:
                if newest is not None:
                    self.metrics.states.labels("superseded").inc()
                newest = update
        if newest is None:
            return None
        try:
            obs = self.observe_state(newest)
        except codec.DecodeError as exc:
            self.metrics.states.labels(exc.code).inc()
            self.log.warning("state_dropped", code=exc.code, reason=exc.reason)
            return None
        self.metrics.states.labels("observed").inc()
        self.metrics.capacity.set(obs.capacity)
        self.metrics.load.set(obs.load)
        self.latest = obs
        self.log.debug("state_observed", seq=obs.seq, capacity=obs.capacity, load=obs.load,
                       available=obs.available, utilisation=obs.utilisation)  # fmt: skip
        return obs

    # ---- publishing ---------------------------------------------------------------------
    def publish_policy(
        self, rate: float, reason: str, negotiation_id: str, obs: Observation
    ) -> None:
        """Publish λ* (retained) on the policy topic."""
        now = time.time_ns()
        ttl = self.settings.policy_ttl
        msg = codec.Policy(
            network=self.settings.network,
            negotiation_id=negotiation_id,
            arrival_rate=rate,
            timestamp_ns=now,
            valid_until_ns=now + int(ttl * 1e9) if ttl else 0,
            capacity=obs.capacity,
            state_seq=obs.seq,
            reason=reason,
        )
        self.client.publish(self.topics.policy, codec.encode(msg), qos=1, retain=True)
        self.metrics.policies.labels(reason).inc()
        self.metrics.admitted.set(rate)
        self.log.info("policy_published", negotiation_id=negotiation_id, arrival_rate=rate,
                      reason=reason, capacity=obs.capacity, state_seq=obs.seq)  # fmt: skip

    # ---- negotiating --------------------------------------------------------------------
    def negotiate(self, obs: Observation, reason: str) -> NegotiationResult | None:
        """Negotiate at ``obs`` (again at a newer state if the capacity moves meanwhile)."""
        while True:
            tenants = self.intents.tenants
            targets = [t.target_at(obs.capacity) for t in tenants]
            constraints = self.regulatory.constraints(obs.capacity, obs.n_agents, targets)
            context = Context(obs.capacity, obs.load, constraints, obs.seq)
            negotiation = Negotiation(tenants, context, self.cfg, self.arbitral,
                                      llm=self.negotiator.name,
                                      origin=self.negotiator.origin)  # fmt: skip
            self.log.info(
                "negotiation_started", negotiation=negotiation.id, reason=reason,
                design=self.cfg.design, llm=self.negotiator.name, capacity=obs.capacity,
                load=obs.load, state_seq=obs.seq, tenants=[t.name for t in tenants],
                personalities=[t.personality for t in tenants], targets=targets,
                weights=[t.weight for t in tenants], r_min=constraints.r_min,
                r_max=None if math.isinf(constraints.r_max) else constraints.r_max,
                rules=list(constraints.rules), theoretical=negotiation.theoretical,
            )  # fmt: skip
            moved: list[Observation] = []

            def between(neg: Negotiation = negotiation, moved: list = moved) -> None:
                newer = self._drain_states(0.0)
                if newer is None:
                    return
                if newer.capacity <= 0:
                    neg.halt("no_capacity")
                elif abs(newer.capacity - neg.context.capacity) > self.settings.retrigger * max(
                    neg.context.capacity, 1e-12
                ):
                    moved.append(newer)
                    neg.halt("capacity_moved")

            result = run(negotiation, self.negotiator, between)
            self._record(result)
            if result.status == "halted:no_capacity":
                self._halt(self.latest or obs)
                return result
            if result.status == "halted:capacity_moved":
                obs, reason = moved[-1], "capacity_moved"
                continue
            agreed = result.agreed if result.agreed is not None else constraints.r_min
            why = "suspended" if agreed == 0 else result.status
            self.publish_policy(agreed, why, result.id, obs)
            self.trigger.negotiated(obs.capacity)
            return result

    def _record(self, r: NegotiationResult) -> None:
        m = self.metrics
        m.negotiations.labels(r.status.split(":")[0]).inc()
        m.rounds.observe(r.rounds)
        m.messages.inc(r.messages)
        m.fallbacks.inc(r.fallbacks)
        m.warnings.inc(r.warnings)
        m.penalties.inc(r.penalties)
        sources = r.role_sources
        for role, counts in sources.items():
            for source, k in counts.items():
                m.decisions.labels(role, source).inc(k)
        m.theoretical.set(r.theoretical)
        if r.agreed is not None:
            m.error.set(r.error)
        self.results.append(r)
        self.log.info(
            "negotiation_finished", negotiation=r.id, status=r.status, agreed=r.agreed,
            theoretical=r.theoretical, error=None if r.agreed is None else r.error,
            capacity=r.capacity, rounds=r.rounds, messages=r.messages, fallbacks=r.fallbacks,
            imposed=r.imposed, sources=sources, warnings=r.warnings, penalties=r.penalties,
            final_weights=r.final_weights, seconds=round(r.seconds, 3),
        )  # fmt: skip

    def _halt(self, obs: Observation) -> None:
        self.log.warning("negotiation_halted", reason="no_capacity", capacity=obs.capacity,
                         state_seq=obs.seq)  # fmt: skip
        self.publish_policy(0.0, "no_capacity", f"halt-{obs.seq}", obs)
        self.trigger.halt()

    def step(self, timeout: float) -> None:
        """One pass of the loop: observe, check the intents, negotiate if triggered."""
        obs = self._drain_states(timeout)
        reloaded, error = self.intents.changed()
        if error:
            self.metrics.intents.labels("invalid").inc()
            self.log.error(
                "intents_invalid", error=error, kept=[t.name for t in self.intents.tenants]
            )
        reason = None
        if reloaded:
            self.metrics.intents.labels("reloaded").inc()
            self.log.info("intents_reloaded", tenants=[t.name for t in self.intents.tenants])
            reason = "intents_changed"
        if self.operator_request.is_set():
            self.operator_request.clear()
            reason = "operator"
        if obs is not None:
            why = self.trigger.check(obs)
            if why == "no_capacity":
                self._halt(obs)
                return
            reason = why or reason
        latest = self.latest
        if reason is not None and latest is not None:
            if latest.capacity <= 0:
                return  # halted: nothing to negotiate until capacity returns
            self.negotiate(latest, reason)

    def run(self, stop: threading.Event) -> int:
        """Serve until ``stop`` is set.

        Returns:
            A process exit code (0, or 3 when the broker refuses the credentials).
        """
        self.client.start()
        if not self.client.wait_connected(self.settings.connect_timeout):
            if self.client.counters["connect_refused"]:
                self.log.error("broker_refused_connection", error=self.client.last_error)
                self.client.stop(timeout=0.0)
                return EXIT_BROKER_REFUSED
            self.log.warning("broker_unreachable_retrying", broker=self.client.url.redacted())
        self.log.info("service_started", design=self.settings.design, llm=self.negotiator.name,
                      tenants=[t.name for t in self.intents.tenants],
                      topics=[self.topics.state, self.topics.keyframes, self.topics.policy])  # fmt: skip
        next_poll = 0.0
        while not stop.is_set():
            self.metrics.connected.set(int(self.client.connected))
            now = time.monotonic()
            timeout = min(MAX_WAIT_S, max(next_poll - now, 0.0))
            self.step(timeout)
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + self.settings.intents_poll
        self.log.info("service_stopping", negotiations=len(self.results))
        self.client.stop(timeout=5.0)
        return 0

    def readiness(self) -> dict[str, bool]:
        """Readiness checks: connected to the broker, a state observed."""
        return {"broker": self.client.connected, "state": self.latest is not None}


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------
def build_negotiator(settings: NegoSettings) -> Negotiator:
    """The LLM unit the settings ask for."""
    if settings.llm == "scripted":
        return ScriptedNegotiator()
    from llmkit.chat import make_chat

    chat = make_chat(settings.llm_settings())
    return LLMNegotiator(chat, settings.max_tokens, settings.temperature)


def build_arbitral(settings: NegoSettings, negotiator: Negotiator) -> Arbitral | None:
    """The mediator's arbitral unit the settings ask for."""
    if settings.arbitral == "off":
        return None
    if settings.arbitral == "llm":
        chat = negotiator.chat if isinstance(negotiator, LLMNegotiator) else None
        if chat is None:
            from llmkit.chat import make_chat

            chat = make_chat(settings.llm_settings())
        return Arbitral(LLMArbiter(chat))
    return Arbitral(ToxicityClassifier.load(shared_minilm(), settings.arbitral_dir))


def main_run(settings: NegoSettings, stop: threading.Event | None = None) -> int:
    """Run the service for ``rapp-negotiation run``.

    Returns:
        The process exit code: 0, 2 (bad intents file or classifier), 3 (broker refused).
    """
    configure_logging(settings.log_level, settings.log_format)
    log = structlog.get_logger("rapp_negotiation.service")
    try:
        intents = IntentsSource(settings.intents)
        negotiator = build_negotiator(settings)
        arbitral = build_arbitral(settings, negotiator)
    except (OSError, ValueError) as exc:
        log.error("configuration_invalid", error=str(exc))
        print(f"rapp-negotiation run: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    service = NegotiationService(
        settings, settings.mqtt_client(), negotiator, Regulatory(shared_minilm()), arbitral,
        intents,
    )  # fmt: skip
    stop = stop or threading.Event()
    with stop_on_signals(stop), contextlib.ExitStack() as stack:
        if threading.current_thread() is threading.main_thread():
            old = signal.signal(signal.SIGHUP, lambda *_: service.operator_request.set())
            stack.callback(signal.signal, signal.SIGHUP, old)
        if settings.health_port:
            health = HealthServer(settings.health_host, settings.health_port, service.readiness,
                                  service.metrics.registry, name="nego-health").start()  # fmt: skip
            stack.callback(health.stop)
        return service.run(stop)
