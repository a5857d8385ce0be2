"""``sim-ric run``: the emulator as an MQTT service (an adapter around the pure core).

Topics (ARCHITECTURE.md), all payloads ``lameta.v1.Envelope``:

================================  =========  ======================================
topic                             direction  what
================================  =========  ======================================
``lameta/v1/<network>/state``     out        network state every period (retained): a
                                             NetworkState, or for large networks a
                                             StateDelta chunk (``state_format``)
``…/state/keyframe/<i>``          out        chunks of the state's fixed part (retained;
                                             large networks, at start and reconnect)
``lameta/v1/<network>/requests``  out        service requests, Poisson at the rate
``lameta/v1/<network>/control``   in         the xApp's decisions
``lameta/v1/<network>/outcomes``  out        one outcome per control message and per
                                             expired request
``lameta/v1/<network>/policy``    in         the negotiated λ* (retained; enforced from
                                             the next state on, see ``Emulator``)
``lameta/v1/status/sim-ric``      out        "online" / "offline" (retained, last will)
================================  =========  ======================================

Under a policy the request stream runs at ``rate`` · λ* / λ_0; while admission is
suspended (λ* = 0) requests keep arriving at ``rate`` and each is refused at once with a
``suspended`` outcome instead of being published.

One thread runs the loop below; paho's network thread only puts control payloads and
connection events on a queue, so the :class:`~sim_ric.emulator.Emulator` is never
touched concurrently. While the broker is unreachable the emulator keeps ticking, no new
request is issued (nobody could answer it), pending deadlines are pushed back by the
length of the outage, and QoS 1 outcomes are queued by paho until the reconnect.
SIGTERM and SIGINT stop the loop: pending requests are settled with a ``shutdown``
outcome, "offline" is published and the client flushes before it disconnects.
"""

from __future__ import annotations

import contextlib
import math
import queue
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import structlog

from agentnet.intents import IntentFormatError, load_intents
from servicekit import codec
from servicekit.broker import EmbeddedBroker, EmbeddedBrokerError, quiet_amqtt_logs
from servicekit.heap import freeze_startup
from servicekit.logs import configure_logging
from servicekit.mqtt import BrokerUrl, MqttClient, Topics, parse_broker_url
from servicekit.signals import stop_on_signals
from sim_ric.emulator import Emulator
from sim_ric.journal import Journal, JournalMismatch
from sim_ric.settings import SimSettings

EXIT_CONFIG = 2
EXIT_BROKER_REFUSED = 3
MAX_WAIT_S = 0.5
"""Longest the loop blocks on the inbound queue (bounds the reaction to a stop)."""
DRAIN_BATCH = 256
"""Control messages handled per loop iteration before timers are checked again."""


class SimService:
    """The MQTT adapter around an :class:`Emulator`.

    Args:
        settings: the service settings.
        emulator: the emulator core.
        client: an MQTT client (not started; :meth:`run` starts and stops it).
        clock: monotonic clock (s).
    """

    def __init__(
        self,
        settings: SimSettings,
        emulator: Emulator,
        client: MqttClient,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self.emu = emulator
        self.client = client
        self.clock = clock
        self.topics = Topics.for_network(settings.network)
        self.inbound: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=settings.inbound_queue)
        self.counters: Counter[str] = Counter()
        self._keyframe_id: int | None = None  # published keyframe the deltas refer to
        self._keyframe_chunks = 0
        self.snapshot: dict[str, Any] = {}
        self.log = structlog.get_logger("sim_ric.service").bind(network=settings.network)
        client.subscribe(self.topics.control, self._on_control, qos=1)
        client.subscribe(self.topics.policy, self._on_policy, qos=1)
        client.on_connected = self._on_connected  # events go through the queue
        client.on_disconnected = self._on_disconnected

    # ---- paho thread: only enqueue ------------------------------------------------------
    def _on_control(self, topic: str, payload: bytes) -> None:
        try:
            self.inbound.put_nowait(("control", payload))
        except queue.Full:
            self.counters["inbound_dropped"] += 1
            self.log.error("control_dropped_queue_full", size=self.inbound.maxsize)

    def _on_policy(self, topic: str, payload: bytes) -> None:
        # A policy changes every later decision: it must not be lost to a full queue.
        self._enqueue_event(("policy", payload))

    def _on_connected(self, session_present: bool) -> None:
        self._enqueue_event(("connected", session_present))

    def _on_disconnected(self, reason: str) -> None:
        self._enqueue_event(("disconnected", reason))

    def _enqueue_event(self, item: tuple[str, Any]) -> None:
        # Connection events must not be lost to a full queue: block briefly instead.
        try:
            self.inbound.put(item, timeout=5.0)
        except queue.Full:
            self.counters["events_dropped"] += 1
            self.log.error("connection_event_dropped", event=item[0])

    # ---- publishing -------------------------------------------------------------------
    @property
    def full_states(self) -> bool:
        """Whether states go out whole (else as a keyframe and deltas)."""
        s = self.settings
        if s.state_format == "auto":
            return self.emu.net.n_agents <= s.state_full_max_agents
        return s.state_format == "full"

    def _publish_state(self) -> None:
        if not self.client.connected:
            # A stale state is useless after the reconnect (a fresh one is sent then).
            self.counters["states_skipped"] += 1
            return
        if self.full_states:
            payload = codec.encode(self.emu.state())
        else:
            if self._keyframe_id is None:
                self._publish_keyframe()
            chunk = codec.delta_chunk(self.emu.delta(self._keyframe_id))
            payload = codec.encode(chunk)
        if self.client.publish(self.topics.state, payload, qos=1, retain=True):
            self.counters["states_published"] += 1

    def _publish_keyframe(self) -> None:
        """Publish the keyframe's chunks, retained (and clear chunk topics this process
        used before beyond the new count)."""
        chunks = codec.keyframe_chunks(self.emu.keyframe(), self.settings.state_chunk_bytes)
        for c in chunks:
            self.client.publish(self.topics.keyframe(c.index), codec.encode(c), qos=1, retain=True)
        for i in range(len(chunks), self._keyframe_chunks):
            self.client.publish(self.topics.keyframe(i), b"", qos=1, retain=True)
        self._keyframe_chunks = len(chunks)
        self._keyframe_id = chunks[0].keyframe_id
        self.counters["keyframes_published"] += 1
        self.log.info(
            "keyframe_published",
            keyframe_id=f"{self._keyframe_id:016x}",
            chunks=len(chunks),
            bytes=chunks[0].size,
        )

    def _publish_outcome(self, out: codec.Outcome) -> None:
        # QoS 1: queued by paho while disconnected, so an accepted decision's outcome is
        # delivered after a reconnect.
        if self.client.publish(self.topics.outcomes, codec.encode(out), qos=1):
            self.counters["outcomes_published"] += 1
        fields = {"request_id": out.request_id, "code": out.code}
        if out.code == "served":
            self.log.debug(
                "decision_served",
                **fields,
                chain=list(out.chain),
                elam=out.elam,
                feasible=out.feasible,
                reward=out.reward,
                normalized_score=None if math.isnan(out.normalized_score) else out.normalized_score,
            )
        elif out.resolved:
            self.log.info("request_settled", **fields, reason=out.reason)
        else:
            self.log.warning("decision_refused", **fields, reason=out.reason)

    # ---- the loop -----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> int:
        """Serve until ``stop`` is set, the duration passes or the request budget is spent.

        Returns:
            A process exit code (0, or 3 when the broker refuses the credentials).
        """
        s = self.settings
        emu = self.emu
        self.client.start()
        if not self.client.wait_connected(s.connect_timeout):
            if self.client.counters["connect_refused"]:
                self.log.error(
                    "broker_refused_connection",
                    error=self.client.last_error,
                    broker=self.client.url.redacted(),
                )
                self.client.stop(timeout=0.0)
                return EXIT_BROKER_REFUSED
            self.log.warning(
                "broker_unreachable_retrying",
                broker=self.client.url.redacted(),
                waited_s=s.connect_timeout,
            )

        start = self.clock()
        end = start + s.duration if s.duration else math.inf
        # A journaled run taken up after a restart counts what it already issued.
        left = None if s.requests is None else max(0, s.requests - emu.issued)
        if emu.pending and self.client.connected:
            self._reannounce("restart")
        next_state = start
        next_request = start + emu.next_interarrival(self._request_rate())
        down_since: float | None = None if self.client.connected else start
        stop_reason = "signal"
        self.log.info(
            "service_started",
            agents=emu.net.n_agents,
            seed=emu.cfg.seed,
            run_id=emu.run_id,
            users=len(emu.users.intents),
            rate=s.rate,
            state_period=s.state_period,
            pending_timeout=s.pending_timeout,
            topics=[
                self.topics.state,
                self.topics.requests,
                self.topics.control,
                self.topics.outcomes,
                self.topics.policy,
            ],
        )
        while not stop.is_set():
            now = self.clock()
            if now >= end:
                stop_reason = "duration"
                break
            if left == 0 and not emu.pending:
                stop_reason = "requests"
                break
            if now >= next_state:
                emu.advance()
                self._publish_state()
                next_state += s.state_period
                if next_state <= now:  # fell behind (a long stall): skip, do not burst
                    next_state = now + s.state_period
            connected = self.client.connected
            if now >= next_request and left != 0:
                if connected:
                    if emu.suspended:
                        self._publish_outcome(emu.refuse_suspended(now))
                    else:
                        req = emu.new_request(now)
                        if self.client.publish(self.topics.requests, codec.encode(req), qos=1):
                            self.counters["requests_published"] += 1
                    if left is not None:
                        left -= 1
                    next_request += emu.next_interarrival(self._request_rate())
                    if next_request < now:
                        next_request = now
                else:
                    self.counters["requests_paused"] += 1
                    next_request = now + emu.next_interarrival(self._request_rate())
            for out in emu.expire(now):
                self._publish_outcome(out)
            if s.reannounce_after is not None and connected:
                self._publish_requests(emu.stale_requests(now, s.reannounce_after), "stale")
            wake = min(next_state, end, emu.next_deadline())
            if left != 0:
                wake = min(wake, next_request)
            self._snapshot_counters()
            timeout = min(max(wake - self.clock(), 0.0), MAX_WAIT_S)
            for kind, value in self._drain(timeout):
                if kind == "control":
                    self._serve_control(value)
                elif kind == "policy":
                    if self._apply_policy(value) == "applied" and left != 0:
                        # The stream's rate changed: draw the next arrival at the new one.
                        next_request = self.clock() + emu.next_interarrival(self._request_rate())
                elif kind == "connected":
                    now = self.clock()
                    if down_since is not None:
                        outage = now - down_since
                        emu.postpone(outage)
                        self.log.info(
                            "broker_connected",
                            outage_s=round(outage, 3),
                            pending=len(emu.pending),
                            session_present=value,
                        )
                        down_since = None
                        # The keyframe again: a broker restarted without persistence lost it.
                        self._keyframe_id = None
                    self._publish_state()
                    # A broker that restarted without persistence lost what was in flight,
                    # and subscribers' sessions with it: announce every unsettled request
                    # again (same ids; a decision already made is re-published, and the
                    # request is settled once).
                    self._reannounce("reconnect")
                elif kind == "disconnected":
                    down_since = self.clock()
                    self.log.warning("broker_lost", reason=value, pending=len(emu.pending))
        self._shutdown(stop_reason)
        return 0

    def _request_rate(self) -> float:
        """Requests per second: ``rate`` scaled by the policy (unscaled while suspended,
        so that refused arrivals are seen)."""
        if self.emu.suspended:
            return self.settings.rate
        return self.settings.rate * self.emu.request_rate_scale()

    def _apply_policy(self, payload: bytes) -> str:
        code = self.emu.apply_policy(payload)
        p = self.emu.policy
        if code == "applied" and p is not None:
            self.log.info(
                "policy_applied",
                negotiation_id=p.negotiation_id,
                arrival_rate=p.arrival_rate,
                capacity=p.capacity,
                reason=p.reason,
                suspended=p.arrival_rate == 0,
                valid_until_ns=p.valid_until_ns,
            )
        elif code == "cleared":
            self.log.info("policy_cleared")
        else:
            self.log.warning("policy_dropped", code=code, bytes=len(payload))
        return code

    def _reannounce(self, why: str) -> None:
        self._publish_requests(self.emu.pending_requests(), why)

    def _publish_requests(self, msgs: list, why: str) -> None:
        sent = sum(
            bool(self.client.publish(self.topics.requests, codec.encode(m), qos=1)) for m in msgs
        )
        self.counters["requests_reannounced"] += sent
        if msgs:
            self.log.info("requests_reannounced", why=why, pending=len(msgs), published=sent)

    def _serve_control(self, payload: bytes) -> None:
        try:
            out = self.emu.handle_control(payload)
        except Exception:
            # A bug, not bad input (bad input always yields an outcome): keep serving.
            self.counters["internal_errors"] += 1
            self.log.exception("control_handling_failed", bytes=len(payload))
            return
        self._publish_outcome(out)

    def _drain(self, timeout: float) -> Iterator[tuple[str, Any]]:
        try:
            yield self.inbound.get(timeout=timeout) if timeout > 0 else self.inbound.get_nowait()
        except queue.Empty:
            return
        for _ in range(DRAIN_BATCH - 1):
            try:
                yield self.inbound.get_nowait()
            except queue.Empty:
                return

    def _shutdown(self, reason: str) -> None:
        # Control messages already received are answered before pending requests close.
        for kind, value in self._drain(0.0):
            if kind == "control":
                self._serve_control(value)
            elif kind == "policy":
                self._apply_policy(value)
        for out in self.emu.shutdown():
            self._publish_outcome(out)
        self._snapshot_counters()
        self.log.info("service_stopping", reason=reason, **self.snapshot)
        self.client.stop(timeout=5.0)

    # ---- metrics ------------------------------------------------------------------------
    def _snapshot_counters(self) -> None:
        snap: dict[str, Any] = dict(self.emu.counters())
        snap.update({f"service.{k}": v for k, v in self.counters.items()})
        snap["state_seq"] = self.emu.seq
        policy = self.emu.policy
        snap["admitted_rate"] = math.nan if policy is None else policy.arrival_rate
        snap["arrival_rate"] = self.emu.net.arrival_rate
        self.snapshot = snap  # replaced atomically; read by the metrics thread

    def serve_metrics(self, host: str, port: int) -> None:
        """Expose Prometheus metrics on ``http://host:port/metrics``."""
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        registry.register(_Collector(self))
        start_http_server(port, addr=host, registry=registry)
        self.log.info("metrics_serving", host=host, port=port)


class _Collector:
    """Prometheus collector reading the service's latest counter snapshot."""

    def __init__(self, service: SimService):
        self.service = service

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = dict(self.service.snapshot)
        outcomes = CounterMetricFamily(
            "sim_ric_outcomes", "Outcomes published, by code", labels=["code"]
        )
        for key, value in snap.items():
            if key.startswith("outcome."):
                outcomes.add_metric([key.removeprefix("outcome.")], value)
        yield outcomes
        simple = {
            "requests": "Service requests issued",
            "decisions": "Control messages handled",
            "ticks": "Dynamics ticks",
            "crashes": "Agent crashes",
            "recoveries": "Agent recoveries",
            "service.states_published": "State messages published",
            "service.states_skipped": "State messages skipped while disconnected",
            "service.keyframes_published": "State keyframes published (large networks)",
            "service.requests_paused": "Request arrivals skipped while disconnected",
            "service.inbound_dropped": "Control messages dropped (inbound queue full)",
        }
        for key, doc in simple.items():
            name = "sim_ric_" + key.removeprefix("service.")
            yield CounterMetricFamily(name, doc, value=snap.get(key, 0))
        yield GaugeMetricFamily(
            "sim_ric_pending_requests", "Requests awaiting a decision", value=snap.get("pending", 0)
        )
        policy = CounterMetricFamily(
            "sim_ric_policy_events", "Policy payloads by what became of them", labels=["code"]
        )
        for key, value in snap.items():
            if key.startswith("policy."):
                policy.add_metric([key.removeprefix("policy.")], value)
        yield policy
        yield GaugeMetricFamily(
            "sim_ric_admitted_rate",
            "λ* of the policy in force (NaN without a policy; 0: suspended)",
            value=snap.get("admitted_rate", math.nan),
        )
        yield GaugeMetricFamily(
            "sim_ric_arrival_rate",
            "λ of the QoE model in the latest state (req/s per chain)",
            value=snap.get("arrival_rate", 0.0),
        )
        yield GaugeMetricFamily(
            "sim_ric_state_seq",
            "Sequence number of the latest state",
            value=snap.get("state_seq", 0),
        )
        stats = self.service.client.stats()
        yield GaugeMetricFamily(
            "sim_ric_mqtt_connected",
            "1 while connected to the broker",
            value=stats.pop("connected"),
        )
        events = CounterMetricFamily("sim_ric_mqtt_events", "MQTT client events", labels=["event"])
        for key, value in sorted(stats.items()):
            events.add_metric([key], value)
        yield events


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------
def main_run(settings: SimSettings, stop: threading.Event | None = None) -> int:
    """Run the service for ``sim-ric run``.

    Args:
        settings: the service's settings (environment, overridden by the flags).
        stop: set it to stop the service (default: SIGTERM/SIGINT set it).

    Returns:
        The process exit code: 0, 2 (bad intents, embedded broker failed), 3 (broker
        refused us).
    """
    configure_logging(settings.log_level, settings.log_format)
    quiet_amqtt_logs()
    log = structlog.get_logger("sim_ric.service")
    try:
        files = settings.intent_files()
        intents = load_intents(files, settings.split)
    except (FileNotFoundError, IntentFormatError, OSError) as exc:
        log.error("intents_unavailable", error=str(exc))
        print(f"sim-ric run: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log.info("intents_loaded", files=[str(f) for f in files], split=settings.split, n=len(intents))
    journal = None
    if settings.journal is not None:
        try:
            journal = Journal(settings.journal, settings.network, settings.seed)
        except (JournalMismatch, sqlite3.Error, OSError) as exc:
            log.error("journal_unavailable", path=str(settings.journal), error=str(exc))
            print(f"sim-ric run: journal {settings.journal}: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    emulator = Emulator(intents, settings.emulator_config(), journal=journal)
    if emulator.stats["requests_restored"] or (journal and emulator.issued):
        log.info("journal_taken_up", run_id=emulator.run_id, issued=emulator.issued,
                 pending=len(emulator.pending))  # fmt: skip
    stop = stop or threading.Event()
    with stop_on_signals(stop), contextlib.ExitStack() as stack:
        if settings.broker == "embedded":
            password = settings.embedded_password
            broker = EmbeddedBroker(
                host=settings.embedded_host,
                port=settings.embedded_port,
                username=settings.embedded_username,
                password=None if password is None else password.get_secret_value(),
            )
            try:
                stack.enter_context(broker)
            except EmbeddedBrokerError as exc:
                log.error("embedded_broker_failed", error=str(exc))
                return EXIT_CONFIG
            if settings.embedded_url_file is not None:
                broker.write_url_file(settings.embedded_url_file)
                log.info("embedded_broker_url_written", path=str(settings.embedded_url_file))
            elif password is None:
                log.warning(
                    "embedded_broker_private",
                    hint="the password was generated and is not shown; set "
                    "SIM_EMBEDDED_URL_FILE or SIM_EMBEDDED_PASSWORD so that other "
                    "components can connect",
                )
            url: BrokerUrl = broker.broker_url
        else:
            url = parse_broker_url(settings.broker)
        client = settings.mqtt_client(url)
        service = SimService(settings, emulator, client)
        if settings.metrics_port:
            service.serve_metrics(settings.metrics_host, settings.metrics_port)
        # The network and the users are built: out of the full GC passes' way (heap.py).
        log.info("heap_frozen", objects=freeze_startup())
        return service.run(stop)
