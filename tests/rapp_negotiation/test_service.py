"""The negotiation service against a real Mosquitto: states in, retained policies out.

The scripted negotiator stands in for the LLM (a test aid) and the hard design makes the
expected λ* the closed-form x*; the regulatory unit is the real one (MiniLM)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from support.mqtt import running_mosquitto, sim_in_parts, wait_until

from agentnet.capacity import capacity
from agentnet.network import generate_network
from rapp_negotiation.embedding import shared_minilm
from rapp_negotiation.negotiators import ScriptedNegotiator
from rapp_negotiation.optimizer import Problem, theoretical_consensus
from rapp_negotiation.regulatory import Regulatory
from rapp_negotiation.service import IntentsSource, NegotiationService
from rapp_negotiation.settings import NegoSettings
from servicekit import codec
from servicekit.mqtt import MqttClient, Topics

pytestmark = pytest.mark.slow
NETWORK = "neg"


@pytest.fixture
def broker(tmp_path: Path):
    with running_mosquitto(tmp_path) as b:
        yield b


class Bus:
    """A test client: publishes states, records decoded policies."""

    def __init__(self, url: str):
        self.topics = Topics.for_network(NETWORK)
        self.policies: list[codec.Policy] = []
        self.lock = threading.Lock()
        self.client = MqttClient(url, "nego-tester", reconnect_min_delay_s=0.2)
        self.client.subscribe(self.topics.policy, self._policy)

    def start(self) -> Bus:
        self.client.start()
        assert self.client.wait_connected(10)
        return self

    def _policy(self, topic: str, payload: bytes) -> None:
        with self.lock:
            self.policies.append(codec.decode_policy(payload))

    def state(self, net, seq: int) -> None:
        msg = codec.state_message(net, network=NETWORK, seq=seq, timestamp_ns=seq)
        assert self.client.publish(self.topics.state, codec.encode(msg), qos=1, retain=True)

    def wait_policies(self, n: int) -> list[codec.Policy]:
        def enough():
            with self.lock:
                return list(self.policies) if len(self.policies) >= n else None

        return wait_until(enough, 60, f"{n} policies")


def write_intents(path: Path, targets: list[float], weights: list[float]) -> None:
    rows = [{"name": f"t{i}", "intent": "serve users", "target": t, "weight": w}
            for i, (t, w) in enumerate(zip(targets, weights, strict=True))]  # fmt: skip
    path.write_text(json.dumps({"tenants": rows}))


def expected(net, targets, weights) -> float:
    cap = capacity(net).lambda_cap
    return theoretical_consensus(Problem(tuple(targets), tuple(weights), cap, 0.05 * cap,
                                         0.95 * cap))  # fmt: skip


def start_service(
    broker, tmp_path: Path
) -> tuple[NegotiationService, threading.Event, threading.Thread]:
    intents = tmp_path / "tenants.json"
    write_intents(intents, [3.0, 9.0], [1.0, 2.0])
    settings = NegoSettings(broker=broker.url, network=NETWORK, llm="scripted", design="hard",
                            intents=intents, intents_poll=0.1, arbitral="off",
                            reconnect_min_delay=0.2)  # fmt: skip
    service = NegotiationService(settings, settings.mqtt_client(), ScriptedNegotiator(),
                                 Regulatory(shared_minilm()), None, IntentsSource(intents))  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    return service, stop, thread


def test_states_in_policies_out(broker, tmp_path: Path):
    intents = tmp_path / "tenants.json"
    service, stop, thread = start_service(broker, tmp_path)
    bus = Bus(broker.url).start()
    try:
        net = generate_network(0)
        bus.state(net, 1)
        (first,) = bus.wait_policies(1)
        assert first.network == NETWORK and first.reason == "consensus" and first.state_seq == 1
        assert first.capacity == pytest.approx(capacity(net).lambda_cap, rel=1e-9)
        assert (
            abs(first.arrival_rate - expected(net, [3.0, 9.0], [1.0, 2.0])) <= 5e-3 * first.capacity
        )
        assert first.valid_until_ns == 0

        # An operator changes the business intents: a new negotiation, a new λ*.
        write_intents(intents, [2.0, 4.0], [1.0, 1.0])
        second = bus.wait_policies(2)[1]
        assert second.negotiation_id != first.negotiation_id
        assert abs(second.arrival_rate - 3.0) <= 5e-3 * second.capacity

        # A bad state is a counted drop; a state within the threshold triggers nothing.
        garbage = service.metrics.states.labels("garbage")
        assert bus.client.publish(bus.topics.state, b"\x00junk", qos=1)
        wait_until(lambda: garbage._value.get() == 1, 30, "the garbage state counted")
        bus.state(net, 2)
        wait_until(lambda: service.latest is not None and service.latest.seq == 2, 30, "seq 2")
        assert len(bus.policies) == 2

        # Every agent of a chain type down: λ_cap = 0, the topic halts, admission suspended.
        dead = net.copy()
        dead.available[dead.types == 2] = False
        bus.state(dead, 3)
        third = bus.wait_policies(3)[2]
        assert (third.arrival_rate, third.reason, third.capacity) == (0.0, "no_capacity", 0.0)

        # Capacity back: a new negotiation at the restored capacity.
        bus.state(net, 4)
        fourth = bus.wait_policies(4)[3]
        assert fourth.reason == "consensus" and fourth.arrival_rate == pytest.approx(3.0, abs=0.07)
        assert service.metrics.policies.labels("no_capacity")._value.get() == 1
        statuses = [r.status for r in service.results]
        assert statuses == ["consensus"] * 3
        # Per role and source, the decision counter adds up every negotiation's decisions.
        decisions = service.metrics.decisions
        for role in ("tenant", "mediator"):
            counted = {s: decisions.labels(role, s)._value.get()
                       for s in ("llm", "scripted", "imposed", "fallback")}  # fmt: skip
            assert counted["llm"] == 0
            per = 2 if role == "tenant" else 1
            assert sum(counted.values()) == per * sum(r.rounds for r in service.results)
        assert service.readiness() == {"broker": True, "state": True}
    finally:
        stop.set()
        thread.join(30)
        bus.client.stop()


def state_counts(service: NegotiationService) -> dict[str, float]:
    """``nego_states_total`` by result."""
    return {
        s.labels["result"]: s.value
        for metric in service.metrics.states.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    }


def test_a_large_network_is_followed_through_its_keyframe_and_deltas(broker, tmp_path: Path):
    """sim-ric above its whole-state threshold (lowered to 50 agents, so an 81-agent
    network goes out as a keyframe and deltas) through a real Mosquitto: the service
    observes every delta with its keyframe and negotiates on it; none is a wrong message
    type."""
    service, stop, thread = start_service(broker, tmp_path)
    sim = sim_in_parts(broker.url, NETWORK, tmp_path)
    try:
        bus = Bus(broker.url).start()
        (first,) = bus.wait_policies(1)
        assert first.reason == "consensus" and first.state_seq >= 1 and first.capacity > 0
        wait_until(lambda: state_counts(service).get("observed", 0) >= 3, 30, "3 states observed")
        counts = state_counts(service)
        assert counts["keyframe"] == 1, counts
        assert not {k for k in counts if k not in ("observed", "keyframe", "superseded",
                                                   "awaiting_keyframe", "dropped_no_keyframe")}, counts  # fmt: skip
        assert service.latest is not None and service.latest.n_agents == 81
        assert '"keyframe_published"' in sim.logs()
        bus.client.stop()
    finally:
        sim.terminate()
        stop.set()
        thread.join(30)


def test_a_delta_before_its_keyframe_waits_for_it(broker, tmp_path: Path):
    """A delta whose keyframe the service does not hold is counted and logged, not
    observed; when the keyframe's chunks arrive the service resynchronises on that delta;
    a delta of a keyframe it never gets is counted and dropped."""
    service, stop, thread = start_service(broker, tmp_path)
    bus = Bus(broker.url).start()
    try:
        net = generate_network(0)
        key = codec.keyframe_message(net, network=NETWORK)
        chunks = codec.keyframe_chunks(key, 2_000)
        assert len(chunks) > 1
        kid = chunks[0].keyframe_id
        delta = codec.delta_message(net, network=NETWORK, seq=7, timestamp_ns=7, keyframe=kid)
        assert bus.client.publish(bus.topics.state, codec.encode(codec.delta_chunk(delta)), qos=1)
        wait_until(lambda: state_counts(service).get("awaiting_keyframe") == 1, 30, "a wait")
        assert service.latest is None and not bus.policies
        for c in chunks:
            assert bus.client.publish(bus.topics.keyframe(c.index), codec.encode(c), qos=1)
        (first,) = bus.wait_policies(1)
        assert first.state_seq == 7
        assert first.capacity == pytest.approx(capacity(net).lambda_cap, rel=1e-9)
        counts = state_counts(service)
        assert (counts["keyframe"], counts["observed"]) == (
            1,
            1,
        ) and "wrong_message_type" not in counts
        # A delta of another keyframe: counted, never observed; the next one of the held
        # keyframe is observed again.
        other = codec.delta_message(net, network=NETWORK, seq=8, timestamp_ns=8, keyframe=kid ^ 1)
        assert bus.client.publish(bus.topics.state, codec.encode(codec.delta_chunk(other)), qos=1)
        wait_until(lambda: state_counts(service).get("awaiting_keyframe") == 2, 30, "a 2nd wait")
        nxt = codec.delta_message(net, network=NETWORK, seq=9, timestamp_ns=9, keyframe=kid)
        assert bus.client.publish(bus.topics.state, codec.encode(codec.delta_chunk(nxt)), qos=1)
        wait_until(lambda: service.latest is not None and service.latest.seq == 9, 30, "seq 9")
        assert state_counts(service)["observed"] == 2
    finally:
        stop.set()
        thread.join(30)
        bus.client.stop()


def test_a_bad_intents_file_keeps_the_previous_tenants(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text("tenants:\n  - {name: a, intent: x, target: 2}\n")
    source = IntentsSource(path)
    path.write_text("tenants: [{name: a, intent: x}]\n")  # no target
    reloaded, error = source.changed()
    assert not reloaded and "exactly one of target" in error
    assert [t.name for t in source.tenants] == ["a"]
    path.write_text(
        "tenants:\n  - {name: b, intent: y, target: 3}\n  - {name: c, intent: z, target: 1}\n"
    )
    assert source.changed() == (True, "")
    assert [t.name for t in source.tenants] == ["b", "c"]
    assert source.changed() == (False, "")
