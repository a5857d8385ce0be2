"""The optimizer unit: maestro eq. 1 on the utilities of NEGOTIATION.md, and the closed-form
theoretical consensus it converges to.

Tenant i wants the admitted rate per chain x_i near its target t_i with weight a_i; the
mediator wants the tenants to agree and the mean to stay under the capacity λ_cap. Costs
(minimised; maestro eq. 1 descends them):

    J_i(x_i) = a_i/2 · (x_i − t_i)²
    J_0(x)   = c/2 · Σ_i (x_i − x̄)²  +  κ/2 · n · max(0, x̄ − λ_cap)²,   κ = 10 · mean_i a_i

    ∂J_i/∂x_i = a_i (x_i − t_i)
    ∂J_0/∂x_i = c (x_i − x̄) + κ max(0, x̄ − λ_cap)       (Σ_j (x_j − x̄) = 0)

Eq. 1: x_i ← clip(x_i − η (∂J_i/∂x_i + ∂J_0/∂x_i), r_min, r_max) until max_i |Δx_i| < ε.
As c grows the x_i meet at the theoretical consensus x* (:func:`theoretical_consensus`);
:func:`consensus` runs eq. 1 over a rising schedule of c, each stage warm-started from the
last, with η = 1 / (max a + c + κ) (below 2 / the largest curvature, so every stage is
stable).

A tenant's own optimizer (:func:`tenant_proposal`) runs eq. 1 on one variable, with the
mediator's announced consensus m standing in for ∇J_0: ∂J_0/∂x_i ≈ c_t (x_i − m).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

KAPPA_PER_WEIGHT = 10.0
"""κ = 10 · mean_i a_i (NEGOTIATION.md)."""


@dataclass(frozen=True)
class Problem:
    """One negotiation as the optimizer sees it.

    Attributes:
        targets: t_i ≥ 0, requests/s per chain.
        weights: a_i > 0.
        capacity: λ_cap (requests/s per chain).
        r_min: lower bound of the regulatory unit (default 0).
        r_max: upper bound of the regulatory unit (default +∞: no rule).
    """

    targets: tuple[float, ...]
    weights: tuple[float, ...]
    capacity: float
    r_min: float = 0.0
    r_max: float = math.inf

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError("a negotiation needs at least one tenant")
        if len(self.targets) != len(self.weights):
            raise ValueError(
                f"{len(self.targets)} targets but {len(self.weights)} weights; one each"
            )
        if not all(math.isfinite(t) and t >= 0 for t in self.targets):
            raise ValueError(f"targets must be finite and >= 0, got {list(self.targets)}")
        if not all(math.isfinite(a) and a > 0 for a in self.weights):
            raise ValueError(f"weights must be finite and > 0, got {list(self.weights)}")
        if not (math.isfinite(self.capacity) and self.capacity >= 0):
            raise ValueError(f"capacity must be finite and >= 0, got {self.capacity}")
        if not (math.isfinite(self.r_min) and 0 <= self.r_min <= self.r_max):
            raise ValueError(f"need 0 <= r_min <= r_max, got [{self.r_min}, {self.r_max}]")

    @property
    def n(self) -> int:
        """Number of tenants."""
        return len(self.targets)

    @property
    def kappa(self) -> float:
        """κ = 10 · mean_i a_i."""
        return KAPPA_PER_WEIGHT * float(np.mean(self.weights))

    def clip(self, x: float) -> float:
        """x clipped to [r_min, r_max]."""
        return min(max(x, self.r_min), self.r_max)

    def with_weights(self, weights: Sequence[float]) -> Problem:
        """The same problem with other weights (the arbitral unit's penalties)."""
        return Problem(tuple(self.targets), tuple(weights), self.capacity, self.r_min, self.r_max)


def theoretical_consensus(p: Problem) -> float:
    """x* of NEGOTIATION.md (the closed form the accuracy is measured against).

    x_w = Σ a_i t_i / Σ a_i; x* = x_w when x_w ≤ λ_cap, else
    (Σ a_i t_i + κ n λ_cap) / (Σ a_i + κ n); then clipped to [r_min, r_max].
    """
    a = np.asarray(p.weights, dtype=float)
    t = np.asarray(p.targets, dtype=float)
    at, sa = float(a @ t), float(a.sum())
    x = at / sa
    if x > p.capacity:
        kn = p.kappa * p.n
        x = (at + kn * p.capacity) / (sa + kn)
    return p.clip(x)


def costs(p: Problem, x: Sequence[float], c: float) -> tuple[np.ndarray, float]:
    """(J_i per tenant, J_0) at the proposals ``x`` for a consensus weight ``c``."""
    x = np.asarray(x, dtype=float)
    a = np.asarray(p.weights, dtype=float)
    t = np.asarray(p.targets, dtype=float)
    xb = float(x.mean())
    j_i = 0.5 * a * (x - t) ** 2
    j_0 = (
        0.5 * c * float(((x - xb) ** 2).sum())
        + 0.5 * p.kappa * p.n * max(0.0, xb - p.capacity) ** 2
    )
    return j_i, j_0


def gradient(p: Problem, x: Sequence[float], c: float) -> np.ndarray:
    """∂J_i/∂x_i + ∂J_0/∂x_i for every tenant (module docstring)."""
    x = np.asarray(x, dtype=float)
    a = np.asarray(p.weights, dtype=float)
    t = np.asarray(p.targets, dtype=float)
    xb = float(x.mean())
    return a * (x - t) + c * (x - xb) + p.kappa * max(0.0, xb - p.capacity)


@dataclass(frozen=True)
class OptimizerConfig:
    """Settings of eq. 1."""

    c_schedule: tuple[float, ...] = field(
        default=(10.0, 100.0, 1000.0),
        metadata={"help": "consensus weights c, as multiples of max a_i, one stage each"},
    )
    eps: float = field(
        default=1e-9,
        metadata={"help": "stop a stage when max |Δx_i| < eps × max(λ_cap, max t_i)"},
    )
    max_iterations: int = field(default=200_000, metadata={"help": "iterations per stage at most"})

    def __post_init__(self) -> None:
        if not self.c_schedule or any(not c > 0 for c in self.c_schedule):
            raise ValueError(f"c_schedule needs positive entries, got {self.c_schedule}")
        if not self.eps > 0:
            raise ValueError(f"eps must be positive, got {self.eps}")
        if self.max_iterations < 1:
            raise ValueError("max_iterations must be >= 1")


@dataclass(frozen=True)
class OptimizerResult:
    """Where eq. 1 stopped.

    Attributes:
        proposals: x_i per tenant.
        value: the consensus x̄ = mean_i x_i.
        iterations: eq. 1 updates over all stages.
        converged: every stage met its ε before ``max_iterations``.
    """

    proposals: tuple[float, ...]
    value: float
    iterations: int
    converged: bool


def consensus(
    p: Problem, cfg: OptimizerConfig | None = None, start: Sequence[float] | None = None
) -> OptimizerResult:
    """Run eq. 1 to its consensus (module docstring).

    Args:
        p: the problem.
        cfg: the c schedule and stopping rule.
        start: initial proposals (default: the targets, clipped).

    Returns:
        The proposals and their mean.
    """
    cfg = cfg or OptimizerConfig()
    # Plain floats: for 2-10 tenants a Python loop is several times faster than numpy's
    # per-call overhead, and eq. 1 runs tens of thousands of cheap updates.
    t = [float(v) for v in p.targets]
    a = [float(v) for v in p.weights]
    n, kappa, cap, lo, hi = p.n, p.kappa, p.capacity, p.r_min, p.r_max
    a_max = max(a)
    x = [p.clip(v) for v in (t if start is None else start)]
    if len(x) != n:
        raise ValueError(f"start has {len(x)} proposals for {n} tenants")
    eps = cfg.eps * max(cap, max(t), 1e-12)
    total, converged = 0, True
    for factor in cfg.c_schedule:
        c = factor * a_max
        eta = 1.0 / (a_max + c + kappa)
        for _ in range(cfg.max_iterations):
            xb = sum(x) / n
            over = kappa * (xb - cap) if xb > cap else 0.0
            step = 0.0
            for i in range(n):
                xi = x[i]
                v = xi - eta * (a[i] * (xi - t[i]) + c * (xi - xb) + over)
                if v < lo:
                    v = lo
                elif v > hi:
                    v = hi
                d = v - xi if v > xi else xi - v
                if d > step:
                    step = d
                x[i] = v
            total += 1
            if step < eps:
                break
        else:
            converged = False
    return OptimizerResult(tuple(x), sum(x) / n, total, converged)


def tenant_proposal(
    target: float,
    weight: float,
    announced: float,
    pressure: float,
    r_min: float = 0.0,
    r_max: float = math.inf,
    eps: float = 1e-10,
) -> float:
    """A tenant's optimizer: eq. 1 on its own x with ∂J_0/∂x ≈ c_t (x − m).

    Args:
        target: t_i.
        weight: a_i.
        announced: m, the mediator's announced consensus.
        pressure: c_t / a_i, how hard the mediator's feedback pulls (≥ 0).
        r_min: lower bound.
        r_max: upper bound.
        eps: stop when |Δx| < eps × max(t, m).

    Returns:
        The tenant's proposal, (t + (c_t/a_i) m) / (1 + c_t/a_i) clipped to the bounds.
    """
    c = pressure * weight
    eta = 1.0 / (weight + c)
    x = min(max(target, r_min), r_max)
    tol = eps * max(target, announced, 1e-12)
    for _ in range(10_000):
        v = x - eta * (weight * (x - target) + c * (x - announced))
        v = min(max(v, r_min), r_max)
        done = abs(v - x) < tol
        x = v
        if done:
            break
    return x
