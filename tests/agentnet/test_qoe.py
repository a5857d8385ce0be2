"""The chain equations against values computed independently here (plain math, eq. by eq.),
plus monotonicity properties (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agentnet import qoe
from agentnet.config import DEFAULT

P = [0.41, 0.63, 0.55]
MU = [4.0, 9.5, 2.2]
CV = [1.3, 0.6, 1.9]
RATE = [0.012, 0.03, 0.004]
HOPS = [2.5e-4, 1.0e-6]
LAM = 1.3


def poisson_sf(k: int, lam: float) -> float:
    return 1.0 - sum(math.exp(-lam) * lam**j / math.factorial(j) for j in range(k + 1))


def test_capability_eq2() -> None:
    assert qoe.chain_capability(np.array(P)) == pytest.approx(P[0] * P[1] * P[2] / 3, rel=1e-12)


def test_ber_eq3() -> None:
    want = 1 - (1 - HOPS[0]) * (1 - HOPS[1])
    assert qoe.chain_ber(np.array(HOPS)) == pytest.approx(want, rel=1e-12)


def test_latency_eq4_to_eq8() -> None:
    want = 0.0
    for mu, v in zip(MU, CV, strict=True):
        rho = LAM / mu
        wq = rho * (1 + v * v) / (2 * mu * (1 - rho))  # eq. 6
        want += 1 / mu + wq  # eq. 7
    got = qoe.chain_latency(qoe.agent_latency(LAM, np.array(MU), np.array(CV)))
    assert got == pytest.approx(want, rel=1e-12)


def test_unstable_agent_has_infinite_latency() -> None:
    lat = qoe.agent_latency(3.0, np.array([2.0, 5.0]), np.array([1.0, 1.0]))
    assert math.isinf(lat[0]) and math.isfinite(lat[1])


def test_outage_eq9_to_eq14() -> None:
    no_crash = (1 - RATE[0]) * (1 - RATE[1]) * (1 - RATE[2])
    lam_max = min(MU)  # bottleneck, eqs. 11-12
    p_over = poisson_sf(math.floor(lam_max), LAM)  # eq. 13
    want = 1 - no_crash * (1 - p_over)  # eq. 14
    got = qoe.outage_probability(LAM, np.array(MU), np.array(RATE))
    assert got == pytest.approx(want, rel=1e-12)


def test_qoe_eq15() -> None:
    C, B, L, Pout = 0.05, 1e-3, 0.8, 0.1
    want = (1 - Pout) * ((1 - B) * math.log(C / 0.02) - math.log(L))
    assert qoe.objective_qoe(C, B, L, Pout, 0.02) == pytest.approx(want, rel=1e-12)


def test_utilities_and_weighted_objective() -> None:
    C, B, L, Pout = 0.05, 3e-4, 0.8, 0.1
    uc = min(max(math.log(C / 0.02) / math.log(0.25 / 0.02), 0), 1)
    ub = 1 - min(max(math.log10(B / 1e-5) / 4, 0), 1)
    ul = min(max(math.log(10 / L) / math.log(10 / 0.05), 0), 1)
    up = 1 - min(max(math.log10(Pout / 1e-3) / 3, 0), 1)
    u = qoe.utilities(C, B, L, Pout, DEFAULT)
    np.testing.assert_allclose(u, [uc, ub, ul, up], rtol=1e-12)
    s = np.array([0.1, 0.2, 0.3, 0.4])
    q = qoe.subjective_weighted(s, C, B, L, Pout, True, DEFAULT)
    assert q == pytest.approx(0.1 * uc + 0.2 * ub + 0.3 * ul + 0.4 * up, rel=1e-12)
    assert qoe.subjective_weighted(s, C, B, L, Pout, False, DEFAULT) == -1.0


def test_utility_edges() -> None:
    u = qoe.utilities(1.0, 0.0, 1e-4, 0.0, DEFAULT)
    np.testing.assert_array_equal(u, [1.0, 1.0, 1.0, 1.0])
    u = qoe.utilities(0.01, 0.5, 20.0, 1.0, DEFAULT)
    np.testing.assert_array_equal(u, [0.0, 0.0, 0.0, 0.0])


def test_paper_objective() -> None:
    C, B, L, Pout = 0.05, 3e-4, 0.8, 0.1
    s = [0.4, 0.3, 0.2, 0.1]
    want = (1 - 0.1 * Pout) * ((1 - 0.3 * B) * math.log(0.4 * C / 0.02) - math.log(0.2 * L))
    got = qoe.subjective_paper(np.array(s), C, B, L, Pout, True, DEFAULT)
    assert got == pytest.approx(want, rel=1e-12)
    assert qoe.subjective_paper(np.array(s), C, B, L, Pout, False, DEFAULT) == -10.0


def test_episode_bonus_eq35() -> None:
    assert qoe.episode_bonus(0.5, 0.01, "weighted") == pytest.approx(4.99)
    assert qoe.episode_bonus(2.0, 0.01, "paper") == pytest.approx(1.99)


def test_step_reward_eq34_minmax() -> None:
    # Three candidates; the second is unstable (latency inf).
    ind = qoe.step_indicators(
        p_success=np.array([0.2, 0.5, 0.8]),
        hop_ber=np.array([1e-3, 1e-5, 1e-4]),
        latency=np.array([2.0, np.inf, 1.0]),
        outage_rate=np.array([0.01, 0.01, 0.01]),
    )
    np.testing.assert_allclose(ind[:, 0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(ind[:, 1], [0.0, 1.0, 1 - (1e-4 - 1e-5) / (1e-3 - 1e-5)])
    np.testing.assert_allclose(ind[:, 2], [0.0, 0.0, 1.0])  # unstable: 0, out of min-max
    np.testing.assert_allclose(ind[:, 3], [1.0, 1.0, 1.0])  # all equal: 1
    s = np.array([0.1, 0.2, 0.3, 0.4])
    assert qoe.step_reward(True, s, ind[2]) == pytest.approx(1 + 0.1 + 0.2 * ind[2, 1] + 0.3 + 0.4)
    assert qoe.step_reward(False, s, ind[0]) == pytest.approx(-1 + 0.4)


# ---- properties ---------------------------------------------------------------------
unit = st.floats(0.0, 1.0, allow_nan=False)
weights = st.lists(st.floats(0.01, 1.0), min_size=4, max_size=4).map(lambda w: np.array(w) / sum(w))
factors = st.tuples(
    st.floats(0.02, 0.3),  # C (feasible: >= C_th)
    st.floats(0.0, 0.3),  # B
    st.floats(0.01, 10.0),  # L
    st.floats(0.0, 0.95),  # P_outage
)


@settings(max_examples=300, deadline=None)
@given(f=factors, s=weights, which=st.integers(0, 3), amount=unit)
def test_worse_factor_never_raises_subjective(f, s, which, amount) -> None:
    C, B, L, Pout = f
    worse = list(f)
    if which == 0:
        worse[0] = C - amount * (C - 0.02)  # less capability, still >= C_th
    elif which == 1:
        worse[1] = B + amount * (0.5 - B)
    elif which == 2:
        worse[2] = L + amount * (10.0 - L)
    else:
        worse[3] = Pout + amount * (1.0 - Pout)
    base = qoe.subjective_weighted(s, C, B, L, Pout, True, DEFAULT)
    after = qoe.subjective_weighted(s, *worse, True, DEFAULT)
    assert after <= base + 1e-12


@settings(max_examples=300, deadline=None)
@given(f=factors, which=st.integers(0, 3), amount=unit)
def test_worse_factor_never_raises_q(f, which, amount) -> None:
    """Eq. 15 is monotone in C, B and L on the feasible set (C >= C_th). In P_outage only
    where its second factor is non-negative: with (1 - B) ln(C/C_th) < ln L, a higher
    outage probability shrinks a negative product, i.e. eq. 15 itself rewards outage
    there. That is a property of the paper's formula, not of this implementation."""
    C, B, L, Pout = f
    worse = list(f)
    if which == 0:
        worse[0] = C - amount * (C - 0.02)
    elif which == 1:
        worse[1] = B + amount * (0.5 - B)
    elif which == 2:
        worse[2] = L + amount * (10.0 - L)
    else:
        assume((1 - B) * math.log(C / 0.02) - math.log(L) >= 0)
        worse[3] = Pout + amount * (1.0 - Pout)
    assert qoe.objective_qoe(*worse, 0.02) <= qoe.objective_qoe(C, B, L, Pout, 0.02) + 1e-12


@settings(max_examples=200, deadline=None)
@given(
    mu=st.lists(st.floats(1.5, 50.0), min_size=3, max_size=3),
    cv=st.lists(st.floats(0.5, 2.0), min_size=3, max_size=3),
    rate=st.lists(st.floats(0.0, 0.2), min_size=3, max_size=3),
    slower=st.floats(0.5, 1.0),
)
def test_slower_agent_never_lowers_latency_or_outage(mu, cv, rate, slower) -> None:
    mu, cv, rate = np.array(mu), np.array(cv), np.array(rate)
    mu2 = mu.copy()
    mu2[0] = max(mu[0] * slower, 1.01)
    L1 = qoe.chain_latency(qoe.agent_latency(1.0, mu, cv))
    L2 = qoe.chain_latency(qoe.agent_latency(1.0, mu2, cv))
    assert L2 >= L1 - 1e-12
    assert qoe.outage_probability(1.0, mu2, rate) >= qoe.outage_probability(1.0, mu, rate) - 1e-12
