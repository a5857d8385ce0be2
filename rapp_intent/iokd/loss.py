"""The weighted pairwise distillation loss of IoKD (paper eqs. 31, 32) and its ablations.

For a prompt p, its vector s_p and a contrastive vector s_c (eq. 25):

    L = -log sigma( beta * [ log pi_theta(s_p|p) - log pi_ref(s_p|p)
                             - log pi_theta(s_c|p) + log pi_ref(s_c|p) ] )      (eq. 31)

with a per-sample temperature

    beta = beta_base * (1 - lambda * Dis(s_p, s_bar))                            (eq. 32)

where Dis is the angular distance of eq. 24 and s_bar the mean vector of the sample's
dataset D_IoKD. Samples near the mean get a larger beta (a stronger, sharper signal),
outliers a smaller one. Plain DPO (Rafailov et al. 2023) is the ablation with a constant
beta = beta_base.

Optional auxiliary term (off unless ``nll_weight`` > 0): ``nll_weight * -log
pi_theta(s_p|p) / norm``, the negative log-likelihood of the preferred vector as in RPO
(Pang et al. 2024, "Iterative reasoning preference optimization"). Eq. 31 only ranks s_p
above s_c; once that margin is large its gradient vanishes wherever the prediction is,
whereas the NLL keeps pulling the prediction onto s_p. The report gives numbers with and
without it. TRL has no per-sample beta, hence this small module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from rapp_intent.iokd.config import LossConfig
from rapp_intent.iokd.contrastive import angular_distance
from rapp_intent.iokd.data import Sample


def mean_vector(vectors: np.ndarray) -> np.ndarray:
    """s_bar of eq. 32: the mean subjective vector of a dataset, shape (4,)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError("mean_vector needs a non-empty (n, 4) array")
    return vectors.mean(axis=0)


def dataset_means(samples: Sequence[Sample]) -> dict[str, np.ndarray]:
    """s_bar of eq. 32 for each target application's D_IoKD (before deduplication)."""
    groups: dict[str, list] = {}
    for s in samples:
        groups.setdefault(s.target_app or s.app, []).append(s.s)
    return {app: mean_vector(np.array(v)) for app, v in groups.items()}


def sample_beta(s_p: np.ndarray, s_bar: np.ndarray, config: LossConfig) -> np.ndarray:
    """Per-sample beta: eq. 32 for ``iokd``, the constant beta_base for ``dpo``.

    Args:
        s_p: preferred vectors, shape (n, 4).
        s_bar: the dataset mean of each sample, shape (4,) or (n, 4).
        config: the loss configuration.

    Returns:
        beta for each sample, shape (n,).
    """
    s_p = np.atleast_2d(np.asarray(s_p, dtype=np.float64))
    if config.kind == "dpo":
        return np.full(len(s_p), config.beta_base)
    s_bar = np.asarray(s_bar, dtype=np.float64)
    if s_bar.ndim == 1:
        dis = angular_distance(s_p, s_bar)
    else:
        dis = np.array([angular_distance(a, b) for a, b in zip(s_p, s_bar, strict=True)])
    beta = config.beta_base * (1.0 - config.lam * dis)  # eq. 32
    if np.any(beta <= 0):
        raise ValueError(
            f"lambda={config.lam} makes beta non-positive for {int((beta <= 0).sum())} "
            f"samples (largest angular distance to the mean {float(dis.max()):.3f})"
        )
    return beta


@dataclass
class LossOutput:
    """The loss of a batch and what to log about it."""

    loss: torch.Tensor
    pairwise: torch.Tensor
    nll: torch.Tensor
    margin: torch.Tensor
    accuracy: torch.Tensor


def pairwise_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: torch.Tensor,
) -> torch.Tensor:
    """Eq. 31 for each pair (no mean): -log sigma(beta * (log-ratio_p - log-ratio_c)).

    Args:
        policy_chosen: log pi_theta(s_p | p), shape (n,).
        policy_rejected: log pi_theta(s_c | p), shape (n,).
        ref_chosen: log pi_ref(s_p | p), shape (n,).
        ref_rejected: log pi_ref(s_c | p), shape (n,).
        beta: temperature of each pair, shape (n,) or scalar.
    """
    logits = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)  # eq. 30
    return -F.logsigmoid(beta * logits)  # eq. 31


def iokd_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: torch.Tensor,
    nll_weight: float = 0.0,
    nll_norm: torch.Tensor | float = 1.0,
) -> LossOutput:
    """Mean of eq. 31 over the pairs, plus the optional auxiliary NLL of s_p.

    Args:
        policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: see
            :func:`pairwise_loss`.
        nll_weight: weight of the auxiliary term (0: eq. 31 alone).
        nll_norm: divisor of each pair's NLL (the token count for a generative E-LAM).

    Returns:
        The total loss and its parts (means over the batch).
    """
    pair = pairwise_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    nll = (-policy_chosen / nll_norm).mean()
    loss = pair.mean() + (nll_weight * nll if nll_weight > 0 else 0.0)
    with torch.no_grad():
        margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return LossOutput(
        loss=loss,
        pairwise=pair.mean().detach(),
        nll=nll.detach(),
        margin=margin.mean(),
        accuracy=(margin > 0).float().mean(),
    )
