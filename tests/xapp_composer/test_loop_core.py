"""The xApp's decision core without a broker: states, requests, rejections, fallbacks,
duplicates, repairs and policy swaps (``xapp_composer.control`` and the modules it
composes: ``translation``, ``live_state``, ``ledger``)."""

from __future__ import annotations

import gc
import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from support.loop import perturbed_copy, unit_policy

from agentnet import qoe
from agentnet.chain import chain_factors
from agentnet.intents import APP_PROFILES
from agentnet.network import generate_network
from agentnet.optimum import greedy_chain
from lameta_proto.v1 import network_pb2
from servicekit import codec
from xapp_composer import live_state
from xapp_composer.artefacts import encoder_path, sha256_file
from xapp_composer.control import (
    MALFORMED_REQUEST,
    NO_FEASIBLE_CHAIN,
    NO_STATE,
    STALE_STATE,
    ControlCore,
    chain_feasible,
)
from xapp_composer.ledger import DecisionLedger
from xapp_composer.runtime import PolicyRuntime
from xapp_composer.translation import FallbackVectors, Translation, TranslationFailed

VEC = (0.1, 0.2, 0.5, 0.2)


@dataclass
class StubRapp:
    """A stand-in for the rApp with scripted answers (the real one runs in the e2e tests)."""

    vector: tuple[float, ...] = VEC
    models: frozenset[str] | None = None
    fail: str = ""
    rapp_fallback: bool = False
    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def translate(self, prompt: str, elam: str, app: str, request_id: str) -> Translation:
        self.calls.append((elam, app, request_id))
        if self.fail:
            raise TranslationFailed(self.fail, "scripted failure")
        return Translation(
            self.vector,
            elam or "minilm",
            calibrated=True,  # type: ignore[arg-type]
            fallback=self.rapp_fallback,
        )

    def served_models(self) -> frozenset[str] | None:
        return self.models


@pytest.fixture(scope="module")
def runtime() -> PolicyRuntime:
    return PolicyRuntime(unit_policy())


def state_payload(net, seq: int = 1, ts: int | None = None, network: str = "default") -> bytes:
    ts = time.time_ns() if ts is None else ts
    return codec.encode(codec.state_message(net, network=network, seq=seq, timestamp_ns=ts))


def request(rid: str = "r-1", app: str = "immersive", types=(1, 2, 3), **kw) -> bytes:
    fields = {
        "request_id": rid,
        "prompt": "render my headset scene with no lag",
        "app": app,
        "chain_types": types,
        "arrival_rate": 1.0,
        **kw,
    }
    return codec.encode(network_pb2.ServiceRequest(**fields))


def make_core(runtime, rapp=None, **kw) -> ControlCore:
    return ControlCore(runtime, rapp or StubRapp(), **kw)


def test_no_state_yet_is_an_explicit_rejection(runtime) -> None:
    core = make_core(runtime)
    res = core.handle_request(request("a"))
    assert res.status == "rejected" and res.request_id == "a"
    assert res.decision.rejection.startswith(NO_STATE + ":")
    assert res.decision.policy_version == runtime.version and not res.decision.chain


def test_decision_on_a_state(runtime) -> None:
    rapp = StubRapp()
    core = make_core(runtime, rapp)
    net = generate_network(7)
    net.available[[1, 6]] = False
    assert core.on_state(state_payload(net, seq=5)) is not None
    res = core.handle_request(request("b"))
    d = res.decision
    assert res.status == "decided" and d.request_id == "b" and not d.rejection
    assert [int(net.types[a]) for a in d.chain] == [1, 2, 3]
    assert all(net.available[a] for a in d.chain)
    assert np.allclose(d.predicted, VEC) and d.elam in runtime.elam_ids and d.calibrated
    assert not d.fallback and d.state_seq == 5 and d.policy_version == runtime.version
    assert chain_feasible(net, list(d.chain), (1, 2, 3)) == ""
    assert rapp.calls and rapp.calls[0][1:] == ("immersive", "b")
    assert set(res.timings) == {"translate", "compose"}


def test_a_state_round_trip_rebuilds_the_same_network(runtime) -> None:
    core = make_core(runtime)
    net = generate_network(11)
    live = core.on_state(state_payload(net))
    assert np.allclose(
        live.net.route_ber(np.arange(81), np.arange(81)),
        net.route_ber(np.arange(81), np.arange(81)),
    )
    assert np.allclose(live.net.agent_latency(), net.agent_latency())
    assert live.net.cfg.c_th == net.cfg.c_th and live.net.cfg.l_max == net.cfg.l_max


def test_stale_state_is_rejected_not_decided_blind(runtime) -> None:
    now = [time.time_ns()]
    core = make_core(runtime, max_state_age_s=5.0, wall_clock_ns=lambda: now[0])
    core.on_state(state_payload(generate_network(3), ts=now[0]))
    assert core.handle_request(request("fresh")).status == "decided"
    now[0] += int(6e9)
    res = core.handle_request(request("old"))
    assert res.status == "rejected" and res.decision.rejection.startswith(STALE_STATE)
    assert "6.0 s old" in res.decision.rejection


def test_older_or_repeated_states_do_not_replace_the_serving_one(runtime) -> None:
    core = make_core(runtime)
    net = generate_network(3)
    ts = time.time_ns()
    core.on_state(state_payload(net, seq=9, ts=ts))
    assert core.on_state(state_payload(net, seq=9, ts=ts)) is None  # a retained redelivery
    assert core.on_state(state_payload(net, seq=4, ts=ts - 10)) is None
    assert core.state.seq == 9
    assert core.metrics.snapshot()["states{out_of_order}"] == 2
    # An emulator restart starts its sequence again, with newer timestamps: accepted.
    assert core.on_state(state_payload(net, seq=1, ts=ts + 10)) is not None


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x00garbage\xff", "malformed_garbage"),
        (codec.encode(codec.ServiceRequest(request_id="x")), "malformed_wrong_message_type"),
    ],
)
def test_malformed_states_are_counted_and_ignored(runtime, payload, code) -> None:
    core = make_core(runtime)
    good = state_payload(generate_network(3), seq=2)
    core.on_state(good)
    assert core.on_state(payload) is None
    assert core.metrics.snapshot()[f"states{{{code}}}"] == 1
    assert core.state.seq == 2  # the serving state is kept


def test_a_state_no_network_can_have_is_rejected(runtime) -> None:
    core = make_core(runtime)
    msg = codec.state_message(generate_network(3), network="default", seq=1, timestamp_ns=1)
    msg.agents[4].mu = 0.0
    assert core.on_state(codec.encode(msg)) is None
    assert core.metrics.snapshot()["states{malformed_invalid_field}"] == 1
    assert core.state is None


def test_malformed_requests(runtime) -> None:
    core = make_core(runtime)
    core.on_state(state_payload(generate_network(3)))
    garbage = core.handle_request(b"not protobuf at all \xff\xfe")
    assert garbage.status == "dropped" and garbage.decision is None
    no_prompt = core.handle_request(
        codec.encode(network_pb2.ServiceRequest(request_id="np", chain_types=[1, 2, 3]))
    )
    assert no_prompt.status == "rejected" and no_prompt.request_id == "np"
    assert no_prompt.decision.rejection.startswith(MALFORMED_REQUEST + ": missing field")
    for rid, payload, words in [
        ("app", request("app", app="banking"), "unknown application"),
        ("types", request("types", types=(1, 9, 3)), "chain types [9]"),
        ("long", request("long", types=tuple([1, 2] * 10)), "20 chain steps"),
    ]:
        res = core.handle_request(payload)
        assert res.status == "rejected" and res.request_id == rid, res
        assert res.decision.rejection.startswith(MALFORMED_REQUEST) and words in (
            res.decision.rejection
        )
    snap = core.metrics.snapshot()
    assert snap["dropped{undecodable_garbage}"] == 1


def test_other_chain_types_are_prepared_on_first_use(runtime) -> None:
    core = make_core(runtime)
    net = generate_network(5)
    live = core.on_state(state_payload(net))
    res = core.handle_request(request("t", types=(4, 1)))
    assert res.status == "decided"
    assert [int(net.types[a]) for a in res.decision.chain] == [4, 1]
    assert set(live.prepared) == {(1, 2, 3), (4, 1)}


def test_translation_failure_falls_back_to_the_recent_mean(runtime) -> None:
    rapp = StubRapp(vector=(0.4, 0.2, 0.2, 0.2))
    core = make_core(runtime, rapp)
    core.on_state(state_payload(generate_network(3)))
    # Nothing translated yet for "qa": its profile (INTENTS.md).
    rapp.fail = "unavailable"
    first = core.handle_request(request("f1", app="qa")).decision
    assert first.fallback and first.elam == "" and np.allclose(first.predicted, APP_PROFILES["qa"])
    # Two successes, then a failure: the mean of the two.
    rapp.fail = ""
    core.handle_request(request("s1", app="qa"))
    rapp.vector = (0.2, 0.2, 0.4, 0.2)
    core.handle_request(request("s2", app="qa"))
    rapp.fail = "deadline"
    d = core.handle_request(request("f2", app="qa")).decision
    assert d.fallback and np.allclose(d.predicted, (0.3, 0.2, 0.3, 0.2))
    assert len(d.chain) == 3 and not d.rejection  # a fallback still decides
    snap = core.metrics.snapshot()
    assert snap["fallbacks{unavailable}"] == 1 and snap["fallbacks{deadline}"] == 1


def test_the_rapps_own_fallback_is_flagged_and_not_averaged(runtime) -> None:
    rapp = StubRapp(vector=(0.7, 0.1, 0.1, 0.1), rapp_fallback=True)
    core = make_core(runtime, rapp)
    core.on_state(state_payload(generate_network(3)))
    d = core.handle_request(request("rf", app="content")).decision
    assert d.fallback and d.elam  # the E-LAM ran (and failed): it is named
    assert core.fallbacks.vector("content") == (APP_PROFILES["content"], "app_profile")


def test_fallback_vectors_even_for_an_unknown_app() -> None:
    fb = FallbackVectors(window=2)
    assert fb.vector("nope") == ((0.25, 0.25, 0.25, 0.25), "even")
    for v in [(1.0, 0, 0, 0), (0, 1.0, 0, 0), (0, 0, 1.0, 0)]:
        fb.add("x", v)
    vec, src = fb.vector("x")  # window 2: the last two only
    assert src == "recent_mean" and np.allclose(vec, (0, 0.5, 0.5, 0))


def test_the_policy_picks_among_the_elams_the_rapp_hosts(runtime) -> None:
    net = generate_network(3)
    asked = {}
    for name, served in (
        ("all", frozenset(runtime.elam_ids)),
        ("none", frozenset({"other"})),
        *((e, frozenset({e})) for e in runtime.elam_ids),
    ):
        rapp = StubRapp(models=served)
        core = make_core(runtime, rapp)
        core.on_state(state_payload(net))
        d = core.handle_request(request("e")).decision
        asked[name] = rapp.calls[-1][0]
        assert not d.rejection and not d.fallback
        if name == "none":
            assert core.metrics.snapshot()["elam_substituted"] == 1
    assert asked["all"] in runtime.elam_ids  # asked for by name
    assert asked["none"] == ""  # none of the policy's E-LAMs hosted: the rApp's default
    for e in runtime.elam_ids:  # only one hosted: that one
        assert asked[e] == e


def test_the_ledger_keeps_decisions_out_of_the_collectors_scans() -> None:
    """Remembered decisions add no object the cyclic collector scans (a full pass over a
    ledger at capacity stays short), and come back equal to what was recorded."""

    def decision(i: int) -> network_pb2.ControlDecision:
        return network_pb2.ControlDecision(
            request_id=f"r{i}", chain=[i, 2, 3], elam="minilm", predicted=[0.1, 0.2, 0.3, 0.4]
        )

    ledger = DecisionLedger(capacity=5000)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(3000):
        ledger.record(f"r{i}", decision(i))
    gc.collect()
    assert len(gc.get_objects()) - before < 300  # a message object each: 3,000 or more
    assert ledger.get("r17").decision == decision(17)
    assert ledger.get("r17").matches(
        network_pb2.Outcome(chain=[17, 2, 3], predicted=[0.1, 0.2, 0.3, 0.4])
    )
    assert ledger.get("nope") is None


def test_duplicates_are_decided_once(runtime) -> None:
    rapp = StubRapp()
    core = make_core(runtime, rapp)
    core.on_state(state_payload(generate_network(3)))
    first = core.handle_request(request("dup"))
    # Not recorded yet (its publish failed, say): a redelivery is decided again.
    again = core.handle_request(request("dup"))
    assert again.status == "decided"
    core.commit(again)
    third = core.handle_request(request("dup"))
    # Decided once; the recorded decision comes back to be published again (the request
    # coming back may mean the first publication was lost with the broker).
    assert third.status == "duplicate" and third.decision == again.decision
    assert core.decided("dup").fallback is False
    core.forget("dup")
    assert core.handle_request(request("dup")).status == "decided"
    assert first.decision.chain == again.decision.chain
    assert len(rapp.calls) == 3


def test_concurrent_deliveries_of_one_request_are_decided_once(runtime) -> None:
    class SlowRapp(StubRapp):
        def translate(self, *a):
            time.sleep(0.2)  # the first delivery is still being decided when the second comes
            return super().translate(*a)

    core = make_core(runtime, SlowRapp())
    core.on_state(state_payload(generate_network(3)))
    published: list[str] = []
    chains: dict[str, set[tuple[int, ...]]] = {}
    results = []
    rapp = core.translator

    def publish(d) -> bool:
        published.append(d.request_id)
        chains.setdefault(d.request_id, set()).add(tuple(d.chain))
        return True

    def worker(payload: bytes) -> None:
        results.append(core.process(payload, publish))

    threads = [
        threading.Thread(target=worker, args=(request(rid),)) for rid in ("same", "same", "other")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # "same" was decided once (one translation), its decision published twice, unchanged.
    assert sorted(published) == ["other", "same", "same"] and len(chains["same"]) == 1
    assert [c[2] for c in rapp.calls].count("same") == 1
    assert sorted(r.status for r, settled in results if settled) == [
        "decided",
        "decided",
        "duplicate",
    ]


def test_a_failed_publish_leaves_the_request_undecided(runtime) -> None:
    core = make_core(runtime)
    core.on_state(state_payload(generate_network(3)))
    res, settled = core.process(request("pf"), lambda d: False)
    assert res.status == "decided" and not settled and core.decided("pf") is None
    res, settled = core.process(request("pf"), lambda d: True)
    assert res.status == "decided" and settled and core.decided("pf") is not None
    assert core.metrics.snapshot()["decisions"] == 1


def test_the_dedup_memory_is_bounded(runtime) -> None:
    core = make_core(runtime, dedup_capacity=3)
    core.on_state(state_payload(generate_network(3)))
    for i in range(5):
        core.commit(core.handle_request(request(f"q{i}")))
    assert core.decided("q0") is None and core.decided("q4") is not None


def test_no_usable_agent_is_no_feasible_chain(runtime) -> None:
    core = make_core(runtime)
    net = generate_network(3)
    net.available[net.types == 2] = False
    core.on_state(state_payload(net))
    res = core.handle_request(request("nf"))
    assert res.status == "rejected" and res.decision.rejection.startswith(NO_FEASIBLE_CHAIN)
    assert "type 2" in res.decision.rejection


def _latency(net, chain) -> float:
    return qoe.chain_metrics(chain_factors(net, chain), net.cfg)["L"]


@pytest.mark.parametrize("mode", ["search", "greedy", "off"])
def test_an_infeasible_policy_chain_is_repaired_or_rejected(runtime, mode, monkeypatch) -> None:
    if mode == "greedy":  # beyond the search bound the greedy baseline repairs
        monkeypatch.setattr(live_state, "REPAIR_SEARCH_MAX", 0)
    repair = mode != "off"

    vec = (0.7, 0.1, 0.1, 0.1)  # capability first: the policy need not pick fast agents
    for seed in range(3, 40):  # a network where the policy's chain is not the fastest
        net = generate_network(seed)
        core0 = make_core(runtime, StubRapp(vector=vec))
        core0.on_state(state_payload(net))
        policy_chain = core0.handle_request(request("p")).decision.chain
        fastest = greedy_chain(net, (0.0, 0.0, 1.0, 0.0))  # latency first
        l_fast, l_policy = _latency(net, fastest), _latency(net, policy_chain)
        if l_fast < 0.9 * l_policy:
            break
    else:
        pytest.fail("no network where the policy's chain is slower than the fastest")
    # L_max between the two: the policy's chain breaks it, the fastest does not.
    msg = codec.state_message(net, network="default", seq=1, timestamp_ns=time.time_ns())
    msg.l_max = (l_fast + l_policy) / 2
    core = make_core(runtime, StubRapp(vector=vec), repair_infeasible=repair)
    core.on_state(codec.encode(msg))
    res = core.handle_request(request("rep"))
    if repair:
        assert res.status == "decided"
        assert chain_feasible(core.state.net, res.decision.chain, (1, 2, 3)) == ""
        assert tuple(res.decision.chain) != tuple(policy_chain)
        assert core.metrics.snapshot()["repaired"] == 1
        space = core.state.spaces[(1, 2, 3)]
        if mode == "search":  # the best feasible chain for the predicted vector
            q = np.where(space.feasible, space.utilities @ np.asarray(vec), -np.inf)
            assert tuple(res.decision.chain) == space.chain_at(int(np.argmax(q)))
        else:
            assert isinstance(space, str)
            assert tuple(res.decision.chain) == tuple(greedy_chain(core.state.net, vec))
    else:
        assert res.status == "rejected" and res.decision.rejection.startswith(NO_FEASIBLE_CHAIN)
        assert "latency" in res.decision.rejection


def test_policy_swap_prepares_the_state_first(runtime, tmp_path) -> None:
    other = PolicyRuntime(perturbed_copy(unit_policy(), tmp_path / "v2"))
    assert other.version != runtime.version
    core = make_core(runtime)
    net = generate_network(3)
    core.on_state(state_payload(net, seq=3))
    core.handle_request(request("t", types=(4, 1)))
    core.install_runtime(other)
    assert core.runtime is other and core.state.runtime is other
    assert set(core.state.prepared) == {(1, 2, 3), (4, 1)}  # both ready before the swap
    d = core.handle_request(request("after")).decision
    assert d.policy_version == other.version and d.state_seq == 3
    snap = core.metrics.registry.get_sample_value(
        "xapp_policy_info", {"version": other.version, "provider": other.provider}
    )
    assert snap == 1.0


def _perturb_encoder(path, seed: int = 0):
    """Also change the GCN encoder of an exported policy (noise on its weight matrices; its
    card updated), so that a state prepared for one policy decides differently with the
    other's heads."""
    enc = encoder_path(path)
    model = onnx.load(str(enc))
    rng = np.random.default_rng(seed)
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.ndim == 2:
            noise = rng.normal(0.0, float(arr.std()) or 1.0, arr.shape).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(arr + noise, init.name))
    onnx.save(model, str(enc))
    card_path = path.with_suffix(".card.json")
    card = json.loads(card_path.read_text())
    card["encoder"]["sha256"] = sha256_file(enc)
    card_path.write_text(json.dumps(card, indent=2))
    return path


def test_hot_swaps_under_load_drop_no_request_and_mix_no_policies(runtime, tmp_path) -> None:
    """Requests decided by four threads while the policy is swapped back and forth: every
    request gets exactly one answer, and each is wholly one policy's: what that policy
    answers on its own for the same request and state. Repair is off, so an infeasible
    chain shows up as a rejection that names the policy's own chain."""

    def answer(d) -> tuple:
        return tuple(d.chain), d.elam, d.rejection

    other = PolicyRuntime(_perturb_encoder(perturbed_copy(unit_policy(), tmp_path / "v2")))
    payload = state_payload(generate_network(7), seq=2)
    expected = {}
    for rt in (runtime, other):
        alone = make_core(rt, repair_infeasible=False)
        alone.on_state(payload)
        expected[rt.version] = answer(alone.handle_request(request("alone")).decision)
    assert expected[runtime.version] != expected[other.version]
    core = make_core(runtime, repair_infeasible=False)
    core.on_state(payload)
    published: list[network_pb2.ControlDecision] = []
    lock = threading.Lock()

    def publish(d) -> bool:
        with lock:
            published.append(d)
        return True

    n_threads, per_thread = 4, 60
    results: list[tuple] = []

    def worker(w: int) -> None:
        for i in range(per_thread):
            results.append(core.process(request(f"w{w}-{i}"), publish))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(n_threads)]
    for t in threads:
        t.start()
    swaps = 0
    while any(t.is_alive() for t in threads):
        core.install_runtime(other if core.runtime is runtime else runtime)
        swaps += 1
        time.sleep(0.002)
    for t in threads:
        t.join(30)
    n = n_threads * per_thread
    assert swaps >= 4
    assert len(results) == n and all(settled for _, settled in results)
    assert sorted(d.request_id for d in published) == sorted(
        f"w{w}-{i}" for w in range(n_threads) for i in range(per_thread)
    )
    versions = {d.policy_version for d in published}
    assert versions == {runtime.version, other.version}  # both served during the run
    for d in published:
        assert answer(d) == expected[d.policy_version], d.request_id
    snap = core.metrics.snapshot()
    assert snap.get("decisions", 0) + snap.get("rejections", 0) == n
    assert "internal_error" not in snap
