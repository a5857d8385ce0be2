"""λ_cap (NEGOTIATION.md "Capacity") against a per-chain root search, and its edge cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import brentq

from agentnet.capacity import EVEN, capacity, lambda_cap
from agentnet.chain import evaluate_chain
from agentnet.network import generate_network
from agentnet.qoe import agent_latency


def per_chain_capacity(net) -> float:
    """Largest λ over every chain of available agents, each chain's own limit found by a
    root search of L(λ) = L_max below its bottleneck μ (C does not depend on λ)."""
    cfg = net.cfg
    groups = [np.flatnonzero((net.types == t) & net.available) for t in cfg.chain_types]
    best = 0.0
    for chain in itertools.product(*groups):
        idx = np.array(chain)
        if np.prod(net.p_success[idx]) / len(idx) < cfg.c_th:
            continue
        mu, cv = net.mu[idx], net.cv[idx]

        def slack(lam, mu=mu, cv=cv):
            return float(agent_latency(lam, mu, cv).sum()) - cfg.l_max

        top = float(mu.min()) * (1 - 1e-12)
        if slack(1e-12) > 0:
            continue
        best = max(best, brentq(slack, 1e-12, top, xtol=1e-12, rtol=1e-12))
    return best


@pytest.mark.parametrize(("seed", "agents"), [(0, 24), (1, 24), (2, 32), (0, 81)])
def test_capacity_matches_the_per_chain_limits(seed: int, agents: int) -> None:
    net = generate_network(seed, n_agents=agents)
    net.available[np.flatnonzero(net.types == 1)[0]] = False  # a crashed agent
    cap = capacity(net)
    expected = per_chain_capacity(net)
    assert expected > 0
    assert cap.lambda_cap == pytest.approx(expected, rel=1e-4)
    assert cap.lambda_cap <= expected  # bisection keeps the feasible end


def test_capacity_is_the_feasibility_edge_of_the_even_optimum() -> None:
    net = generate_network(3)
    cap = capacity(net)
    at = net.copy()
    at.set_arrival_rate(cap.lambda_cap)
    assert evaluate_chain(at, cap.chain, EVEN).feasible
    beyond = net.copy()
    beyond.set_arrival_rate(cap.lambda_cap * (1 + 1.01e-4))
    groups = [beyond.agents_of_type(t, usable=True) for t in net.cfg.chain_types]
    assert not any(evaluate_chain(beyond, c, EVEN).feasible for c in itertools.product(*groups))
    assert net.arrival_rate == 1.0  # the caller's network is not modified


def test_no_available_agent_of_a_type_means_no_capacity() -> None:
    net = generate_network(0, n_agents=24)
    net.available[net.types == 2] = False
    cap = capacity(net)
    assert cap.lambda_cap == 0.0 and cap.chain == () and cap.evaluations == 0


def test_no_feasible_chain_at_vanishing_load_means_no_capacity() -> None:
    net = generate_network(0, n_agents=24)
    net.mu = net.mu / 1e3  # every chain's service time alone exceeds L_max
    assert lambda_cap(net) == 0.0


def test_outages_lower_the_capacity_and_recovery_restores_it() -> None:
    net = generate_network(0)
    full = capacity(net)
    down = net.copy()
    down.available[list(full.chain)] = False
    lowered = lambda_cap(down)
    assert 0 < lowered < full.lambda_cap
    assert lambda_cap(net) == full.lambda_cap


def test_tolerance_is_checked() -> None:
    net = generate_network(0, n_agents=24)
    with pytest.raises(ValueError, match="rel_tol"):
        capacity(net, rel_tol=0)
    coarse = capacity(net, rel_tol=1e-2)
    fine = capacity(net, rel_tol=1e-6)
    assert coarse.evaluations < fine.evaluations
    assert coarse.lambda_cap == pytest.approx(fine.lambda_cap, rel=1e-2)
