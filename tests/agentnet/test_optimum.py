"""Exhaustive optimum against a brute-force loop, baselines and the normalised score."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agentnet.chain import evaluate_chain
from agentnet.config import DEFAULT
from agentnet.network import generate_network
from agentnet.optimum import (
    OptimumUnavailable,
    build_search_space,
    exact_optimum,
    greedy_chain,
    normalized_score,
    random_chain,
)

FEES = {"small": 0.002, "big": 0.0135}


def brute_force(net, intent, objective):
    """Every chain of the right types through evaluate_chain, one by one."""
    groups = [np.flatnonzero(net.types == t) for t in DEFAULT.chain_types]
    scores = {}
    for chain in itertools.product(*groups):
        r = evaluate_chain(net, chain, intent, objective=objective, fee=0.0)
        if r.feasible:
            scores[chain] = r.Q_subjective
    return scores


@pytest.mark.parametrize("objective", ["weighted", "paper"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exhaustive_matches_brute_force(seed: int, objective: str) -> None:
    net = generate_network(seed, n_agents=24)
    net.available[np.flatnonzero(net.types == 2)[0]] = False  # a crashed agent
    intent = np.random.default_rng(seed).dirichlet(np.ones(4))
    scores = brute_force(net, intent, objective)
    space = build_search_space(net)
    assert space.feasible_count == len(scores)
    opt = exact_optimum(space, intent, fees=FEES, objective=objective, cfg=net.cfg)
    best = max(scores, key=scores.get)
    assert opt.Q_subjective == pytest.approx(scores[best], rel=1e-9)
    assert scores[opt.chain] == pytest.approx(scores[best], rel=1e-9)
    assert opt.elam == "small"
    scale = 10.0 if objective == "weighted" else 1.0
    mean_fee = np.mean(list(FEES.values()))
    assert opt.random_mean == pytest.approx(scale * np.mean(list(scores.values())) - mean_fee)
    assert opt.r_episode == pytest.approx(scale * scores[best] - FEES["small"])


def test_normalized_score() -> None:
    assert normalized_score(10.0, 10.0, 4.0) == 1.0
    assert normalized_score(4.0, 10.0, 4.0) == 0.0
    assert normalized_score(7.0, 10.0, 4.0) == pytest.approx(0.5)
    assert normalized_score(5.0, 5.0, 5.0) == 1.0
    assert normalized_score(4.0, 5.0, 5.0) == 0.0


def test_random_mean_is_the_mean_of_random_chains() -> None:
    net = generate_network(9)
    space = build_search_space(net)
    s = np.array([0.4, 0.3, 0.15, 0.15])
    opt = exact_optimum(space, s)
    rng = np.random.default_rng(0)
    draws = [evaluate_chain(net, random_chain(space, rng), s).r_episode for _ in range(3000)]
    assert np.mean(draws) == pytest.approx(opt.random_mean, abs=0.1)
    assert all(evaluate_chain(net, random_chain(space, rng), s).feasible for _ in range(50))


def test_greedy_follows_the_largest_weight() -> None:
    net = generate_network(3)
    lat = net.agent_latency()
    chain = greedy_chain(net, [0.1, 0.1, 0.7, 0.1])
    first = net.agents_of_type(1, usable=True)
    assert chain[0] == first[np.argmin(lat[first])]
    chain = greedy_chain(net, [0.7, 0.1, 0.1, 0.1])
    assert chain[0] == first[np.argmax(net.p_success[first])]
    # Equal top weights keep the order C, B, L, P; at step 1 BER ties (all 0) so the
    # next weight decides.
    chain = greedy_chain(net, [0.1, 0.5, 0.3, 0.1])
    assert chain[0] == first[np.argmin(lat[first])]
    assert evaluate_chain(net, chain, [0.25] * 4).feasible


def test_unavailable_beyond_the_limit(monkeypatch) -> None:
    import agentnet.optimum as optimum

    monkeypatch.setattr(optimum, "MAX_CHAINS", 1000)
    with pytest.raises(OptimumUnavailable, match="exceeds"):
        build_search_space(generate_network(0))


def test_required_size_is_searchable() -> None:
    space = build_search_space(generate_network(0, n_agents=200))
    assert space.feasible.size >= 40**3
    assert exact_optimum(space, [0.25] * 4).feasible_count == space.feasible_count
