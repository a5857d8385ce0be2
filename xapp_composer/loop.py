"""``xapp-composer run``: the near-RT control loop, an MQTT/gRPC adapter around
:class:`~xapp_composer.control.ControlCore`.

Topics (ARCHITECTURE.md), all payloads ``lameta.v1.Envelope``:

================================  =========  ============================================
topic                             direction  what
================================  =========  ============================================
``lameta/v1/<network>/state``     in         network states (retained); the latest wins
``lameta/v1/<network>/requests``  in         service requests, QoS 1, acknowledged only
                                             once their decision is published (replicas:
                                             ``$share/<group>/...``, XAPP_SHARE_GROUP)
``lameta/v1/<network>/control``   out        one decision or rejection per request id
``lameta/v1/<network>/outcomes``  in         verdicts, relayed to the rApp's memory
``lameta/v1/status/xapp-composer`` out       "online" / "offline" (retained, last will)
================================  =========  ============================================

Threads: paho's network thread only hands messages over (requests to a queue, the
latest state to a slot, outcomes to the relay queue); *decider* threads
(``XAPP_DECIDERS``, so that one request's translation overlaps another's composition; one
request id is handled by one of them at a time) decide each request, publish, then
acknowledge (so a request whose decision was not handed to the broker is redelivered on
the next connection of the persistent session, and a redelivered one that was decided is
recognised and only acknowledged); a *state* thread rebuilds and prepares each new state
off the request path; a *relay* thread reports served outcomes to the rApp
(:mod:`xapp_composer.outcome_relay`); a *housekeeping* thread checks the rApp's gRPC
health and the policy file (:mod:`xapp_composer.policy_watch`). SIGTERM/SIGINT: requests
not yet taken stay unacknowledged (the broker keeps them for the next session), the ones
taken are decided within ``shutdown_grace``, the relay flushes what it can, "offline" is
published and the client flushes before it disconnects.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from lameta_proto.v1 import network_pb2
from servicekit import codec
from servicekit.cli import UsageError
from servicekit.health import HealthServer
from servicekit.heap import freeze_startup
from servicekit.integrity import IntegrityError, load_public_key
from servicekit.logs import configure_logging
from servicekit.mqtt import Delivery, MqttClient, Topics, shared
from servicekit.signals import stop_on_signals
from xapp_composer.control import ControlCore, Result
from xapp_composer.metrics import XappMetrics
from xapp_composer.outcome_relay import OutcomeRelay
from xapp_composer.policy_watch import PolicyWatcher
from xapp_composer.rapp_client import RappClient
from xapp_composer.runtime import PolicyIntegrityError, PolicyRuntime
from xapp_composer.settings import XappSettings

EXIT_BROKER_REFUSED = 3
TICK_S = 0.25
"""Housekeeping period; also bounds how long the loops take to notice a stop."""
STATE_WAIT_S = 2.0
"""A request that finds no usable state (none yet, or a stale one) while a new state is
being prepared, or within this long of a (re)connection, waits up to this long for one
rather than being rejected: at start, or after a broker outage, the retained state and the
first requests arrive together, and the requests a persistent session kept while the xApp
was away are delivered right after the CONNACK, before the retained state that the
resubscription brings."""

log = structlog.get_logger("xapp_composer.loop")


class XappService:
    """The xApp: MQTT in and out, the rApp over gRPC, the decision core in between.

    Args:
        settings: the service settings.
        core: the decision core (policy, translator, metrics).
        rapp: the rApp client (health checks, outcome reports).
        client: an MQTT client made with ``manual_ack=True`` (not started).
        loader: builds a verified policy runtime from a path (hot reload).
    """

    def __init__(
        self,
        settings: XappSettings,
        core: ControlCore,
        rapp: RappClient,
        client: MqttClient,
        loader: Callable[[Path], PolicyRuntime],
    ):
        if not client.manual_ack:
            raise ValueError("the xApp's MQTT client needs manual_ack=True")
        self.settings = settings
        self.core = core
        self.rapp = rapp
        self.client = client
        self.metrics = core.metrics
        self.topics = Topics.for_network(settings.network)
        self.inbound: queue.Queue[tuple[Delivery, float] | None] = queue.Queue(
            maxsize=settings.inbound_queue
        )
        self.relay = OutcomeRelay(
            rapp.report_outcome,
            self.metrics,
            capacity=settings.outcome_queue,
            retry_max_s=settings.outcome_retry_max,
        )
        self.watcher = PolicyWatcher(settings.policy, core, loader, self.metrics)
        self._state_lock = threading.Lock()
        self._latest_state: bytes | None = None
        self._keyframe_chunks: list[bytes] = []
        self._state_event = threading.Event()
        self._state_pending = threading.Event()  # received, not yet handled
        self._connected_at = -float("inf")  # monotonic time of the last (re)connection
        self._stopping = threading.Event()  # no new requests are taken
        self._done = threading.Event()  # background loops end
        self._threads: list[threading.Thread] = []
        self.health: HealthServer | None = None
        client.on_connected = self._on_connected
        self.requests_filter = self.topics.requests
        if settings.share_group:  # replicas: the broker hands each request to one of them
            self.requests_filter = shared(self.topics.requests, settings.share_group)
        client.subscribe(self.requests_filter, self._on_request, qos=1, ack="manual")
        client.subscribe(self.topics.state, self._on_state, qos=1)
        client.subscribe(self.topics.keyframes, self._on_keyframe, qos=1)
        client.subscribe(self.topics.outcomes, self._on_outcome, qos=1)

    # ---- paho thread: hand over only ------------------------------------------------------
    def _on_connected(self, session_present: bool) -> None:
        # Runs before any message of the new connection is handed over.
        self._connected_at = time.monotonic()

    def _on_request(self, delivery: Delivery) -> None:
        if self._stopping.is_set():
            # Not acknowledged: the broker keeps it for the next session of this client id.
            self.metrics.event("request_deferred_shutdown")
            return
        try:
            self.inbound.put_nowait((delivery, time.perf_counter()))
        except queue.Full:
            # Not acknowledged either: redelivered after the next reconnect.
            self.metrics.drop("queue_full")
            log.error("request_queue_full", size=self.inbound.maxsize, dup=delivery.dup)

    def _on_state(self, topic: str, payload: bytes) -> None:
        with self._state_lock:
            if self._latest_state is not None:
                self.metrics.state("superseded")  # never prepared: a newer one came first
            self._latest_state = payload  # the latest wins; older unprocessed ones are moot
            self._state_pending.set()
        self._state_event.set()

    def _on_keyframe(self, topic: str, payload: bytes) -> None:
        # Every chunk counts (unlike states, where the latest wins): queued in order.
        with self._state_lock:
            self._keyframe_chunks.append(payload)
            self._state_pending.set()
        self._state_event.set()

    def _on_outcome(self, topic: str, payload: bytes) -> None:
        try:
            out = codec.decode_outcome(payload)
        except codec.DecodeError as exc:
            self.metrics.outcome(f"malformed_{exc.code}")
            log.warning("outcome_malformed", code=exc.code, reason=exc.reason)
            return
        if out.code != "served":
            self.metrics.outcome(f"ignored_{out.code or 'none'}")
            return
        mine = self.core.decided(out.request_id)
        if mine is None:
            self.metrics.outcome("ignored_not_ours")
            return
        if not mine.matches(out):
            # Not the decision this xApp made (another chain or vector): forged, or a
            # replay of another run. Never written into the rApp's memory.
            self.metrics.outcome("ignored_mismatch")
            log.warning("outcome_mismatch", request_id=out.request_id)
            return
        if mine.fallback:
            # The memory calibrates translations (eq. 46); a fallback vector is not one.
            self.metrics.outcome("ignored_fallback")
            return
        if not out.prompt or len(out.predicted) != 4:
            self.metrics.outcome("ignored_incomplete")
            return
        self.relay.offer(out)

    # ---- decider -------------------------------------------------------------------------
    def decide_one(self, delivery: Delivery, received: float) -> Result:
        """Decide, publish and acknowledge one request delivery."""
        if not self.core.usable_state() and self._state_may_come():
            # At start, or after a broker outage: a fresh state is being prepared, or the
            # retained one is on its way (see STATE_WAIT_S).
            deadline = time.monotonic() + STATE_WAIT_S
            while (
                not self.core.usable_state()
                and self._state_may_come()
                and time.monotonic() < deadline
            ):
                time.sleep(0.005)
        published_at = 0.0

        def publish(decision: network_pb2.ControlDecision) -> bool:
            nonlocal published_at
            t0 = time.perf_counter()
            ok = self.client.publish(self.topics.control, codec.encode(decision), qos=1)
            published_at = time.perf_counter()
            self.metrics.observe("publish", published_at - t0)
            return ok

        result, settled = self.core.process(delivery.payload, publish)
        if not settled:
            self.metrics.drop("publish_failed")
            log.error("decision_not_published", request_id=result.request_id)
            return result  # not acknowledged: decided again when redelivered
        if result.decision is not None:
            self.metrics.observe("end_to_end", published_at - received)
            for stage, seconds in result.timings.items():
                self.metrics.observe(stage, seconds)
            log.debug(
                "decision_published",
                request_id=result.request_id,
                status=result.status,
                chain=list(result.decision.chain),
                fallback=result.decision.fallback,
                ms=round((published_at - received) * 1e3, 3),
            )
        self.client.ack(delivery)
        return result

    def _state_may_come(self) -> bool:
        """A state is being prepared, or the connection is too young for the retained one
        to have arrived."""
        return self._state_pending.is_set() or time.monotonic() - self._connected_at < STATE_WAIT_S

    def _decider(self) -> None:
        while True:
            item = self.inbound.get()
            if item is None:
                return
            try:
                self.decide_one(*item)
            except Exception:  # a bug in the transport path: keep the decider alive
                self.metrics.event("decider_error")
                log.exception("decider_failed", dup=item[0].dup)
            self.metrics.inbound_queue.set(self.inbound.qsize())

    # ---- state ---------------------------------------------------------------------------
    def _state_loop(self) -> None:
        while not self._done.is_set():
            if not self._state_event.wait(TICK_S):
                continue
            self._state_event.clear()
            with self._state_lock:
                payload, self._latest_state = self._latest_state, None
                chunks, self._keyframe_chunks = self._keyframe_chunks, []
            for chunk in chunks:
                try:
                    self.core.on_keyframe_chunk(chunk)
                except Exception:
                    self.metrics.state("internal_error")
                    log.exception("keyframe_handling_failed", bytes=len(chunk))
            if payload is None:
                with self._state_lock:
                    if self._latest_state is None and not self._keyframe_chunks:
                        self._state_pending.clear()
                continue
            try:
                live = self.core.on_state(payload)
            except Exception:
                self.metrics.state("internal_error")
                log.exception("state_handling_failed", bytes=len(payload))
                continue
            finally:
                with self._state_lock:
                    if self._latest_state is None and not self._keyframe_chunks:
                        self._state_pending.clear()
            if live is not None:
                log.debug("state_installed", seq=live.seq, agents=live.net.n_agents)

    # ---- housekeeping --------------------------------------------------------------------
    def _housekeeping(self) -> None:
        s = self.settings
        next_health = 0.0
        next_policy = time.monotonic() + s.policy_reload_period
        while not self._done.wait(TICK_S):
            now = time.monotonic()
            if now >= next_health:
                self.metrics.rapp_reachable.set(int(self.rapp.check_health(timeout=1.0)))
                next_health = now + s.rapp_health_period
            if s.policy_reload_period and now >= next_policy:
                try:
                    self.watcher.poll()
                except Exception:
                    log.exception("policy_watch_failed")
                next_policy = time.monotonic() + s.policy_reload_period
            self.metrics.mqtt_connected.set(int(self.client.connected))
            self.metrics.inbound_queue.set(self.inbound.qsize())

    def readiness(self) -> dict[str, bool]:
        """The checks of ``/ric/v1/health/ready``."""
        return {
            "broker": self.client.connected,
            "rapp": self.rapp.reachable,
            "policy": self.core.runtime is not None,
            "accepting": not self._stopping.is_set(),
        }

    # ---- life cycle ----------------------------------------------------------------------
    def start_health(self) -> HealthServer:
        """Serve the health paths and metrics (before :meth:`run`, so probes answer early)."""
        s = self.settings
        self.health = HealthServer(
            s.health_host,
            s.health_port,
            self.readiness,
            self.metrics.registry,
            alive=lambda: not self._done.is_set(),
            name="xapp-health",
        ).start()
        return self.health

    def run(self, stop: threading.Event) -> int:
        """Serve until ``stop`` is set.

        Returns:
            A process exit code: 0, or 3 when the broker refuses the credentials.
        """
        s = self.settings
        self.rapp.check_health(timeout=min(1.0, s.connect_timeout))
        self.metrics.rapp_reachable.set(int(self.rapp.reachable))
        for i in range(s.deciders):
            t = threading.Thread(target=self._decider, name=f"xapp-decider-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        for name, target in (
            ("xapp-state", self._state_loop),
            ("xapp-relay", lambda: self.relay.run(self._done)),
            ("xapp-housekeeping", self._housekeeping),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        self.client.start()
        if not self.client.wait_connected(s.connect_timeout):
            if self.client.counters["connect_refused"]:
                log.error(
                    "broker_refused_connection",
                    error=self.client.last_error,
                    broker=self.client.url.redacted(),
                )
                self._shutdown("broker_refused")
                return EXIT_BROKER_REFUSED
            log.warning(
                "broker_unreachable_retrying",
                broker=self.client.url.redacted(),
                waited_s=s.connect_timeout,
            )
        log.info(
            "xapp_started",
            policy=self.core.runtime.version,
            provider=self.core.runtime.provider,
            rapp=self.rapp.target,
            rapp_reachable=self.rapp.reachable,
            topics=[
                self.topics.state,
                self.requests_filter,
                self.topics.control,
                self.topics.outcomes,
            ],
            health_port=self.health.port if self.health else None,
        )
        stop.wait()
        self._shutdown("signal")
        return 0

    def _shutdown(self, reason: str) -> None:
        s = self.settings
        self._stopping.set()
        log.info("xapp_stopping", reason=reason, queued=self.inbound.qsize())
        deciders = [t for t in self._threads if t.name.startswith("xapp-decider")]
        for _ in deciders:
            self.inbound.put(None)  # after every request already taken
        deadline = time.monotonic() + s.shutdown_grace
        for t in deciders:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in deciders):
            log.warning("requests_unfinished_at_shutdown", queued=self.inbound.qsize())
        self._done.set()
        self.relay.drain(min(2.0, s.shutdown_grace))
        for t in self._threads:
            if t not in deciders:
                t.join(2.0)
        self.client.stop(timeout=5.0)
        if self.health is not None:
            self.health.stop()
        self.rapp.close()
        log.info("xapp_stopped", **{k: v for k, v in sorted(self.metrics.snapshot().items())})


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------
def build_service(settings: XappSettings) -> XappService:
    """Everything ``xapp-composer run`` wires together, from the settings.

    Raises:
        FileNotFoundError: the policy or its card is missing.
        PolicyIntegrityError: the policy does not match its card.
        OSError: the health port cannot be bound.
    """

    public_key = None
    if settings.policy_public_key is not None:
        try:
            public_key = load_public_key(settings.policy_public_key)
        except (OSError, IntegrityError) as exc:
            raise PolicyIntegrityError(f"policy public key: {exc}") from None

    def loader(path: Path) -> PolicyRuntime:
        return PolicyRuntime(
            path,
            prefer_gpu=settings.prefer_gpu,
            threads=settings.onnx_threads,
            tree=settings.tabulate,
            tree_max_rows=settings.tabulate_max_rows,
            public_key=public_key,
            starts=settings.srl_starts,
            starts_min_agents=settings.srl_starts_min_agents,
        )

    if not settings.policy.exists():
        raise FileNotFoundError(
            f"policy {settings.policy} not found: train and export one "
            "(xapp-composer train ... && xapp-composer export) or pass --policy"
        )
    runtime = loader(settings.policy)
    rapp = RappClient(
        settings.rapp,
        deadline_s=settings.rapp_deadline_ms / 1e3,
        report_deadline_s=settings.rapp_report_deadline_ms / 1e3,
        retry_after_s=settings.rapp_retry_after,
        tls_ca=settings.rapp_tls_ca,
        tls_cert=settings.rapp_tls_cert,
        tls_key=settings.rapp_tls_key,
    )
    core = ControlCore(
        runtime,
        rapp,
        metrics=XappMetrics(),
        max_state_age_s=settings.max_state_age,
        fallback_window=settings.fallback_window,
        dedup_capacity=settings.dedup_capacity,
        repair_infeasible=settings.repair_infeasible,
        max_prompt_bytes=settings.rapp_max_prompt_bytes,
        proposer_k=settings.proposer_k,
        proposer_min_agents=settings.proposer_min_agents,
    )
    client = settings.mqtt_client(manual_ack=True)
    return XappService(settings, core, rapp, client, loader)


def main_run(settings: XappSettings, stop: threading.Event | None = None) -> int:
    """Run the xApp until ``stop`` is set (default: until SIGTERM/SIGINT).

    Returns:
        The process exit code: 0, or 3 (the broker refused the credentials).

    Raises:
        FileNotFoundError: the policy is missing.
        servicekit.cli.UsageError: the policy does not match its card, or the health port
            cannot be bound.
    """
    configure_logging(settings.log_level, settings.log_format)
    try:
        service = build_service(settings)
    except PolicyIntegrityError as exc:
        raise UsageError(f"--policy {settings.policy}: {exc}") from None
    try:
        service.start_health()
    except OSError as exc:
        service.rapp.close()
        raise UsageError(f"--health-port {settings.health_port}: {exc}") from None
    # The policy and every library are loaded: out of the full GC passes' way (heap.py).
    log.info("heap_frozen", objects=freeze_startup())
    stop = stop or threading.Event()
    with stop_on_signals(stop):
        return service.run(stop)
