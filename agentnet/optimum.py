"""Exact optimum by vectorised exhaustive search, the Random and Greedy baselines, and the
normalised score (MODEL.md "Evaluation protocol").

A :class:`SearchSpace` holds the factors of every chain that can be feasible on one
network state (one array axis per step), so scoring all of them for an intent is one
dot product. On the default network that is about 8,000 chains.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from agentnet import qoe
from agentnet.network import Network
from agentnet.qoe import Objective

MAX_CHAINS = 4_000_000
"""Largest search grid evaluated exhaustively (N = 200 with 3 steps is 125,000 chains)."""


class OptimumUnavailable(RuntimeError):
    """The exhaustive search is too large for this network, or no chain is feasible."""


@dataclass(frozen=True)
class SearchSpace:
    """Factors of every candidate chain on one network state.

    Attributes:
        candidates: per step, the usable agents (right type, available, rho_i < 1).
        C, B, L, P: factor grids of shape (n_1, ..., n_n).
        feasible: constraint mask of the same shape.
        utilities: shape (..., 4), the Weber-Fechner utilities.
    """

    candidates: tuple[np.ndarray, ...]
    C: np.ndarray
    B: np.ndarray
    L: np.ndarray
    P: np.ndarray
    feasible: np.ndarray
    utilities: np.ndarray
    cfg_c_th: float

    @property
    def feasible_count(self) -> int:
        """Number of feasible chains."""
        return int(self.feasible.sum())

    def chain_at(self, flat_index: int) -> tuple[int, ...]:
        """Agent ids of the chain at a flat index of the grid."""
        pos = np.unravel_index(int(flat_index), self.feasible.shape)
        return tuple(int(c[p]) for c, p in zip(self.candidates, pos, strict=True))

    def subjective(self, intent: np.ndarray, objective: Objective, cfg) -> np.ndarray:
        """Q*_s (or Q*_paper) of every chain under ``intent``; infeasible ones as MODEL.md."""
        s = np.asarray(intent, dtype=float)
        if objective == "weighted":
            q = self.utilities @ s
            return np.where(self.feasible, q, qoe.INFEASIBLE_WEIGHTED)
        return qoe.subjective_paper(s, self.C, self.B, self.L, self.P, self.feasible, cfg)


def _along(v: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


def build_search_space(
    net: Network,
    chain_types: Sequence[int] | None = None,
    *,
    candidates: Sequence[np.ndarray] | None = None,
    route_ber: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> SearchSpace:
    """Compute the factors of all chains of usable agents (eqs. 2-14), vectorised.

    Args:
        candidates: per step, the agents to search over (default: every usable agent of
            the step's type); each must be usable, which is not checked again.
        route_ber: route E[BER] between sources and targets (default
            :meth:`Network.route_ber`), for a caller that keeps its own route rows.

    Raises:
        OptimumUnavailable: more than :data:`MAX_CHAINS` chains to search.
    """
    cfg = net.cfg
    chain_types = tuple(cfg.chain_types if chain_types is None else chain_types)
    if candidates is None:
        cands = tuple(net.agents_of_type(t, usable=True) for t in chain_types)
    else:
        cands = tuple(np.asarray(c, dtype=np.int64) for c in candidates)
        if len(cands) != len(chain_types):
            raise ValueError(f"{len(cands)} candidate sets for {len(chain_types)} steps")
    route_ber = net.route_ber if route_ber is None else route_ber
    size = int(np.prod([len(c) for c in cands], dtype=np.float64))
    if size > MAX_CHAINS:
        raise OptimumUnavailable(
            f"exhaustive search over {size:,} chains exceeds the limit of {MAX_CHAINS:,} "
            f"({net.n_agents} agents); the exact optimum is unavailable at this size"
        )
    n = len(chain_types)
    lam = net.arrival_rate
    lat = net.agent_latency()
    out_rate = net.outage_rate
    log_p = np.zeros([1] * n)
    log_keep = np.zeros([1] * n)
    L = np.zeros([1] * n)
    log_nc = np.zeros([1] * n)
    mu_min = np.full([1] * n, np.inf)
    for k, c in enumerate(cands):
        log_p = log_p + _along(np.log(net.p_success[c]), k, n)
        L = L + _along(lat[c], k, n)
        log_nc = log_nc + _along(np.log1p(-out_rate[c]), k, n)
        mu_min = np.minimum(mu_min, _along(net.mu[c], k, n))
        if k + 1 < n:
            hop = route_ber(c, cands[k + 1])
            shape = [1] * n
            shape[k], shape[k + 1] = len(c), len(cands[k + 1])
            log_keep = log_keep + np.log1p(-hop).reshape(shape)
    grid = tuple(len(c) for c in cands)
    C = np.broadcast_to(np.exp(log_p) / n, grid)  # eq. 2
    B = np.broadcast_to(-np.expm1(log_keep), grid)  # eq. 3
    L = np.broadcast_to(L, grid)  # eq. 8
    p_over = qoe.overload_probability(lam, mu_min[..., None])  # eqs. 11-13
    P = np.broadcast_to(1.0 - np.exp(log_nc) * (1.0 - p_over), grid)  # eq. 14
    feasible = qoe.feasibility(C, L, np.ones(grid, dtype=bool), cfg)
    util = qoe.utilities(C, B, L, P, cfg)
    return SearchSpace(cands, C, B, L, P, feasible, util, cfg.c_th)


@dataclass(frozen=True)
class OptimumResult:
    """The exact optimum and the random floor for one request and network state."""

    chain: tuple[int, ...]
    elam: str | None
    r_episode: float
    Q_subjective: float
    random_mean: float
    feasible_count: int

    def to_dict(self) -> dict:
        """JSON rendering of ``sim-ric optimum``."""
        return {
            "chain": list(self.chain),
            "elam": self.elam,
            "r_episode": self.r_episode,
            "Q_subjective": self.Q_subjective,
            "random_mean": self.random_mean,
            "feasible_count": self.feasible_count,
        }


def exact_optimum(
    space: SearchSpace,
    intent: Sequence[float],
    *,
    fees: Mapping[str, float] | None = None,
    objective: Objective = "weighted",
    cfg=None,
) -> OptimumResult:
    """Exhaustive optimum over all feasible chains and E-LAMs (MODEL.md).

    The fee does not depend on the chain, so the best E-LAM is the cheapest and the
    random floor pays the mean fee of a uniformly drawn E-LAM.

    Raises:
        OptimumUnavailable: no feasible chain.
    """
    from agentnet.config import DEFAULT

    cfg = DEFAULT if cfg is None else cfg
    if space.feasible_count == 0:
        raise OptimumUnavailable("no feasible chain on this network state")
    fees = dict(fees or {})
    min_fee = min(fees.values()) if fees else 0.0
    best_elam = min(fees, key=fees.get) if fees else None
    mean_fee = float(np.mean(list(fees.values()))) if fees else 0.0
    q = space.subjective(np.asarray(intent, dtype=float), objective, cfg)
    flat = np.where(space.feasible, q, -np.inf).reshape(-1)
    best = int(np.argmax(flat))
    q_best = float(flat[best])
    q_mean = float(q[space.feasible].mean())
    return OptimumResult(
        chain=space.chain_at(best),
        elam=best_elam,
        r_episode=float(qoe.episode_bonus(q_best, min_fee, objective)),
        Q_subjective=q_best,
        random_mean=float(qoe.episode_bonus(q_mean, mean_fee, objective)),
        feasible_count=space.feasible_count,
    )


def normalized_score(score: float, optimum: float, random_mean: float) -> float:
    """(score - random) / (optimum - random) (MODEL.md).

    When every feasible chain scores the same (optimum == random), a decision that
    reaches the optimum scores 1 and anything worse 0.
    """
    span = optimum - random_mean
    if span <= 1e-12:
        return 1.0 if score >= optimum - 1e-12 else 0.0
    return (score - random_mean) / span


# ---- baselines ------------------------------------------------------------------------------
def random_chain(space: SearchSpace, rng: np.random.Generator) -> tuple[int, ...]:
    """Random baseline: a uniformly drawn feasible chain (MODEL.md)."""
    flat = np.flatnonzero(space.feasible.reshape(-1))
    if len(flat) == 0:
        raise OptimumUnavailable("no feasible chain on this network state")
    return space.chain_at(int(rng.choice(flat)))


GREEDY_FACTOR_ORDER = ("C", "B", "L", "P")


def greedy_chain(
    net: Network, intent: Sequence[float], chain_types: Sequence[int] | None = None
) -> tuple[int, ...]:
    """Greedy baseline (MODEL.md): each step takes, among usable agents (right type,
    available, rho_i < 1; at the last step also making the chain feasible), the best on the
    factor with the largest weight of s, ties broken by the next weight.

    Per-agent factors: capability p_i (higher is better), route E[BER] from the
    predecessor, latency L_i and outage rate (lower is better). Equal weights keep the
    order C, B, L, P. When no last agent makes the chain feasible, the best usable one is
    taken (the chain is then infeasible and scores as such).
    """
    from agentnet.chain import chain_factors

    cfg = net.cfg
    chain_types = tuple(cfg.chain_types if chain_types is None else chain_types)
    s = np.asarray(intent, dtype=float)
    order = np.argsort(-s, kind="stable")
    lat = net.agent_latency()
    out_rate = net.outage_rate
    chain: list[int] = []
    for k, t in enumerate(chain_types):
        cand = net.agents_of_type(t, usable=True)
        if len(cand) == 0:
            raise OptimumUnavailable(f"no usable agent of type {t}")
        ber = np.zeros(len(cand)) if k == 0 else net.route_ber(np.array([chain[-1]]), cand)[0]
        # Keys oriented so that smaller is better, for a lexicographic sort.
        keys = {"C": -net.p_success[cand], "B": ber, "L": lat[cand], "P": out_rate[cand]}
        if k == len(chain_types) - 1:
            ok = np.array(
                [
                    qoe.chain_metrics(chain_factors(net, [*chain, int(a)]), cfg)["feasible"]
                    for a in cand
                ]
            )
            if ok.any():
                cand = cand[ok]
                keys = {f: v[ok] for f, v in keys.items()}
        sort_keys = [keys[GREEDY_FACTOR_ORDER[j]] for j in order]
        best = np.lexsort(tuple(reversed(sort_keys)))[0]
        chain.append(int(cand[best]))
    return tuple(chain)
