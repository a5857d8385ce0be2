"""Capacity of an agentic network, λ_cap (NEGOTIATION.md "Capacity").

λ_cap(state) is the largest admitted arrival rate per chain λ at which the exact optimum
chain for the even vector [0.25]*4 stays feasible: stable (every ρ_i = λ/μ_i < 1, eq. 4)
and within the latency bound (L ≤ L_max, eqs. 7-8, 18b). The optimum at each λ comes from
:func:`agentnet.optimum.exact_optimum` over the chains of usable agents at that λ; since
raising λ only lengthens latencies (eq. 7) and removes unstable agents, feasibility is
monotone in λ and a bisection finds λ_cap to a relative tolerance.

λ_cap is 0 when no chain is feasible even at a vanishing load (a service type with no
available agent, or every chain below C_th or above L_max at λ → 0): the negotiation topic
is then no longer valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentnet.network import Network
from agentnet.optimum import OptimumUnavailable, build_search_space, exact_optimum

EVEN = (0.25, 0.25, 0.25, 0.25)
"""The even preference vector the capacity is defined for."""

REL_TOL = 1e-4
"""Relative bisection tolerance of NEGOTIATION.md."""

PROBE = 1e-6
"""Smallest load tried, as a share of the stability bound (a vanishing load)."""


@dataclass(frozen=True)
class Capacity:
    """λ_cap of one network state and how it was found.

    Attributes:
        lambda_cap: the largest feasible λ found (requests/s per chain); 0 when none.
        chain: the exact optimum chain for the even vector at ``lambda_cap`` (empty when 0).
        stability_bound: min over the chain's steps of the fastest usable agent's μ; no
            λ at or above it is stable.
        evaluations: exact optimum searches run.
    """

    lambda_cap: float
    chain: tuple[int, ...]
    stability_bound: float
    evaluations: int


def _optimum_chain(net: Network, lam: float) -> tuple[int, ...] | None:
    """The exact optimum chain for the even vector at load ``lam``, or None (infeasible)."""
    net.set_arrival_rate(lam)
    try:
        space = build_search_space(net)
        return exact_optimum(space, EVEN, cfg=net.cfg).chain
    except OptimumUnavailable:
        return None


def stability_bound(net: Network) -> float:
    """min over the chain's service types of the largest μ_i of an available agent of
    that type (0 when a type has none): every λ at or above it leaves a step unstable."""
    bound = np.inf
    for t in net.cfg.chain_types:
        mask = (net.types == t) & net.available
        if not mask.any():
            return 0.0
        bound = min(bound, float(net.mu[mask].max()))
    return float(bound)


def capacity(net: Network, rel_tol: float = REL_TOL) -> Capacity:
    """λ_cap of a network state by bisection (module docstring).

    Args:
        net: the network in its current state (not modified: a copy is searched).
        rel_tol: stop when the bracket is narrower than ``rel_tol`` times its lower end.

    Returns:
        The capacity, its optimum chain and the number of searches.
    """
    if not 0 < rel_tol < 1:
        raise ValueError(f"rel_tol must lie in (0, 1), got {rel_tol}")
    bound = stability_bound(net)
    if bound <= 0:
        return Capacity(0.0, (), 0.0, 0)
    work = net.copy()
    lo = bound * PROBE
    chain = _optimum_chain(work, lo)
    evaluations = 1
    if chain is None:
        return Capacity(0.0, (), bound, evaluations)
    hi = bound  # infeasible: some step has no agent with rho < 1
    while hi - lo > rel_tol * lo:
        mid = 0.5 * (lo + hi)
        found = _optimum_chain(work, mid)
        evaluations += 1
        if found is None:
            hi = mid
        else:
            lo, chain = mid, found
    return Capacity(float(lo), chain, bound, evaluations)


def lambda_cap(net: Network, rel_tol: float = REL_TOL) -> float:
    """λ_cap of a network state (see :func:`capacity`)."""
    return capacity(net, rel_tol).lambda_cap
