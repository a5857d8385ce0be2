"""Attack scripts against the real stack, one per class, driven by a :class:`Scenario`.

Each attack is an ordinary client: a paho MQTT connection of its own (or a gRPC channel
to the rApp for memory poisoning) doing what its scenario says at the times
:func:`~xapp_guard.scenarios.schedule` gives. An attacker that needs targets (pending
request ids, messages to replay) subscribes to the network's requests and decisions and
uses what it has captured so far. :meth:`Attack.run` returns what it did; the recorder
labels the attacker's client id with the scenario's class for the episode.

On a broker with the deployment's identities (:mod:`servicekit.acl`) an attacker is only
as strong as the credentials it holds. What still gets through is a compromised client
of an identity allowed to do the thing (:func:`compromised_identity`): the xApp's user
forging or replaying decisions, the emulator's user forging outcomes, flooding or
replaying requests, either one sending oversize or garbage payloads on its own topics,
the xApp's rApp channel flooding ReportOutcome, any user storming connections. Where its
identity may not read a topic it needs (the emulator's user reads no requests), the
attacker reads it through a tap, a second connection with the read-only ``observer``
user. The same scripts run with an identity that may not publish (:data:`REFUSED_IDENTITY`)
are refused at the broker, and the recorder keeps them as such.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import paho.mqtt.client as paho
import structlog
from paho.mqtt.client import topic_matches_sub
from paho.mqtt.enums import CallbackAPIVersion

from agentnet.intents import APPS
from lameta_proto.v1 import intent_pb2, intent_pb2_grpc
from servicekit import codec
from servicekit.acl import read_filters
from servicekit.mqtt import BrokerUrl, Topics
from xapp_guard.scenarios import Scenario, schedule

log = structlog.get_logger("xapp_guard.attacks")

_WORDS = ("stream", "the", "match", "render", "fast", "cheap", "answer", "patient", "video",
          "quickly", "secure", "report", "payment", "live", "edge", "model")  # fmt: skip


def _prompt(rng: np.random.Generator, n_bytes: int) -> str:
    words: list[str] = []
    size = 0
    while size < n_bytes:
        w = str(rng.choice(_WORDS))
        words.append(w)
        size += len(w) + 1
    return " ".join(words)[:n_bytes]


def _simplex(rng: np.random.Generator) -> list[float]:
    v = rng.dirichlet(np.ones(4))
    return [float(x) for x in v]


REFUSED_IDENTITY = "observer"
"""A real, authenticated user that may publish nothing on a network: the identity of the
attacks that the broker's ACL refuses at the door."""
TAP_IDENTITY = "observer"
"""The read-only user through which an attacker reads what its own identity may not."""


def compromised_identity(scenario: Scenario) -> str:
    """The broker user whose compromised client can run ``scenario`` under the ACL (the
    user allowed to publish on the topic the attack writes)."""
    cls, p = scenario.cls, scenario.params
    if cls in ("forged_decision", "memory_poisoning"):
        return "xapp-composer"  # the rApp's ReportOutcome caller is the xApp
    if cls == "replay":
        return "sim-ric" if p["what"] == "requests" else "xapp-composer"
    if cls == "oversize":
        return "xapp-composer" if p["topic"] == "control" else "sim-ric"
    if cls == "reconnect_storm":
        return REFUSED_IDENTITY  # connecting needs no publish right
    return "sim-ric"  # forged_outcome, request_flood


def may_read(user: str | None, topic: str) -> bool:
    """``user`` may subscribe to ``topic`` (an anonymous, open broker reads everything)."""
    return user is None or any(topic_matches_sub(f, topic) for f in read_filters(user))


@dataclass
class Capture:
    """What a subscribed attacker has seen: requests and decisions, newest last."""

    requests: deque[tuple[float, bytes, Any]] = field(default_factory=lambda: deque(maxlen=500))
    decisions: deque[tuple[float, bytes, Any]] = field(default_factory=lambda: deque(maxlen=500))
    used: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Attack:
    """One attacker running one scenario.

    Args:
        scenario: what to do.
        broker: the broker, with the user the attacker logs in as (if any).
        network: the attacked network.
        client_id: the attacker's MQTT client id.
        rapp: the rApp's gRPC target (memory poisoning).
        seed: randomness of the schedule and the forged contents.
        tap: the broker as a read-only user, for topics ``broker``'s user may not read
            (its connection's client id is ``<client_id>-tap``).
    """

    def __init__(
        self,
        scenario: Scenario,
        broker: BrokerUrl,
        network: str,
        client_id: str,
        *,
        rapp: str | None = None,
        seed: int = 0,
        tap: BrokerUrl | None = None,
    ):
        self.s = scenario
        self.p = scenario.params
        self.broker = broker
        self.topics = Topics.for_network(network)
        self.client_id = client_id
        self.rapp = rapp
        self.tap = tap
        self.rng = np.random.default_rng(seed)
        self.capture = Capture()
        self.done: dict[str, int] = {"actions": 0, "errors": 0}

    @property
    def over_grpc(self) -> bool:
        """The attacker is a gRPC channel: the sensor names it by its peer address, which
        the recorder learns as the channel that first appears during the episode."""
        return self.s.cls == "memory_poisoning"

    # ---- MQTT plumbing --------------------------------------------------------------
    def _client(self, clean: bool = True, broker: BrokerUrl | None = None,
                client_id: str | None = None) -> paho.Client:  # fmt: skip
        broker = broker or self.broker
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or self.client_id,
                        clean_session=clean)  # fmt: skip
        if broker.username is not None:
            c.username_pw_set(broker.username, broker.password)
        return c

    def _connect(self, c: paho.Client, timeout: float = 5.0) -> bool:
        connected = threading.Event()
        c.on_connect = lambda *a: connected.set()
        try:
            c.connect(self.broker.host, self.broker.port, keepalive=30)
        except OSError as exc:
            self.done["errors"] += 1
            log.warning("attack_connect_failed", client=self.client_id, error=str(exc))
            return False
        c.loop_start()
        return connected.wait(timeout)

    def _on_message(self, client, userdata, msg: paho.MQTTMessage) -> None:
        now = time.monotonic()
        requests = msg.topic == self.topics.requests
        try:
            m = (codec.decode_request if requests else codec.decode_decision)(msg.payload)
        except codec.DecodeError:
            return
        with self.capture.lock:
            (self.capture.requests if requests else self.capture.decisions).append(
                (now, bytes(msg.payload), m)
            )

    def _subscribe(self, c: paho.Client, decisions: bool = False) -> paho.Client | None:
        """Subscribe to what the attack captures: on ``c`` where its user may read it, else
        through a tap connection (returned, for closing), else not at all."""
        topics = [self.topics.requests, *([self.topics.control] if decisions else [])]
        own = [t for t in topics if may_read(self.broker.username, t)]
        other = [t for t in topics if t not in own]
        c.on_message = self._on_message
        for t in own:
            c.subscribe(t, qos=1)
        if not other or self.tap is None:
            return None
        tap = self._client(broker=self.tap, client_id=f"{self.client_id}-tap")
        if not self._connect(tap):
            return None
        tap.on_message = self._on_message
        for t in other:
            tap.subscribe(t, qos=1)
        return tap

    # ---- run --------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> dict[str, int]:
        """Do the scenario (blocking for its duration); returns counts of what was done."""
        stop = stop or threading.Event()
        times = schedule(self.s, self.rng)
        if self.s.cls == "memory_poisoning":
            return self._run_grpc(times, stop)
        if self.s.cls == "reconnect_storm":
            return self._run_storm(times, stop)
        c = self._client()
        if not self._connect(c):
            return self.done
        tap = None
        if self.s.cls != "oversize":
            tap = self._subscribe(c, decisions=self.s.cls in ("replay", "forged_outcome"))
        act = getattr(self, f"_act_{self.s.cls}")
        t0 = time.monotonic()
        for t in times:
            if stop.wait(max(0.0, t0 + t - time.monotonic())):
                break
            try:
                action = act()
            except Exception:  # a script bug must not take the recorder down
                self.done["errors"] += 1
                log.exception("attack_action_failed", cls=self.s.cls)
                continue
            if action is None:  # nothing captured to replay yet
                self.done["skipped"] = self.done.get("skipped", 0) + 1
                continue
            c.publish(action[1], action[0], qos=1)
            self.done["actions"] += 1
        for conn in (c, tap):
            if conn is not None:
                conn.disconnect()
                conn.loop_stop()
        return self.done

    # ---- the actions ------------------------------------------------------------------
    def _fresh_id(self) -> str:
        return f"{self.rng.bytes(4).hex()}-{int(self.rng.integers(1 << 30))}"

    def _latest_request(self, prefer_unused: bool = True):
        with self.capture.lock:
            for _, _, m in reversed(self.capture.requests):
                if not prefer_unused or m.request_id not in self.capture.used:
                    self.capture.used.add(m.request_id)
                    return m
            if self.capture.requests:
                return self.capture.requests[int(self.rng.integers(len(self.capture.requests)))][2]
        return None

    def _act_forged_decision(self) -> tuple[bytes, str]:
        req = self._latest_request() if self.p["target"] == "pending" else None
        rid = req.request_id if req is not None else self._fresh_id()
        n = len(req.chain_types) if req is not None else 3
        if self.p["valid_chain"] == "no":
            n = int(self.rng.integers(1, 8))
        chain = [int(x) for x in self.rng.integers(0, 81, size=n)]
        d = codec.ControlDecision(request_id=rid, chain=chain, elam="minilm",
                                  predicted=_simplex(self.rng), policy_version="srl-general",
                                  timestamp_ns=time.time_ns())  # fmt: skip
        return codec.encode(d), self.topics.control

    def _act_forged_outcome(self) -> tuple[bytes, str]:
        target = None
        if self.p["target"] == "decided":
            with self.capture.lock:
                for _, _, d in reversed(self.capture.decisions):
                    if d.request_id not in self.capture.used and d.chain:
                        target = d
                        self.capture.used.add(d.request_id)
                        break
                prompts = {m.request_id: m for _, _, m in self.capture.requests}
        rid = target.request_id if target is not None else self._fresh_id()
        req = prompts.get(rid) if target is not None else None
        o = codec.Outcome(
            request_id=rid, accepted=True, reason="served", feasible=True, code="served",
            resolved=True, reward=float(self.p["reward"]), Q=0.9, Q_subjective=0.9,
            normalized_score=1.0, elam="minilm",
            chain=list(target.chain) if target is not None else [1, 2, 3],
            prompt=req.prompt if req is not None else _prompt(self.rng, 60),
            predicted=_simplex(self.rng), app=req.app if req is not None else "qa",
            timestamp_ns=time.time_ns(),
        )  # fmt: skip
        return codec.encode(o), self.topics.outcomes

    def _act_replay(self) -> tuple[bytes, str] | None:
        pool = "requests" if self.p["what"] == "requests" else "decisions"
        topic = self.topics.requests if pool == "requests" else self.topics.control
        horizon = time.monotonic() - float(self.p["delay_s"])
        with self.capture.lock:
            items = list(getattr(self.capture, pool))
        if not items:
            return None
        old = [x for x in items if x[0] <= horizon] or items[:1]
        return old[int(self.rng.integers(len(old)))][1], topic

    def _act_request_flood(self) -> tuple[bytes, str]:
        req = self._latest_request(prefer_unused=False)
        types = list(req.chain_types) if req is not None else [1, 2, 3]
        r = codec.ServiceRequest(
            request_id=self._fresh_id(), prompt=_prompt(self.rng, int(self.p.get("prompt_bytes", 80))),
            app=str(self.rng.choice(APPS)), chain_types=types, arrival_rate=1.0,
            timestamp_ns=time.time_ns(),
        )  # fmt: skip
        return codec.encode(r), self.topics.requests

    def _act_oversize(self) -> tuple[bytes, str]:
        size = int(self.p["size_bytes"])
        topic = getattr(self.topics, self.p["topic"])
        if self.p["garbage"] == "yes":
            return os.urandom(size), topic
        r = codec.ServiceRequest(request_id=self._fresh_id(), prompt="x" * size, app="qa",
                                 chain_types=[1, 2, 3], arrival_rate=1.0)  # fmt: skip
        if self.p["topic"] == "requests":
            return codec.encode(r), topic
        if self.p["topic"] == "control":
            d = codec.ControlDecision(request_id=self._fresh_id(), chain=[1, 2, 3],
                                      elam="x" * size)  # fmt: skip
            return codec.encode(d), topic
        o = codec.Outcome(request_id=self._fresh_id(), code="served", prompt="x" * size)
        return codec.encode(o), topic

    def _run_storm(self, times: np.ndarray, stop: threading.Event) -> dict[str, int]:
        t0 = time.monotonic()
        for t in times:
            if stop.wait(max(0.0, t0 + t - time.monotonic())):
                break
            # The network loop is driven by hand: a loop thread per connection would cap the
            # storm at a few connections per second.
            c = self._client()
            connected = threading.Event()
            c.on_connect = lambda *a, ev=connected: ev.set()
            try:
                c.connect(self.broker.host, self.broker.port, keepalive=30)
            except OSError:
                self.done["errors"] += 1
                continue
            deadline = time.monotonic() + 2.0
            while not connected.is_set() and time.monotonic() < deadline:
                c.loop(timeout=0.01)
            if self.p["subscribe"] == "yes":
                c.subscribe(self.topics.requests, qos=1)
                c.loop(timeout=0.01)
            if self.p["clean"] == "yes":
                c.disconnect()
                c.loop(timeout=0.01)
            else:  # drop the TCP connection without a DISCONNECT packet
                sock = c.socket()
                if isinstance(sock, socket.socket):
                    sock.close()
            self.done["actions"] += 1
        return self.done

    def _run_grpc(self, times: np.ndarray, stop: threading.Event) -> dict[str, int]:
        if not self.rapp:
            raise ValueError("memory_poisoning needs the rApp's target")
        reused = [self._fresh_id() for _ in range(3)]
        with grpc.insecure_channel(self.rapp) as channel:
            stub = intent_pb2_grpc.IntentServiceStub(channel)
            t0 = time.monotonic()
            for t in times:
                if stop.wait(max(0.0, t0 + t - time.monotonic())):
                    break
                style = self.p["rid"]
                rid = {"empty": "", "random": self._fresh_id(),
                       "replayed": str(self.rng.choice(reused))}[style]  # fmt: skip
                req = intent_pb2.ReportOutcomeRequest(
                    prompt=_prompt(self.rng, int(self.p["prompt_bytes"])),
                    preference=_simplex(self.rng), reward=float(self.rng.uniform(5, 10)),
                    app=str(self.rng.choice(APPS)), request_id=rid,
                )  # fmt: skip
                try:
                    stub.ReportOutcome(req, timeout=5.0)
                except grpc.RpcError:
                    self.done["errors"] += 1
                self.done["actions"] += 1
        return self.done
