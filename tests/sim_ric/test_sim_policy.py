"""Enforcement of the negotiated policy (NEGOTIATION.md "Enforcement") by the emulator:
the core (no broker) and the service against a real Mosquitto."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from support.mqtt import MOSQUITTO, Mosquitto, Recorder, ServiceProcess, usable_chain, wait_until

from agentnet.intents import LabelledIntent
from servicekit import codec
from servicekit.mqtt import Topics
from sim_ric.emulator import RESOLVING_CODES, Emulator, EmulatorConfig

INTENTS = [
    LabelledIntent(prompt="render my VR scene now", s=(0.1, 0.1, 0.6, 0.2), app="immersive"),
    LabelledIntent(prompt="write a report with figures", s=(0.5, 0.3, 0.1, 0.1), app="content"),
]


class Clocks:
    """Injectable monotonic and wall clocks."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.ns = 5_000_000_000

    def mono(self) -> float:
        return self.t

    def wall(self) -> int:
        return self.ns


def make(network: str = "default") -> tuple[Emulator, Clocks]:
    clocks = Clocks()
    cfg = EmulatorConfig(network=network, seed=4, run_id="p", pending_timeout_s=10.0)
    return Emulator(INTENTS, cfg, clock=clocks.mono, wall_clock_ns=clocks.wall), clocks


def policy(rate: float, *, ts: int = 1, network: str = "default", **kw) -> bytes:
    return codec.encode(
        codec.Policy(network=network, negotiation_id="g1", arrival_rate=rate, timestamp_ns=ts, **kw)
    )


def usable_chain_of(emu: Emulator) -> list[int]:
    return [int(emu.net.agents_of_type(t, usable=True)[0]) for t in emu.chain_types]


def served_latency(emu: Emulator, chain: list[int]) -> float:
    req = emu.new_request()
    out = emu.handle_control(
        codec.encode(codec.ControlDecision(request_id=req.request_id, chain=chain))
    )
    assert out.code == "served"
    return out.L


# ---- the core ---------------------------------------------------------------------------
def test_policy_replaces_lambda_from_the_next_state_on():
    emu, _ = make()
    emu.tick()
    offered = emu.net.arrival_rate
    assert emu.apply_policy(policy(0.4)) == "applied"
    assert emu.state().arrival_rate == offered  # not before the next tick
    for _ in range(3):
        assert emu.tick().arrival_rate == 0.4
    assert emu.request_rate_scale() == pytest.approx(0.4)
    assert not emu.suspended
    assert emu.counters()["policy.applied"] == 1


def test_halving_lambda_lowers_the_latency_of_the_same_chain():
    emu, _ = make()
    emu.apply_policy(policy(2.0))
    emu.tick()
    chain = usable_chain_of(emu)
    before = served_latency(emu, chain)
    emu.apply_policy(policy(1.0, ts=2))
    emu.tick()
    after = served_latency(emu, chain)
    assert after < before


def test_zero_suspends_admission_with_suspended_outcomes():
    emu, _ = make()
    emu.apply_policy(policy(0.0))
    state = emu.tick()
    assert emu.suspended and emu.request_rate_scale() == 0.0
    assert state.arrival_rate > 0  # the offered λ stays in the state
    out = emu.refuse_suspended()
    assert (out.accepted, out.resolved, out.code) == (False, True, "suspended")
    assert "suspended" in out.reason and "g1" in out.reason
    assert out.prompt and out.app
    assert not emu.pending and "suspended" in RESOLVING_CODES
    assert math.isnan(out.Q)
    late = emu.handle_control(
        codec.encode(codec.ControlDecision(request_id=out.request_id, chain=[0, 1, 2]))
    )
    assert late.code == "duplicate"  # the refused request is settled


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x00\xffnot protobuf", "garbage"),
        (codec.encode(codec.Outcome(code="served")), "wrong_message_type"),
        (policy(-1.0), "invalid_field"),
        (policy(math.nan), "invalid_field"),
        (codec.encode(codec.Policy(network="default", arrival_rate=1.0)), "missing_field"),
        (policy(1.0, network="other"), "wrong_network"),
        (policy(1.0, valid_until_ns=4_000_000_000), "expired"),
    ],
)
def test_bad_policies_are_counted_drops_and_change_nothing(payload, code):
    emu, _ = make()
    emu.apply_policy(policy(0.7, ts=10))
    assert emu.apply_policy(payload) == code
    assert emu.policy is not None and emu.policy.arrival_rate == 0.7
    assert emu.tick().arrival_rate == 0.7
    assert emu.counters()[f"policy.{code}"] == 1


def test_an_older_policy_is_stale_and_an_empty_payload_withdraws_it():
    emu, _ = make()
    emu.apply_policy(policy(0.7, ts=10))
    assert emu.apply_policy(policy(3.0, ts=9)) == "stale"
    assert emu.apply_policy(policy(0.9, ts=10)) == "applied"  # a retained redelivery
    assert emu.apply_policy(b"") == "cleared"
    assert emu.policy is None and emu.request_rate_scale() == 1.0
    emu.tick()
    assert emu.net.arrival_rate != 0.9  # the dynamics' λ again


def test_a_policy_lapses_after_its_validity():
    emu, clocks = make()
    emu.apply_policy(policy(0.0, valid_until_ns=clocks.ns + 100))
    assert emu.suspended
    clocks.ns += 200
    assert not emu.suspended
    assert emu.policy is None and emu.counters()["policy.lapsed"] == 1


# ---- the service over a real broker -----------------------------------------------------
@pytest.fixture
def broker(tmp_path: Path):
    assert Path(MOSQUITTO).exists(), "mosquitto is required"
    b = Mosquitto(tmp_path).start()
    yield b
    b.stop()


@pytest.mark.slow
def test_service_enforces_a_retained_policy_and_suspension(broker, tmp_path):
    rec = Recorder(broker.url).start()
    topics = Topics.for_network("default")
    svc = ServiceProcess(
        ["--broker", broker.url, "--seed", "5", "--rate", "20", "--state-period", "0.2",
         "--pending-timeout", "300", "--duration", "120"],
        tmp_path,
    )  # fmt: skip
    try:
        wait_until(lambda: len(rec.snapshot()[1]) >= 5, 30, "requests")
        # A retained policy: the states carry λ* and the served chain feels it.
        assert rec.client.publish(topics.policy, policy(0.25, ts=1), qos=1, retain=True)
        wait_until(lambda: rec.latest_state().arrival_rate == 0.25, 30, "λ* in the state")
        req = rec.snapshot()[1][-1]
        state = rec.latest_state()
        rec.decide(req.request_id, usable_chain(state, list(req.chain_types)))
        out = rec.wait_outcome(lambda o: o.request_id == req.request_id, 30, "served")
        assert out.code == "served"
        # A bad policy is dropped and logged; the service keeps λ*.
        assert rec.client.publish(topics.policy, b"junk", qos=1)
        wait_until(lambda: "policy_dropped" in svc.logs(), 30, "policy_dropped log")
        # Suspension: requests are refused with reason suspended, none is published.
        assert rec.client.publish(topics.policy, policy(0.0, ts=2), qos=1, retain=True)
        wait_until(lambda: any(o.code == "suspended" for o in rec.snapshot()[2]), 30, "suspended")
        n_requests = len(rec.snapshot()[1])
        wait_until(
            lambda: sum(o.code == "suspended" for o in rec.snapshot()[2]) >= 5, 30, "5 refusals"
        )
        assert len(rec.snapshot()[1]) <= n_requests + 1  # at most one already in flight
        # Lifting the suspension: requests flow again at λ* = 1.
        assert rec.client.publish(topics.policy, policy(1.0, ts=3), qos=1, retain=True)
        wait_until(lambda: len(rec.snapshot()[1]) >= n_requests + 3, 30, "requests again")
        events = svc.log_events()
        applied = [e for e in events if e.get("event") == "policy_applied"]
        assert [e["arrival_rate"] for e in applied][:3] == [0.25, 0.0, 1.0]
        assert any(e.get("event") == "policy_dropped" and e["code"] == "garbage" for e in events)
    finally:
        svc.terminate()
        rec.stop()
