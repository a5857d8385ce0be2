"""The action-space proposer on the xApp's serving path: decisions on the reduced graph,
the profile computed once per state and chain types, nothing changed when it is off."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest
from pydantic import ValidationError
from support.loop import perturbed_copy, unit_policy

from agentnet.network import generate_network
from lameta_proto.v1 import network_pb2
from servicekit import codec
from xapp_composer import live_state
from xapp_composer.control import ControlCore, chain_feasible
from xapp_composer.runtime import PolicyRuntime
from xapp_composer.settings import XappSettings
from xapp_composer.translation import Translation

N_AGENTS = 300
K = 2
TYPES = (1, 2, 3)


class VectorRapp:
    """An rApp answering every request with the vector set last (the real one runs in the
    end-to-end tests; here the vector is the input under test)."""

    def __init__(self, vector=(0.25, 0.25, 0.25, 0.25)):
        self.vector = tuple(vector)

    def translate(self, prompt: str, elam: str, app: str, request_id: str) -> Translation:
        return Translation(self.vector, elam or "minilm", calibrated=True)  # type: ignore[arg-type]

    def served_models(self) -> frozenset[str] | None:
        return None


@pytest.fixture(scope="module")
def runtime() -> PolicyRuntime:
    return PolicyRuntime(unit_policy())


@pytest.fixture(scope="module")
def net():
    return generate_network(3, n_agents=N_AGENTS)


def state_payload(net, seq: int = 1) -> bytes:
    msg = codec.state_message(net, network="default", seq=seq, timestamp_ns=time.time_ns())
    return codec.encode(msg)


def request(rid: str, types=TYPES) -> bytes:
    return codec.encode(
        network_pb2.ServiceRequest(
            request_id=rid,
            prompt="render my headset scene with no lag",
            app="immersive",
            chain_types=types,
            arrival_rate=1.0,
        )
    )


def vectors(n: int, seed: int = 0) -> list[tuple[float, ...]]:
    rng = np.random.default_rng(seed)
    return [tuple(float(x) for x in rng.dirichlet(np.ones(4))) for _ in range(n)]


def inside(chain, sets) -> bool:
    return len(chain) == len(sets) and all(a in s for a, s in zip(chain, sets, strict=True))


def test_decisions_lie_in_the_proposed_sets_and_are_feasible(runtime, net) -> None:
    on = ControlCore(runtime, VectorRapp(), proposer_k=K, proposer_min_agents=N_AGENTS)
    off = ControlCore(runtime, VectorRapp())
    on.on_state(state_payload(net))
    off.on_state(state_payload(net))
    profile = on.state.profile(TYPES)
    assert all(len(c) > 10 * K for c in profile.candidates)  # a real reduction
    outside = 0
    for i, v in enumerate(vectors(12)):
        on.translator.vector = off.translator.vector = v
        res = on.handle_request(request(f"on-{i}"))
        assert res.status == "decided", res.decision.rejection
        sets = profile.propose(v, K)
        assert all(len(s) <= K for s in sets)
        assert inside(res.decision.chain, sets)
        assert chain_feasible(on.state.net, res.decision.chain, TYPES) == ""
        assert set(res.timings) == {"translate", "propose", "compose"}
        whole = off.handle_request(request(f"off-{i}"))
        if whole.status == "decided" and not inside(whole.decision.chain, sets):
            outside += 1
    # The whole-graph policy picks outside the sets: the reduction is what kept them in.
    assert outside > 0
    snap = on.metrics.snapshot()
    assert snap["proposals"] == 12 and "proposals" not in off.metrics.snapshot()
    # Infeasible chains of the reduced graph were repaired inside it.
    assert snap.get("repaired", 0) >= 1
    assert on.metrics.registry.get_sample_value("xapp_proposals_total") == 12
    # The loop observes every timing under its stage; the propose stage exists.
    count = {"stage": "propose"}
    assert on.metrics.registry.get_sample_value("xapp_stage_latency_seconds_count", count) == 0


def test_off_or_below_the_size_threshold_nothing_changes(runtime, net) -> None:
    cores = {
        "default": ControlCore(runtime, VectorRapp()),
        "k0": ControlCore(runtime, VectorRapp(), proposer_k=0, proposer_min_agents=1),
        "small": ControlCore(runtime, VectorRapp(), proposer_k=K, proposer_min_agents=N_AGENTS + 1),
    }
    for core in cores.values():
        core.on_state(state_payload(net))
    for i, v in enumerate(vectors(8, seed=1)):
        out = {}
        for name, core in cores.items():
            core.translator.vector = v
            res = core.handle_request(request(f"r-{i}"))
            assert "propose" not in res.timings
            out[name] = (res.status, tuple(res.decision.chain), res.decision.rejection)
        assert out["k0"] == out["default"] and out["small"] == out["default"]
    for core in cores.values():
        assert core.state.profiles == {} and "proposals" not in core.metrics.snapshot()


def test_the_profile_is_computed_once_per_state_and_chain_types(runtime, net, monkeypatch) -> None:
    computed = []
    real = live_state.profile_state

    def counted(state):
        computed.append(state)
        return real(state)

    monkeypatch.setattr(live_state, "profile_state", counted)
    core = ControlCore(runtime, VectorRapp(), proposer_k=K, proposer_min_agents=N_AGENTS)
    first = core.on_state(state_payload(net, seq=1))
    assert len(computed) == 1 and set(first.profiles) == {TYPES}  # with the state, ahead
    profile = first.profiles[TYPES]
    for i, v in enumerate(vectors(3, seed=2)):
        core.translator.vector = v
        assert core.handle_request(request(f"a-{i}")).status == "decided"
    assert len(computed) == 1 and core.state.profiles[TYPES] is profile

    # New chain types from several deciders at once: profiled once, on first use.
    results: list = []

    def decide(w: int) -> None:
        for j in range(5):
            results.append(core.handle_request(request(f"t-{w}-{j}", types=(4, 1))))

    threads = [threading.Thread(target=decide, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(computed) == 2 and set(core.state.profiles) == {TYPES, (4, 1)}
    sets = core.state.profiles[(4, 1)].propose(core.translator.vector, K)
    assert len(results) == 20
    assert all(r.status == "decided" and inside(r.decision.chain, sets) for r in results)

    # A new state: profiled again, and what it no longer has is no longer proposed.
    core.translator.vector = (0.25, 0.25, 0.25, 0.25)
    gone = [int(a) for s in profile.propose(core.translator.vector, K) for a in s]
    nxt = generate_network(3, n_agents=N_AGENTS)
    nxt.available[gone] = False
    second = core.on_state(state_payload(nxt, seq=2))
    assert second is core.state and len(computed) == 4  # both chain types, ahead
    assert second.profiles[TYPES] is not profile
    assert not set(gone) & set(np.concatenate(second.profiles[TYPES].candidates).tolist())
    res = core.handle_request(request("after"))
    assert res.status == "decided" and not set(res.decision.chain) & set(gone)
    assert inside(res.decision.chain, second.profiles[TYPES].propose(core.translator.vector, K))


def test_a_new_policy_gets_the_state_profiled_again(runtime, net, tmp_path) -> None:
    other = PolicyRuntime(perturbed_copy(unit_policy(), tmp_path / "v2"))
    core = ControlCore(runtime, VectorRapp(), proposer_k=K, proposer_min_agents=N_AGENTS)
    core.on_state(state_payload(net))
    core.handle_request(request("t", types=(4, 1)))
    before = dict(core.state.profiles)
    core.install_runtime(other)
    after = core.state.profiles
    assert set(after) == {TYPES, (4, 1)}  # ready before the swap, for every chain type
    assert all(after[t] is not before[t] for t in after)
    assert all(after[t].chain_types == before[t].chain_types for t in after)
    res = core.handle_request(request("after"))
    assert res.decision.policy_version == other.version
    assert inside(res.decision.chain, after[TYPES].propose(core.translator.vector, K))


def test_a_negative_k_is_a_clear_error(runtime) -> None:
    with pytest.raises(ValidationError, match="proposer_k"):
        XappSettings(proposer_k=-1)
    with pytest.raises(ValidationError, match="proposer_min_agents"):
        XappSettings(proposer_min_agents=0)
    with pytest.raises(ValueError, match=re.escape("proposer_k must be 0 (off) or more, got -2")):
        ControlCore(runtime, VectorRapp(), proposer_k=-2)
    assert XappSettings().proposer_k == 0  # off unless asked for
