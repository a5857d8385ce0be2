"""Beam search over the predicted vector: the baseline where the exact optimum is out of
reach (thousands of agents).

The search extends ``width`` partial chains one step at a time with every usable agent
of the step's type, scores each extension by the weighted subjective QoE (MODEL.md) of the
prefix completed optimistically (each factor of every later step at its best over that
step's usable agents, no BER for the later hops; exact at the last step), and keeps the
``width`` best. Route E[BER] rows come from the state's
:class:`~xapp_composer.routes.RouteTable` (one Dijkstra per kept chain and step), so no
(N, N) array is built.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agentnet.config import ModelConfig
from agentnet.qoe import subjective_weighted
from xapp_composer.features import BatchState


def weighted_from_sums(
    intent: Sequence[float] | np.ndarray,
    logp: np.ndarray,
    keep: np.ndarray,
    lat: np.ndarray,
    lnc: np.ndarray,
    pover: np.ndarray,
    n: int,
    cfg: ModelConfig,
) -> np.ndarray:
    """Q*_s (MODEL.md, `weighted`) of chains of ``n`` agents from their running sums.

    Args:
        intent: the vector [w_C, w_B, w_L, w_P] the chains are scored for.
        logp: sum of ln p_i (C = exp(logp) / n, eq. 2).
        keep: sum of ln(1 - E[BER]) over the hops (B = 1 - exp(keep), eq. 3).
        lat: sum of L_i (eq. 8).
        lnc: sum of ln(1 - F_i / O_i) (P_no-crash, eq. 9).
        pover: P_over of the chain's bottleneck (eq. 13).
        n: agents per chain.
        cfg: the model's constants (C_th, L_max, the utilities' references).

    Returns:
        Q*_s of each chain, -1 where it breaks eq. 18b or 18c (an infinite latency: an
        unstable agent, eq. 4, breaks 18b).
    """
    c = np.exp(logp) / n
    b = -np.expm1(keep)
    p_out = 1.0 - np.exp(lnc) * (1.0 - pover)  # eq. 14
    feasible = (lat <= cfg.l_max) & (c >= cfg.c_th)
    return subjective_weighted(intent, c, b, lat, p_out, feasible, cfg)


def beam_chain(
    s: BatchState, intent: Sequence[float], width: int
) -> tuple[tuple[int, ...], float] | None:
    """The best chain the beam finds and its predicted Q*_s, or None when a step has no
    usable agent. ``s`` is one served state (:func:`~xapp_composer.features.serving_state`).
    """
    cfg = s.cfg
    n = len(s.chain_types)
    intent = np.asarray(intent, dtype=float)
    chains = np.zeros((1, 0), dtype=np.int64)
    sums = np.zeros((1, 5))  # ln p, ln(1 - BER), L, ln(1 - F/O), P_over
    for k in range(n):
        cand = np.flatnonzero(s.usable[0, k])
        if len(cand) == 0:
            return None
        later = slice(k + 1, n)
        rest = np.array(
            [
                s.best_logp[0, later].sum(),
                0.0,
                s.min_lat[0, later].sum(),
                s.best_lnc[0, later].sum(),
                s.min_pover[0, later].max(initial=0.0),
            ]
        )
        hop = np.log1p(-s.route_pairs(chains[:, -1], cand)) if k > 0 else np.zeros((1, len(cand)))
        new = np.empty((len(chains), len(cand), 5))
        new[..., 0] = sums[:, None, 0] + s.logp[0, cand] + rest[0]
        new[..., 1] = sums[:, None, 1] + hop
        new[..., 2] = sums[:, None, 2] + s.lat[0, cand] + rest[2]
        new[..., 3] = sums[:, None, 3] + s.lnc[0, cand] + rest[3]
        new[..., 4] = np.maximum(np.maximum(sums[:, None, 4], s.pover[0, cand]), rest[4])
        score = weighted_from_sums(intent, *np.moveaxis(new, -1, 0), n, cfg).ravel()
        keep = np.argsort(-score, kind="stable")[:width]
        rows, cols = np.divmod(keep, len(cand))
        chains = np.concatenate([chains[rows], cand[cols][:, None]], axis=1)
        sums = new.reshape(-1, 5)[keep].copy()
        sums[:, 0] -= rest[0]
        sums[:, 2] -= rest[2]
        sums[:, 3] -= rest[3]
        sums[:, 4] = s.pover[0, chains].max(axis=1)  # the prefix's own P_over (eq. 13)
        best = float(score[keep[0]])
    return tuple(int(a) for a in chains[0]), best
