"""sim_ric.emulator: the pure core of the live emulator (no broker needed)."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from agentnet.intents import LabelledIntent
from agentnet.network import generate_network
from agentnet.optimum import build_search_space, exact_optimum
from servicekit import codec
from sim_ric.emulator import Emulator, EmulatorConfig

INTENTS = [
    LabelledIntent(prompt="render my VR scene now", s=(0.1, 0.1, 0.6, 0.2), app="immersive"),
    LabelledIntent(prompt="summarise lab results", s=(0.15, 0.35, 0.15, 0.35), app="critical"),
    LabelledIntent(prompt="write a report with figures", s=(0.5, 0.3, 0.1, 0.1), app="content"),
]
MINILM_FEE = 0.01 * 22.7e6 / 1e8  # MODEL.md: 0.01 per 100 M parameters


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(seed: int = 3, **kw) -> tuple[Emulator, Clock]:
    clock = Clock()
    cfg = EmulatorConfig(seed=seed, run_id="t", pending_timeout_s=10.0, **kw)
    return Emulator(INTENTS, cfg, clock=clock, wall_clock_ns=lambda: 42), clock


def usable_chain(emu: Emulator, pick: int = 0) -> list[int]:
    return [int(emu.net.agents_of_type(t, usable=True)[pick]) for t in emu.chain_types]


def decision(rid: str, chain, **kw) -> bytes:
    return codec.encode(codec.ControlDecision(request_id=rid, chain=chain, **kw))


# ---- serving --------------------------------------------------------------------------
def test_valid_decision_is_scored_under_the_true_vector_with_the_fee():
    emu, _ = make()
    req = emu.new_request()
    true_s = emu.pending[req.request_id].true_vector
    chain = usable_chain(emu)
    out = emu.handle_control(decision(req.request_id, chain, elam="minilm", predicted=[0.25] * 4))
    assert (out.accepted, out.resolved, out.code) == (True, True, "served")
    assert out.request_id == req.request_id
    assert (out.prompt, out.app, list(out.chain), out.elam) == (
        req.prompt,
        req.app,
        chain,
        "minilm",
    )
    # Factors and Q: what the model gives for this chain (the decision is not altered).
    # Episode bonus: 10 * Q*_s - F(kappa) with Q*_s under the TRUE vector (MODEL.md).
    util = _utilities(out)
    assert math.isclose(out.Q_subjective, float(np.dot(true_s, util)), rel_tol=1e-9)
    assert math.isclose(out.reward, 10 * out.Q_subjective - MINILM_FEE, rel_tol=1e-12)
    assert out.feasible and out.reason == "served"
    assert emu.pending == {}


def _utilities(out) -> np.ndarray:
    """Weber-Fechner utilities of MODEL.md, computed here from the outcome's factors."""
    c_th, c_ref, l_max, l_ref = 0.02, 0.25, 10.0, 0.05
    u_c = np.clip(math.log(out.C / c_th) / math.log(c_ref / c_th), 0, 1)
    u_b = 1 - np.clip(math.log10(out.B / 1e-5) / 4, 0, 1)
    u_l = np.clip(math.log(l_max / out.L) / math.log(l_max / l_ref), 0, 1)
    u_p = 1 - np.clip(math.log10(out.P_outage / 1e-3) / 3, 0, 1)
    return np.array([u_c, u_b, u_l, u_p])


def test_no_elam_means_no_fee():
    emu, _ = make()
    req = emu.new_request()
    out = emu.handle_control(decision(req.request_id, usable_chain(emu)))
    assert out.code == "served"
    assert math.isclose(out.reward, 10 * out.Q_subjective, rel_tol=1e-12)


def test_the_optimal_chain_scores_one_and_others_at_most_one():
    emu, _ = make()
    req = emu.new_request()
    s = emu.pending[req.request_id].true_vector
    opt = exact_optimum(build_search_space(emu.net), s, fees=emu.fees, cfg=emu.net.cfg)
    out = emu.handle_control(decision(req.request_id, list(opt.chain), elam="minilm"))
    assert math.isclose(out.normalized_score, 1.0, abs_tol=1e-12)
    assert math.isclose(out.reward, opt.r_episode, rel_tol=1e-12)
    # A costlier E-LAM on the same chain scores below 1 by exactly its extra fee.
    req2 = emu.new_request()
    s2 = emu.pending[req2.request_id].true_vector
    opt2 = exact_optimum(build_search_space(emu.net), s2, fees=emu.fees, cfg=emu.net.cfg)
    out2 = emu.handle_control(decision(req2.request_id, list(opt2.chain), elam="smollm2"))
    span = opt2.r_episode - opt2.random_mean
    extra = 0.01 * (134.5e6 - 22.7e6) / 1e8
    assert math.isclose(out2.normalized_score, 1.0 - extra / span, rel_tol=1e-9)


def test_crashed_agent_is_served_but_infeasible():
    emu, _ = make()
    req = emu.new_request()
    chain = usable_chain(emu)
    emu.net.available[chain[1]] = False
    out = emu.handle_control(decision(req.request_id, chain))
    assert (out.accepted, out.resolved, out.code, out.feasible) == (True, True, "served", False)
    assert "unavailable" in out.reason
    assert out.Q_subjective == -1.0  # an infeasible chain scores -1 (MODEL.md)


def test_true_vector_never_leaves_in_the_request():
    emu, _ = make()
    req = emu.new_request()
    s = emu.pending[req.request_id].true_vector
    data = codec.encode(req)
    for w in set(s):
        assert struct.pack("<d", w) not in data
        assert struct.pack("<f", w) not in data
    assert {f.name for f, _ in req.ListFields()} <= {
        "request_id",
        "prompt",
        "app",
        "chain_types",
        "arrival_rate",
        "timestamp_ns",
    }


# ---- bad input: refused, counted, nothing pending lost ---------------------------------
def _bad_inputs(emu: Emulator, rid: str) -> list[tuple[bytes, str, str]]:
    chain = usable_chain(emu)
    wrong_type = next(i for i in range(emu.net.n_agents) if emu.net.types[i] != 1)
    return [
        (b"\x00\x01garbage\xff", "garbage", "garbage bytes"),
        (codec.encode(emu.state()), "wrong_message_type", "expected a control decision"),
        (decision("", chain), "missing_field", "request_id"),
        (codec.encode(codec.ControlDecision(request_id=rid)), "missing_field", "decision.chain"),
        (decision("no-such-id", chain), "unknown_request", "unknown request id 'no-such-id'"),
        (decision(rid, [chain[0], chain[1], 10_000]), "agent_out_of_range", "10000"),
        (decision(rid, chain[:2]), "wrong_chain_length", "chain has 2 agents"),
        (decision(rid, [*chain, chain[0]]), "wrong_chain_length", "chain has 4 agents"),
        (decision(rid, [wrong_type, *chain[1:]]), "wrong_step_type", f"agent {wrong_type}"),
        (decision(rid, chain, elam="gpt-9"), "unknown_elam", "unknown E-LAM 'gpt-9'"),
        (decision(rid, chain, predicted=[0.5, 0.5]), "invalid_predicted", "4 entries"),
        (decision(rid, chain, predicted=[0.9, 0.9, 0.1, 0.1]), "invalid_predicted", "sums"),
    ]


def test_each_bad_input_gets_its_reason_and_the_request_stays_decidable():
    emu, _ = make()
    req = emu.new_request()
    rid = req.request_id
    bad = _bad_inputs(emu, rid)
    for payload, code, text in bad:
        out = emu.handle_control(payload)
        assert (out.accepted, out.resolved, out.code) == (False, False, code), out
        assert text in out.reason, (code, out.reason)
        assert math.isnan(out.normalized_score) and math.isnan(out.reward)
        assert rid in emu.pending, f"{code} lost the pending request"
    # Refusals that name the pending request say it is still pending.
    assert (
        emu.pending[rid].refused
        == sum(
            1 for _, c, _ in bad if c not in ("garbage", "wrong_message_type", "unknown_request")
        )
        - 1
    )  # the decision without request id names no request
    counts = emu.counters()
    for _, code, _ in bad:
        assert counts[f"outcome.{code}"] == sum(1 for _, c, _ in bad if c == code)
    out = emu.handle_control(decision(rid, usable_chain(emu), elam="minilm"))
    assert out.code == "served" and out.accepted
    dup = emu.handle_control(decision(rid, usable_chain(emu)))
    assert (dup.accepted, dup.code) == (False, "duplicate")
    assert "already decided (served)" in dup.reason
    assert emu.counters()["decisions"] == len(bad) + 2


def test_refusal_of_a_pending_request_says_it_is_still_pending():
    emu, _ = make()
    rid = emu.new_request().request_id
    out = emu.handle_control(decision(rid, [0]))
    assert out.reason.endswith(f"request {rid} is still pending")
    assert out.prompt and out.app  # the outcome still identifies the request


def test_xapp_rejection_settles_the_request():
    emu, _ = make()
    rid = emu.new_request().request_id
    out = emu.handle_control(
        codec.encode(codec.ControlDecision(request_id=rid, rejection="no usable chain"))
    )
    assert (out.accepted, out.resolved, out.code) == (False, True, "rejected_by_xapp")
    assert out.reason == "rejected by xApp: no usable chain"
    assert rid not in emu.pending
    again = emu.handle_control(decision(rid, usable_chain(emu)))
    assert again.code == "duplicate" and "rejected_by_xapp" in again.reason


# ---- expiry, shutdown ------------------------------------------------------------------
def test_pending_requests_expire_after_the_timeout():
    emu, clock = make()
    r1 = emu.new_request().request_id
    clock.t += 6
    r2 = emu.new_request().request_id
    clock.t += 4.5  # r1 is 10.5 s old, r2 4.5 s
    outs = emu.expire()
    assert [o.request_id for o in outs] == [r1]
    assert (outs[0].accepted, outs[0].resolved, outs[0].code) == (False, True, "expired")
    assert outs[0].reason.startswith("expired: no decision")
    assert list(emu.pending) == [r2]
    late = emu.handle_control(decision(r1, usable_chain(emu)))
    assert (late.code, late.resolved) == ("late", False)
    assert emu.next_deadline() == pytest.approx(clock.t + 5.5)


def test_postpone_pushes_deadlines_back():
    emu, clock = make()
    rid = emu.new_request().request_id
    emu.postpone(30.0)
    clock.t += 35
    assert emu.expire() == []
    clock.t += 6
    assert [o.request_id for o in emu.expire()] == [rid]


def test_shutdown_settles_everything_pending():
    emu, _ = make()
    ids = [emu.new_request().request_id for _ in range(3)]
    outs = emu.shutdown()
    assert sorted(o.request_id for o in outs) == sorted(ids)
    assert all(o.code == "shutdown" and o.resolved and not o.accepted for o in outs)
    assert emu.pending == {}


def test_resolved_memory_is_bounded():
    emu, _ = make(resolved_memory=2)
    ids = [emu.new_request().request_id for _ in range(3)]
    for rid in ids:
        emu.handle_control(decision(rid, usable_chain(emu)))
    assert emu.handle_control(decision(ids[0], usable_chain(emu))).code == "unknown_request"
    assert emu.handle_control(decision(ids[2], usable_chain(emu))).code == "duplicate"


# ---- state and dynamics ------------------------------------------------------------------
def test_tick_advances_state_and_changes_the_network():
    emu, _ = make()
    s0 = emu.state()
    s1 = emu.tick()
    assert (s0.seq, s1.seq) == (0, 1)
    assert s1.arrival_rate != s0.arrival_rate
    assert [a.observations for a in s1.agents] == [
        o + 1 for o in [a.observations for a in s0.agents]
    ]
    assert [link.ber for link in s1.links] != [link.ber for link in s0.links]


def test_decisions_are_scored_on_the_current_state():
    emu, _ = make()
    rid = emu.new_request().request_id
    for _ in range(5):
        emu.tick()
    chain = usable_chain(emu)
    out = emu.handle_control(decision(rid, chain))
    assert math.isclose(out.C, np.prod(emu.net.p_success[chain]) / 3, rel_tol=1e-12)  # eq. 2


def test_same_seed_same_network_users_and_dynamics():
    a, _ = make(seed=9)
    b, _ = make(seed=9)
    c, _ = make(seed=10)
    ref = generate_network(9)
    np.testing.assert_array_equal(a.net.x, ref.x)  # the network of `export-network --seed`
    for emu in (a, b, c):
        for _ in range(4):
            emu.tick()
    assert codec.encode(a.state()) == codec.encode(b.state())
    assert codec.encode(a.state()) != codec.encode(c.state())
    pa = [a.new_request().prompt for _ in range(20)]
    pb = [b.new_request().prompt for _ in range(20)]
    assert pa == pb
    ga = [a.next_interarrival(2.0) for _ in range(5)]
    assert ga == [b.next_interarrival(2.0) for _ in range(5)]
    assert ga != [c.next_interarrival(2.0) for _ in range(5)]
    assert np.mean([a.next_interarrival(4.0) for _ in range(4000)]) == pytest.approx(0.25, rel=0.1)
    assert a.next_interarrival(0.0) == math.inf


def test_config_validation():
    with pytest.raises(ValueError, match="pending timeout"):
        EmulatorConfig(pending_timeout_s=0)
    with pytest.raises(ValueError, match="reserved"):
        EmulatorConfig(elams={"": 1.0})
    with pytest.raises(ValueError, match="parameter count"):
        EmulatorConfig(elams={"x": -1.0})
    with pytest.raises(ValueError, match="objective"):
        EmulatorConfig(objective="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        Emulator([], EmulatorConfig())


def test_paper_objective_is_used_when_configured():
    emu, _ = make(objective="paper")
    rid = emu.new_request().request_id
    out = emu.handle_control(decision(rid, usable_chain(emu)))
    assert math.isclose(out.reward, out.Q_subjective, rel_tol=1e-12)  # Q*_paper - 0 fee


# ---- intents files ---------------------------------------------------------------------
def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_expiry_follows_creation_order_even_if_the_clock_steps_back():
    emu, clock = make()
    first = emu.new_request().request_id
    clock.t -= 5  # a clock that steps back must not reorder deadlines
    second = emu.new_request().request_id
    assert emu.pending[second].deadline == emu.pending[first].deadline
    clock.t += 5 + 10
    assert [o.request_id for o in emu.expire()] == [first, second]
    assert emu.next_deadline() == math.inf


# ---- re-announcement (xApp replicas) ---------------------------------------------------
def test_unsettled_requests_are_announced_again_until_settled():
    emu, clock = make()
    r1 = emu.new_request().request_id
    clock.t += 2
    r2 = emu.new_request().request_id
    assert emu.stale_requests(clock.t, after=3.0) == []
    clock.t += 1.5  # r1 3.5 s since its announcement, r2 1.5 s
    assert [m.request_id for m in emu.stale_requests(clock.t, after=3.0)] == [r1]
    assert emu.stale_requests(clock.t, after=3.0) == []  # marked announced now
    emu.handle_control(decision(r2, usable_chain(emu)))  # settled: never again
    clock.t += 3.0
    assert [m.request_id for m in emu.stale_requests(clock.t, after=3.0)] == [r1]
    out = emu.handle_control(decision(r1, usable_chain(emu)))
    again = emu.handle_control(decision(r1, usable_chain(emu, 1)))  # a second replica's
    assert out.resolved and not again.resolved and again.code == "duplicate"
