"""Chain QoE of MODEL.md: eqs. 2-15, the subjective objectives and the rewards (eqs. 34, 35).

Every function is vectorised: per-agent inputs have shape (..., n) (n = chain length,
last axis), per-hop inputs shape (..., n - 1), and the results have shape (...). So the
same code scores one chain, a batch of chains, or the whole exhaustive search grid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy.special import pdtrc

from agentnet.config import DEFAULT, ModelConfig

Objective = Literal["weighted", "paper"]
OBJECTIVES: tuple[Objective, ...] = ("weighted", "paper")
INFEASIBLE_WEIGHTED = -1.0
"""Q*_s of an infeasible chain under the `weighted` objective (MODEL.md)."""
INFEASIBLE_PAPER = -10.0
"""Q*_paper of an infeasible chain (MODEL.md)."""
PAPER_WEIGHT_FLOOR = 1e-3
"""A zero weight is floored at this value in the paper's objective (MODEL.md, golden cases)."""


# ---- factors -------------------------------------------------------------------------
def chain_capability(p_success: np.ndarray) -> np.ndarray:
    """C_GenSFC = (1/n) prod_i p_i, exactly as eq. 2 writes it."""
    p = np.asarray(p_success, dtype=float)
    return np.prod(p, axis=-1) / p.shape[-1]


def chain_ber(hop_ber: np.ndarray) -> np.ndarray:
    """B_GenSFC = 1 - prod_{i=2..n} (1 - E[BER_i]) (eq. 3); hop_ber has shape (..., n-1)."""
    hop = np.asarray(hop_ber, dtype=float)
    # -expm1(sum log1p(-b)) keeps precision for tiny BERs.
    return -np.expm1(np.sum(np.log1p(-hop), axis=-1))


def utilization(arrival_rate: float | np.ndarray, mu: np.ndarray) -> np.ndarray:
    """rho_i = lambda / mu_i (eq. 4)."""
    return np.asarray(arrival_rate, dtype=float) / np.asarray(mu, dtype=float)


def agent_latency(arrival_rate: float | np.ndarray, mu: np.ndarray, cv: np.ndarray) -> np.ndarray:
    """Mean M/G/1 sojourn time L_i = (1/mu)(1 + rho (1 + V^2) / (2 (1 - rho))) (eqs. 6, 7).

    Returns +inf where rho_i >= 1 (the queue is unstable, eq. 4).
    """
    mu = np.asarray(mu, dtype=float)
    cv = np.asarray(cv, dtype=float)
    rho = utilization(arrival_rate, mu)
    stable = rho < 1.0
    safe = np.where(stable, rho, 0.0)
    latency = (1.0 / mu) * (1.0 + safe * (1.0 + cv**2) / (2.0 * (1.0 - safe)))
    return np.where(stable, latency, np.inf)


def chain_latency(agent_latencies: np.ndarray) -> np.ndarray:
    """L_GenSFC = sum_i L_i (eq. 8)."""
    return np.sum(np.asarray(agent_latencies, dtype=float), axis=-1)


def no_crash_probability(outage_rate: np.ndarray) -> np.ndarray:
    """P_no-crash = prod_i (1 - |F_i| / |O_i|) (eq. 9)."""
    return np.prod(1.0 - np.asarray(outage_rate, dtype=float), axis=-1)


def overload_probability(arrival_rate: float | np.ndarray, mu: np.ndarray) -> np.ndarray:
    """P_over = 1 - PoissonCDF(floor(lambda_max); lambda), lambda_max = min_i mu_i (eqs. 11-13).

    The bottleneck of eq. 11 is the agent with the highest rho_i, i.e. the lowest mu_i
    (eq. 12).
    """
    lam_max = np.min(np.asarray(mu, dtype=float), axis=-1)
    return pdtrc(np.floor(lam_max), np.asarray(arrival_rate, dtype=float))


def outage_probability(
    arrival_rate: float | np.ndarray, mu: np.ndarray, outage_rate: np.ndarray
) -> np.ndarray:
    """P_outage = 1 - P_no-crash (1 - P_over) (eq. 14)."""
    return 1.0 - no_crash_probability(outage_rate) * (1.0 - overload_probability(arrival_rate, mu))


def objective_qoe(
    C: np.ndarray, B: np.ndarray, L: np.ndarray, P: np.ndarray, c_th: float = DEFAULT.c_th
) -> np.ndarray:
    """Q = (1 - P_outage) ((1 - B) ln(C / C_th) - ln L) (eq. 15)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (1.0 - P) * ((1.0 - B) * np.log(C / c_th) - np.log(L))


# ---- subjective QoE --------------------------------------------------------------------
def utilities(
    C: np.ndarray, B: np.ndarray, L: np.ndarray, P: np.ndarray, cfg: ModelConfig = DEFAULT
) -> np.ndarray:
    """Weber-Fechner utilities [u_C, u_B, u_L, u_P], each in [0, 1], last axis of size 4.

    MODEL.md "Subjective QoE": u_C = clip(ln(C/C_th)/ln(C_ref/C_th)), u_B = 1 -
    clip(log10(B/1e-5)/4), u_L = clip(ln(L_max/L)/ln(L_max/L_ref)), u_P = 1 -
    clip(log10(P/1e-3)/3), clips to [0, 1]; the constants are ``cfg``'s (``c_ref``,
    ``b_ref``, ``b_decades``, ``l_ref``, ``p_ref``, ``p_decades``). B = 0 or P = 0 give a
    utility of 1.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        u_c = np.clip(np.log(C / cfg.c_th) / np.log(cfg.c_ref / cfg.c_th), 0.0, 1.0)
        u_b = 1.0 - np.clip(np.log10(B / cfg.b_ref) / cfg.b_decades, 0.0, 1.0)
        u_l = np.clip(np.log(cfg.l_max / L) / np.log(cfg.l_max / cfg.l_ref), 0.0, 1.0)
        u_p = 1.0 - np.clip(np.log10(P / cfg.p_ref) / cfg.p_decades, 0.0, 1.0)
    return np.stack(np.broadcast_arrays(u_c, u_b, u_l, u_p), axis=-1)


def subjective_weighted(
    intent: np.ndarray,
    C: np.ndarray,
    B: np.ndarray,
    L: np.ndarray,
    P: np.ndarray,
    feasible: np.ndarray,
    cfg: ModelConfig = DEFAULT,
) -> np.ndarray:
    """Q*_s = s . [u_C, u_B, u_L, u_P]; -1 for an infeasible chain (MODEL.md, `weighted`)."""
    u = utilities(C, B, L, P, cfg)
    q = np.einsum("...k,...k->...", u, np.asarray(intent, dtype=float))
    return np.where(feasible, q, INFEASIBLE_WEIGHTED)


def subjective_paper(
    intent: np.ndarray,
    C: np.ndarray,
    B: np.ndarray,
    L: np.ndarray,
    P: np.ndarray,
    feasible: np.ndarray,
    cfg: ModelConfig = DEFAULT,
) -> np.ndarray:
    """Q*_paper = (1 - w_P P)((1 - w_B B) ln(w_C C / C_th) - ln(w_L L)) (eq. 35 without F).

    A weight of 0 is floored at 1e-3; an infeasible chain scores -10 (MODEL.md).

    MODEL.md says the floor applies "inside ln", but the independent implementation behind
    ``golden_qoe.json`` floors every weight, also w_P and w_B outside the logarithms (its
    zero-weight case is -6.872734566937718 with the floor everywhere, -6.875624072010093
    with it only inside ln). The golden cases are the acceptance check, so every weight
    is floored here; the difference is at most 1e-3 * P_outage (resp. B) relative.
    """
    s = np.maximum(np.asarray(intent, dtype=float), PAPER_WEIGHT_FLOOR)
    w_c, w_b, w_l, w_p = (s[..., k] for k in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        q = (1.0 - w_p * P) * ((1.0 - w_b * B) * np.log(w_c * C / cfg.c_th) - np.log(w_l * L))
    return np.where(feasible, q, INFEASIBLE_PAPER)


def subjective_qoe(
    objective: Objective,
    intent: np.ndarray,
    C: np.ndarray,
    B: np.ndarray,
    L: np.ndarray,
    P: np.ndarray,
    feasible: np.ndarray,
    cfg: ModelConfig = DEFAULT,
) -> np.ndarray:
    """Dispatch to :func:`subjective_weighted` or :func:`subjective_paper`."""
    if objective == "weighted":
        return subjective_weighted(intent, C, B, L, P, feasible, cfg)
    if objective == "paper":
        return subjective_paper(intent, C, B, L, P, feasible, cfg)
    raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")


def episode_bonus(q_subjective: np.ndarray, fee: float | np.ndarray, objective: Objective):
    """r_episode (eq. 35, MODEL.md): 10 Q*_s - F(kappa) (`weighted`), Q*_paper - F (`paper`)."""
    scale = 10.0 if objective == "weighted" else 1.0
    return scale * np.asarray(q_subjective) - fee


# ---- feasibility -------------------------------------------------------------------------
def feasibility(
    C: np.ndarray, L: np.ndarray, stable: np.ndarray, cfg: ModelConfig = DEFAULT
) -> np.ndarray:
    """Constraints 18b, 18c and stability (eq. 4), vectorised. Type and availability are
    checked where the chain's agents are known (:func:`evaluate_chain`)."""
    with np.errstate(invalid="ignore"):
        return stable & (cfg.c_th <= C) & (cfg.l_max >= L)


# ---- one chain, all in one record --------------------------------------------------------
@dataclass(frozen=True)
class ChainFactors:
    """Per-agent inputs of a chain (n agents) and the route E[BER] of its n - 1 hops."""

    p_success: np.ndarray
    mu: np.ndarray
    cv: np.ndarray
    outage_rate: np.ndarray
    hop_ber: np.ndarray
    arrival_rate: float


@dataclass(frozen=True)
class ChainResult:
    """Everything `sim-ric inspect` reports about a chain."""

    chain: tuple[int, ...]
    feasible: bool
    reason: str
    C: float
    B: float
    L: float
    P_outage: float
    Q: float
    Q_subjective: float
    utilities: tuple[float, float, float, float] | None
    r_steps: tuple[float, ...]
    r_episode: float

    def to_dict(self) -> dict:
        """A JSON-friendly dict (non-finite numbers become None)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and not np.isfinite(value):
                out[key] = None
        out["chain"] = list(self.chain)
        out["r_steps"] = list(self.r_steps)
        if self.utilities is not None:
            out["utilities"] = list(self.utilities)
        return out


def chain_metrics(f: ChainFactors, cfg: ModelConfig = DEFAULT) -> dict[str, float | bool]:
    """C, B, L, P_outage, Q, stability and feasibility (eqs. 2-15, 18b-c) of one chain."""
    C = float(chain_capability(f.p_success))
    B = float(chain_ber(f.hop_ber)) if len(f.hop_ber) else 0.0
    stable = bool(np.all(utilization(f.arrival_rate, f.mu) < 1.0))
    if stable:
        L = float(chain_latency(agent_latency(f.arrival_rate, f.mu, f.cv)))
        P = float(outage_probability(f.arrival_rate, f.mu, f.outage_rate))
        Q = float(objective_qoe(C, B, L, P, cfg.c_th))
    else:
        L = P = Q = float("nan")
    feasible = bool(feasibility(C, L, stable, cfg)) if stable else False
    return {"C": C, "B": B, "L": L, "P_outage": P, "Q": Q, "stable": stable, "feasible": feasible}


def infeasibility_reason(metrics: dict, cfg: ModelConfig = DEFAULT) -> str:
    """Why a chain breaks a constraint, or "" when it is feasible."""
    if not metrics["stable"]:
        return "unstable: rho_i >= 1 at some agent (eq. 4)"
    if metrics["C"] < cfg.c_th:
        return f"capability {metrics['C']:.4g} below C_th {cfg.c_th} (eq. 18c)"
    if metrics["L"] > cfg.l_max:
        return f"latency {metrics['L']:.4g} s above L_max {cfg.l_max} s (eq. 18b)"
    return ""


# ---- step reward (eq. 34) --------------------------------------------------------------------
def minmax_best(values: np.ndarray, higher_is_better: bool, valid: np.ndarray | None = None):
    """Min-max normalisation I() oriented so that 1 is best (MODEL.md, eq. 34).

    Args:
        values: one value per candidate.
        higher_is_better: orientation.
        valid: candidates that take part in the min-max (others get 0).

    Returns:
        I per candidate in [0, 1]; 1 for all when every valid candidate shares one value.
    """
    v = np.asarray(values, dtype=float)
    valid = np.ones(v.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    out = np.zeros(v.shape)
    if not valid.any():
        return out
    lo, hi = v[valid].min(), v[valid].max()
    if hi - lo <= 0.0 or not np.isfinite(hi - lo):
        out[valid] = 1.0
        return out
    scaled = (v[valid] - lo) / (hi - lo)
    out[valid] = scaled if higher_is_better else 1.0 - scaled
    return out


def step_indicators(
    p_success: np.ndarray,
    hop_ber: np.ndarray,
    latency: np.ndarray,
    outage_rate: np.ndarray,
) -> np.ndarray:
    """[I(C_i), I(BER_i), I(L_i), I(F_i/O_i)] over the candidates of one step (eq. 34).

    Inputs are per candidate (the agents of the step's required type in the current
    state); ``latency`` is +inf for an agent with rho_i >= 1, which gets I(L_i) = 0 and is
    left out of the latency min-max. Returns shape (n_candidates, 4).
    """
    stable = np.isfinite(latency)
    return np.stack(
        [
            minmax_best(p_success, True),
            minmax_best(hop_ber, False),
            minmax_best(latency, False, stable),
            minmax_best(outage_rate, False),
        ],
        axis=-1,
    )


def step_reward(flag_ok: bool, intent: np.ndarray, indicators: np.ndarray, delta: float = 1.0):
    """r_step = r_flag + s . [I(C_i), I(BER_i), I(L_i), I(F_i/O_i)] (eq. 34)."""
    r_flag = delta if flag_ok else -delta
    return r_flag + float(np.dot(np.asarray(intent, dtype=float), indicators))
