"""Chains on a concrete network: gather the inputs of a chain and score it (MODEL.md).

:func:`evaluate_chain` is the single place where a decision (chain, E-LAM fee) for a
request is turned into factors, Q, the subjective QoE, step rewards and the episode
bonus; the env, the optimum, the baselines, the MQTT service and the CLI all call it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from agentnet import qoe
from agentnet.network import Network
from agentnet.qoe import ChainFactors, ChainResult, Objective


def chain_factors(net: Network, chain: Sequence[int]) -> ChainFactors:
    """Per-agent inputs and hop BERs of ``chain`` on ``net``."""
    idx = np.asarray(chain, dtype=np.int64)
    hops = np.array([net.route_ber_from(int(a))[int(b)] for a, b in itertools.pairwise(idx)])
    return ChainFactors(
        p_success=net.p_success[idx],
        mu=net.mu[idx],
        cv=net.cv[idx],
        outage_rate=net.outage_rate[idx],
        hop_ber=hops,
        arrival_rate=net.arrival_rate,
    )


def step_candidates(net: Network, step_type: int) -> np.ndarray:
    """The agents a step's indicators are normalised over: available agents of its type.

    MODEL.md normalises "over the agents of the step's required type in the current
    state"; a crashed agent is not part of the current state's choice set, so it is left
    out (it could only widen the range with values no one can pick).
    """
    return np.flatnonzero((net.types == step_type) & net.available)


def _indicator(values: np.ndarray, query: np.ndarray, higher: bool, valid: np.ndarray):
    """I() of ``query`` values against the min-max of ``values[valid]``, clipped to [0, 1]."""
    q = np.asarray(query, dtype=float)
    if not valid.any():
        return np.zeros(q.shape)
    lo, hi = values[valid].min(), values[valid].max()
    if not hi > lo:
        return np.where(np.isfinite(q), 1.0, 0.0)
    with np.errstate(invalid="ignore"):
        scaled = np.clip((q - lo) / (hi - lo), 0.0, 1.0)
    scaled = scaled if higher else 1.0 - scaled
    return np.where(np.isfinite(q), scaled, 0.0)


def step_indicators(
    net: Network, step_type: int, predecessor: int | None, agents: np.ndarray
) -> np.ndarray:
    """[I(C_i), I(BER_i), I(L_i), I(F_i/O_i)] of ``agents`` at a step (eq. 34), shape (k, 4).

    The min-max runs over :func:`step_candidates`; ``agents`` may include others (a wrong
    or crashed pick), whose values are clipped into [0, 1]. BER_i is the route E[BER]
    from the predecessor (0 at the first step, so I(BER) = 1); an agent with rho_i >= 1
    gets I(L_i) = 0 and is left out of the latency min-max (MODEL.md).
    """
    agents = np.asarray(agents, dtype=np.int64)
    cand = step_candidates(net, step_type)
    p = net.p_success
    lat = net.agent_latency()
    out_rate = net.outage_rate
    if predecessor is None:
        ber = np.zeros(net.n_agents)
    else:
        ber = net.route_ber_from(int(predecessor))
    all_valid = np.ones(len(cand), dtype=bool)
    lat_c = lat[cand]
    return np.stack(
        [
            _indicator(p[cand], p[agents], True, all_valid),
            _indicator(ber[cand], ber[agents], False, all_valid),
            _indicator(lat_c, lat[agents], False, np.isfinite(lat_c)),
            _indicator(out_rate[cand], out_rate[agents], False, all_valid),
        ],
        axis=-1,
    )


def step_rewards(
    net: Network,
    chain: Sequence[int],
    intent: np.ndarray,
    chain_types: Sequence[int] | None = None,
) -> list[float]:
    """r_step of each step of ``chain`` under ``intent`` (eq. 34)."""
    chain_types = net.cfg.chain_types if chain_types is None else chain_types
    rewards = []
    for k, (agent, step_type) in enumerate(zip(chain, chain_types, strict=True)):
        pred = None if k == 0 else int(chain[k - 1])
        ind = step_indicators(net, int(step_type), pred, np.array([agent]))[0]
        ok = bool(net.types[agent] == step_type and net.available[agent])
        rewards.append(qoe.step_reward(ok, intent, ind, net.cfg.delta))
    return rewards


def evaluate_chain(
    net: Network,
    chain: Sequence[int],
    intent: Sequence[float],
    *,
    objective: Objective = "weighted",
    fee: float = 0.0,
    chain_types: Sequence[int] | None = None,
) -> ChainResult:
    """Score one decision: factors, Q, Q*_s, step rewards and episode bonus (MODEL.md).

    Args:
        net: the network in its current state.
        chain: agent ids, one per step.
        intent: [w_C, w_B, w_L, w_P] (the TRUE vector when scoring a decision).
        objective: ``"weighted"`` (default) or ``"paper"``.
        fee: F(kappa) of the E-LAM that translated the intent.
        chain_types: required type of each step (default: the configuration's).

    Returns:
        The :class:`ChainResult`.

    Raises:
        ValueError: wrong chain length or an agent id out of range.
    """
    cfg = net.cfg
    chain_types = tuple(cfg.chain_types if chain_types is None else chain_types)
    chain = tuple(int(a) for a in chain)
    if len(chain) != len(chain_types):
        raise ValueError(f"chain has {len(chain)} agents, the request needs {len(chain_types)}")
    bad = [a for a in chain if not 0 <= a < net.n_agents]
    if bad:
        raise ValueError(f"agent ids out of range [0, {net.n_agents}): {bad}")
    s = np.asarray(intent, dtype=float)
    metrics = qoe.chain_metrics(chain_factors(net, chain), cfg)
    reason = ""
    for k, (a, t) in enumerate(zip(chain, chain_types, strict=True)):
        if net.types[a] != t:
            reason = f"step {k + 1}: agent {a} has type {net.types[a]}, the step needs type {t}"
            break
        if not net.available[a]:
            reason = f"step {k + 1}: agent {a} is unavailable (crashed)"
            break
    if not reason:
        reason = qoe.infeasibility_reason(metrics, cfg)
    feasible = not reason
    C, B, L, P = metrics["C"], metrics["B"], metrics["L"], metrics["P_outage"]
    if metrics["stable"]:
        u = qoe.utilities(C, B, L, P, cfg)
        util = tuple(float(x) for x in u) if feasible else None
    else:
        util = None
    q_sub = float(
        qoe.subjective_qoe(objective, s, C, B, L, P, feasible, cfg)
        if metrics["stable"]
        else (qoe.INFEASIBLE_WEIGHTED if objective == "weighted" else qoe.INFEASIBLE_PAPER)
    )
    return ChainResult(
        chain=chain,
        feasible=feasible,
        reason=reason,
        C=C,
        B=B,
        L=L,
        P_outage=P,
        Q=metrics["Q"],
        Q_subjective=q_sub,
        utilities=util,
        r_steps=tuple(step_rewards(net, chain, s, chain_types)),
        r_episode=float(qoe.episode_bonus(q_sub, fee, objective)),
    )
