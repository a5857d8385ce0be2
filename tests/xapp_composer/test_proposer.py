"""The intent-conditioned proposer: its feasibility guarantee, the exact search over its
top-k, and the policy on the reduced graph."""

from __future__ import annotations

import importlib.util
import itertools
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentnet.chain import evaluate_chain
from agentnet.config import DEFAULT
from agentnet.network import generate_network
from agentnet.optimum import build_search_space, exact_optimum
from xapp_composer import features as F
from xapp_composer import steps as S
from xapp_composer.proposer import (
    EmbeddingScorer,
    agent_descriptors,
    exact_by_bound,
    feasible_chain,
    pareto_front,
    profile_state,
    reduced_prepared,
    reduced_state,
    topk_exhaustive,
)
from xapp_composer.runtime import PolicyRuntime

POLICY = Path(__file__).resolve().parents[2] / "models" / "policy" / "srl-general.onnx"


def _state(net):
    return F.serving_state(net, None, S.K_CAND)


def _any_feasible(net, candidates=None) -> bool:
    return bool(build_search_space(net, candidates=candidates).feasible.any())


def _tight_network(seed: int, l_max: float, c_th: float, n_agents: int):
    """A network whose constraints leave few or no feasible chains."""
    return generate_network(seed, DEFAULT.with_overrides(l_max=l_max, c_th=c_th), n_agents)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_agents=st.integers(24, 90),
    l_max=st.floats(0.2, 10.0),
    c_th=st.floats(0.02, 0.15),
    k=st.integers(1, 6),
    intent=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
    random_scores=st.booleans(),
)
def test_top_k_holds_a_feasible_chain_whenever_the_network_has_one(
    seed, n_agents, l_max, c_th, k, intent, random_scores
) -> None:
    net = _tight_network(seed, l_max, c_th, n_agents)
    profile = profile_state(_state(net))
    v = np.asarray(intent) + 1e-3
    v /= v.sum()
    scores = None
    if random_scores:  # any scorer (embeddings, a C-LAM's ranking) keeps the guarantee
        rng = np.random.default_rng(seed)
        scores = [rng.normal(size=len(c)) for c in profile.candidates]
    sets = profile.propose(v, k, scores=scores)
    assert all(len(a) <= k for a in sets)
    for a, t in zip(sets, net.cfg.chain_types, strict=True):
        assert set(a.tolist()) <= set(net.agents_of_type(t, usable=True).tolist())
    assert _any_feasible(net, sets) == _any_feasible(net)


def test_the_guarantee_is_exercised_both_ways() -> None:
    """Over a fixed sweep: networks with no feasible chain, and networks where the top-1 by
    score is infeasible so the proposer must bring in a feasible chain."""
    none = rescued = 0
    for seed in range(40):
        net = _tight_network(seed, 0.4 + 0.1 * (seed % 10), 0.06, 60)
        profile = profile_state(_state(net))
        v = np.array([0.7, 0.1, 0.1, 0.1])
        top1 = [c[np.argmax(x)] for c, x in zip(profile.candidates, profile.scores(v), strict=True)]
        full = _any_feasible(net)
        none += not full
        if full and not evaluate_chain(net, top1, v).feasible:
            rescued += 1
            assert _any_feasible(net, profile.propose(v, 1))
    assert none > 0 and rescued > 0


@settings(max_examples=80, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    seed=st.integers(0, 10_000),
    l_max=st.floats(0.5, 4.0),
    logp_min=st.floats(-4.0, 0.0),
)
def test_feasible_chain_is_exact(sizes, seed, l_max, logp_min) -> None:
    rng = np.random.default_rng(seed)
    lat = [rng.uniform(0.0, 1.5, n) for n in sizes]
    logp = [rng.uniform(-1.5, 0.0, n) for n in sizes]
    brute = [
        c
        for c in itertools.product(*(range(n) for n in sizes))
        if sum(a[i] for a, i in zip(lat, c, strict=True)) <= l_max
        and sum(a[i] for a, i in zip(logp, c, strict=True)) >= logp_min
    ]
    found = feasible_chain(lat, logp, l_max, logp_min)
    assert (found is None) == (not brute)
    if found is not None:
        assert found in brute


def test_pareto_front_keeps_exactly_the_undominated_points() -> None:
    rng = np.random.default_rng(3)
    cost, gain = rng.uniform(size=50), rng.uniform(size=50)
    front = set(pareto_front(cost, gain).tolist())
    for i in range(50):
        dominated = np.any(
            (cost <= cost[i]) & (gain >= gain[i]) & ((cost < cost[i]) | (gain > gain[i]))
        )
        assert (i in front) == (not dominated)


@pytest.mark.parametrize("seed", [3, 8, 21])
def test_top_k_exhaustive_equals_the_full_search_when_k_covers_every_candidate(seed) -> None:
    net = generate_network(seed, n_agents=81)
    s = _state(net)
    profile = profile_state(s)
    space = build_search_space(net)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        v = rng.dirichlet(np.ones(4))
        best = exact_optimum(space, v)
        sets = profile.propose(v, max(len(c) for c in profile.candidates))
        chain, score = topk_exhaustive(net, s, sets, v)
        assert score == pytest.approx(best.Q_subjective, abs=1e-12)
        assert evaluate_chain(net, chain, v).Q_subjective == pytest.approx(best.Q_subjective)


@pytest.mark.parametrize(("seed", "n_agents"), [(3, 81), (7, 200), (11, 300)])
def test_exact_by_bound_is_the_exact_optimum(seed, n_agents) -> None:
    net = generate_network(seed, n_agents=n_agents)
    profile = profile_state(_state(net))
    space = build_search_space(net)
    rng = np.random.default_rng(seed)
    for _ in range(6):
        v = rng.dirichlet(np.ones(4) * 0.5)
        chain, score = exact_by_bound(net, profile, v)
        assert score == pytest.approx(exact_optimum(space, v).Q_subjective, abs=1e-12)
        assert evaluate_chain(net, chain, v).Q_subjective == pytest.approx(score)


def test_exact_by_bound_finds_nothing_when_nothing_is_feasible() -> None:
    net = _tight_network(1, 0.05, 0.2, 60)
    assert not _any_feasible(net)
    assert exact_by_bound(net, profile_state(_state(net)), (0.25,) * 4) is None


def test_top_k_exhaustive_is_the_best_chain_of_the_reduced_graph() -> None:
    net = generate_network(5, n_agents=200)
    s = _state(net)
    profile = profile_state(s)
    v = np.array([0.1, 0.5, 0.2, 0.2])
    sets = profile.propose(v, 3)
    chain, score = topk_exhaustive(net, s, sets, v)
    brute = max(evaluate_chain(net, c, v).Q_subjective for c in itertools.product(*sets))
    assert score == pytest.approx(brute)
    assert all(a in sets[j] for j, a in enumerate(chain))


@pytest.fixture(scope="module")
def runtime() -> PolicyRuntime:
    return PolicyRuntime(POLICY, prefer_gpu=False)


def test_the_policy_decides_on_the_reduced_graph(runtime) -> None:
    net = generate_network(12, n_agents=600)
    p = runtime.prepare(net)
    profile = profile_state(p.state)
    rng = np.random.default_rng(1)
    for k in (1, 2, 4, 16):
        v = rng.dirichlet(np.ones(4))
        sets = profile.propose(v, k)
        chain = runtime.compose(reduced_prepared(p, sets), v, 0, "qa", "a request")
        assert all(a in sets[j] for j, a in enumerate(chain))
        assert evaluate_chain(net, chain, v).feasible


def test_the_reduced_graph_with_every_candidate_is_the_whole_graph(runtime) -> None:
    net = generate_network(4, n_agents=81)
    p = runtime.prepare(net)
    profile = profile_state(p.state)
    r = reduced_state(p.state, profile.candidates)
    for name in ("usable", "best_logp", "min_lat", "best_lnc", "min_pover"):
        np.testing.assert_array_equal(getattr(r, name), getattr(p.state, name))
    cols = [np.flatnonzero(p.state.usable[0, k]) for k in range(len(p.state.chain_types))]
    for k in range(len(cols) - 1):
        np.testing.assert_allclose(
            r.min_next_ber[0, k, cols[k]], p.state.min_next_ber[0, k, cols[k]]
        )
    rng = np.random.default_rng(2)
    for _ in range(5):
        v = rng.dirichlet(np.ones(4))
        whole = runtime.compose(p, v, 0, "qa", "a request")
        assert (
            runtime.compose(reduced_prepared(p, profile.candidates), v, 0, "qa", "a request")
            == whole
        )


def test_bad_inputs_are_refused() -> None:
    net = generate_network(2, n_agents=81)
    s = _state(net)
    profile = profile_state(s)
    with pytest.raises(ValueError, match="at least 1"):
        profile.propose((0.25,) * 4, 0)
    with pytest.raises(ValueError, match="one value per candidate"):
        profile.propose(None, 2, scores=[np.zeros(3)] * 3)
    wrong = [profile.candidates[1][:2], profile.candidates[1][:2], profile.candidates[2][:2]]
    with pytest.raises(ValueError, match="cannot use"):
        reduced_state(s, wrong)


def _bag_of_words(texts: list[str]) -> np.ndarray:
    """A deterministic sentence embedding: hashed word counts."""
    out = np.zeros((len(texts), 256))
    for i, t in enumerate(texts):
        for w in t.lower().replace(",", " ").replace(":", " ").split():
            out[i, zlib.crc32(w.encode()) % 256] += 1.0
    return out


def test_embedding_scorer_ranks_agents_by_the_request_text() -> None:
    net = generate_network(9, n_agents=300)
    profile = profile_state(_state(net))
    texts = agent_descriptors(net, profile)
    scorer = EmbeddingScorer(_bag_of_words)
    scores = scorer.scores(texts, "I need it fast, real-time")
    lat = net.agent_latency()
    for c, sc, d in zip(profile.candidates, scores, texts, strict=True):
        fast = np.array(["fast" in t for t in d])
        assert sc[fast].min() > sc[~fast].max()
        assert lat[c][fast].max() <= lat[c][~fast].min()
    sets = profile.propose(None, 4, scores=scores)
    for a, c, d in zip(sets, profile.candidates, texts, strict=True):
        assert all("fast" in d[int(np.flatnonzero(c == agent)[0])] for agent in a)


def test_bench_large_runs_every_method_and_states_its_verdict(capsys) -> None:
    spec = importlib.util.spec_from_file_location(
        "bench_large", Path(__file__).resolve().parents[2] / "bench" / "bench_large.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.main(["--agents", "150", "--networks", "1", "--requests", "2", "--k", "1,3"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == out
    (size,) = out["sizes"]
    methods = size["methods"]
    assert set(methods) == {
        "srl",
        "beam8",
        "beam32",
        "srl_k1",
        "topk_k1",
        "srl_k3",
        "topk_k3",
        "exact",
    }
    assert size["best_known_is_optimum"]
    assert all(m["gap_to_best_known"] >= -1e-12 for m in methods.values())
    assert methods["exact"]["gap_to_best_known"] == pytest.approx(0.0, abs=1e-12)
    srl, beam = methods["srl"], methods["beam8"]
    assert size["srl_beats_beam8"] == (srl["q"] > beam["q"] and srl["p50_ms"] <= beam["p50_ms"])
    assert set(size["per_k"]) == {"1", "3"}
