"""The optimizer unit: eq. 1 against the closed-form theoretical consensus (NEGOTIATION.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rapp_negotiation.optimizer import (
    OptimizerConfig,
    Problem,
    consensus,
    costs,
    gradient,
    tenant_proposal,
    theoretical_consensus,
)


def random_problem(n: int, rng: np.random.Generator, cap: float = 12.9, **bounds) -> Problem:
    targets = tuple(float(x) for x in rng.uniform(0.0, 2.2 * cap, n))
    weights = tuple(float(x) for x in rng.uniform(0.2, 3.0, n))
    return Problem(targets, weights, cap, **bounds)


@pytest.mark.parametrize("n", [2, 5, 10])
def test_eq1_reaches_the_closed_form_within_1e3_of_capacity(n: int) -> None:
    rng = np.random.default_rng(n)
    over = 0
    for _ in range(40):
        p = random_problem(n, rng)
        res = consensus(p)
        assert res.converged
        assert abs(res.value - theoretical_consensus(p)) <= 1e-3 * p.capacity
        assert max(res.proposals) - min(res.proposals) <= 1e-2 * p.capacity  # they meet
        over += float(np.average(p.targets, weights=p.weights)) > p.capacity
    assert over > 0  # the capacity penalty was exercised


@pytest.mark.parametrize("n", [2, 5, 10])
def test_eq1_respects_regulatory_bounds(n: int) -> None:
    rng = np.random.default_rng(100 + n)
    for _ in range(20):
        p = random_problem(n, rng, r_min=2.0, r_max=6.0)
        res = consensus(p)
        assert all(2.0 - 1e-12 <= x <= 6.0 + 1e-12 for x in res.proposals)
        assert abs(res.value - theoretical_consensus(p)) <= 1e-3 * p.capacity


def test_closed_form_cases() -> None:
    # Under the capacity: the weighted mean of the targets.
    p = Problem((2.0, 6.0), (1.0, 3.0), capacity=10.0)
    assert theoretical_consensus(p) == pytest.approx(5.0)
    # Over it: (Σ a t + κ n λ_cap) / (Σ a + κ n), κ = 10 mean a = 20.
    p = Problem((12.0, 16.0), (1.0, 3.0), capacity=10.0)
    assert theoretical_consensus(p) == pytest.approx((60.0 + 20 * 2 * 10.0) / (4.0 + 40.0))
    # Clipped to the rules.
    assert theoretical_consensus(Problem((2.0, 6.0), (1.0, 3.0), 10.0, r_max=4.0)) == 4.0
    assert theoretical_consensus(Problem((0.0, 0.0), (1.0, 1.0), 10.0, r_min=0.5)) == 0.5
    # No capacity: κ n λ_cap vanishes and the penalty pulls towards 0.
    p = Problem((4.0, 4.0), (1.0, 1.0), capacity=0.0)
    assert theoretical_consensus(p) == pytest.approx(8.0 / 22.0)


def test_gradient_is_the_gradient_of_the_costs() -> None:
    rng = np.random.default_rng(7)
    p = random_problem(5, rng, cap=3.0)
    x = rng.uniform(0, 10, 5)
    c = 17.0
    g = gradient(p, x, c)
    h = 1e-6
    for i in range(5):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        j_up, j_down = costs(p, up, c), costs(p, down, c)
        slope = (j_up[0][i] + j_up[1] - j_down[0][i] - j_down[1]) / (2 * h)
        assert g[i] == pytest.approx(slope, rel=1e-5, abs=1e-6)


def test_a_single_stage_with_small_c_does_not_reach_the_consensus() -> None:
    """The schedule matters: c must grow for the proposals to meet (a failing config)."""
    p = Problem((1.0, 9.0), (1.0, 1.0), capacity=20.0)
    res = consensus(p, OptimizerConfig(c_schedule=(0.1,)))
    assert max(res.proposals) - min(res.proposals) > 5.0


def test_problem_validation() -> None:
    with pytest.raises(ValueError, match="one each"):
        Problem((1.0,), (1.0, 2.0), 5.0)
    with pytest.raises(ValueError, match="weights"):
        Problem((1.0,), (0.0,), 5.0)
    with pytest.raises(ValueError, match="targets"):
        Problem((math.nan,), (1.0,), 5.0)
    with pytest.raises(ValueError, match="r_min"):
        Problem((1.0,), (1.0,), 5.0, r_min=3.0, r_max=2.0)
    with pytest.raises(ValueError, match="c_schedule"):
        OptimizerConfig(c_schedule=(0.0,))


def test_tenant_proposal_moves_towards_the_announcement() -> None:
    x = tenant_proposal(target=2.0, weight=1.5, announced=6.0, pressure=4.0)
    assert x == pytest.approx((2.0 + 4.0 * 6.0) / 5.0)
    assert tenant_proposal(2.0, 1.0, 6.0, pressure=0.0) == pytest.approx(2.0)
    assert tenant_proposal(2.0, 1.0, 6.0, pressure=4.0, r_max=3.0) == pytest.approx(3.0)
