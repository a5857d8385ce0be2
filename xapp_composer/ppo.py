"""PPO's update (paper sec. V, eqs. 42-43): GAE advantages, the clipped-surrogate loss of
an episode minibatch, and the epochs over minibatches.

The loss of a minibatch is a mean over its episodes' rows. A minibatch split into shards
(one per Ray worker, :mod:`xapp_composer.rollouts`) therefore has as gradient the
row-count-weighted mean of its shards' gradients, provided every shard normalises the
advantages with the whole minibatch's mean and standard deviation: each shard reports
the :func:`moments` of its advantages and :func:`pooled` combines them.
"""

from __future__ import annotations

import numpy as np
import torch

from xapp_composer.agent import Trajectory
from xapp_composer.configs import TrainConfig
from xapp_composer.gae import compute_gae
from xapp_composer.policy import GCNActorCritic

STATS = ("pg", "vf", "ent", "kl", "clipfrac")
"""What each gradient step reports: the losses, the approximate KL and the clipped share."""


def advantages(traj: Trajectory, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages and returns (eq. 42) of a trajectory: every episode ends after its
    last row."""
    rewards = torch.from_numpy(traj.rewards).float()
    values = torch.stack(traj.values)
    next_values = torch.cat([values[1:], torch.zeros_like(values[:1])])
    terminated = torch.zeros_like(rewards)
    terminated[-1] = 1.0
    return compute_gae(
        rewards,
        values,
        next_values,
        terminated,
        torch.zeros_like(rewards),
        cfg.gamma,
        cfg.gae_lambda,
    )


def optimizer(policy: GCNActorCritic, cfg: TrainConfig) -> torch.optim.Adam:
    """The training's Adam optimiser over ``policy`` (the learner's, or a Ray worker's
    replica of it)."""
    return torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)


def minibatches(rng: np.random.Generator, episodes: int, count: int) -> list[np.ndarray]:
    """One epoch's minibatches: a permutation of ``episodes`` episodes cut into ``count``."""
    return np.array_split(rng.permutation(episodes), count)


def moments(adv: torch.Tensor) -> np.ndarray:
    """(count, sum, sum of squares) of advantages, in float64, to pool across shards."""
    a = adv.double()
    return np.array([a.numel(), a.sum().item(), (a * a).sum().item()])


def pooled(m: np.ndarray) -> tuple[float, float]:
    """Mean and (Bessel-corrected, as ``torch.std``) standard deviation from summed
    :func:`moments`."""
    count, total, squares = m
    mean = total / count
    var = max(0.0, squares - count * mean * mean) / max(1.0, count - 1)
    return float(mean), float(np.sqrt(var))


def minibatch_loss(
    policy: GCNActorCritic,
    traj: Trajectory,
    adv: torch.Tensor,
    ret: torch.Tensor,
    idx: np.ndarray,
    cfg: TrainConfig,
    ent_coef: float,
    norm: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped-surrogate loss (eq. 43) plus value loss and entropy bonus of the
    episodes ``idx`` of ``traj``, re-evaluated with ``policy``'s current weights.

    Args:
        policy: the actor-critic being trained.
        traj: episodes kept with their tensors (``keep_tensors=True``).
        adv: (T, B) advantages of ``traj``.
        ret: (T, B) returns of ``traj``.
        idx: the episodes of this minibatch (or of this worker's shard of it).
        cfg: clip, value-loss weight.
        ent_coef: the entropy bonus now (annealed).
        norm: (mean, std) normalising the advantages: the whole minibatch's when ``idx``
            is a shard of it; by default those of ``adv[:, idx]``.

    Returns:
        The loss and its parts (:data:`STATS`).
    """
    i = torch.from_numpy(idx)
    node_h = policy.encode(traj.x[i], traj.adj[i])
    new_logp, entropy, new_v = [], [], []
    for t in range(len(traj.actions)):
        inputs = [x[i] for x in traj.inputs[t]]
        logits, elam_logits, value = policy.heads(node_h, *inputs, traj.ctx[t][i])
        lg = elam_logits if traj.is_elam_row[t] else logits
        logp = torch.log_softmax(lg, dim=-1)
        new_logp.append(logp.gather(1, traj.actions[t][i].unsqueeze(1)).squeeze(1))
        p = logp.exp()
        entropy.append(-(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(-1))
        new_v.append(value)
    new_logp_t = torch.stack(new_logp)
    old_logp = torch.stack([lp[i] for lp in traj.logprobs])
    a = adv[:, i]
    mean, std = (a.mean(), a.std()) if norm is None else norm
    a = (a - mean) / (std + 1e-8)
    ratio = (new_logp_t - old_logp).exp()
    pg = -torch.min(ratio * a, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a).mean()
    vf = 0.5 * ((torch.stack(new_v) - ret[:, i]) ** 2).mean()
    ent = torch.stack(entropy).mean()
    loss = pg + cfg.vf_coef * vf - ent_coef * ent
    with torch.no_grad():
        stats = {
            "pg": pg.item(),
            "vf": vf.item(),
            "ent": ent.item(),
            "kl": ((ratio - 1) - (new_logp_t - old_logp)).mean().item(),
            "clipfrac": ((ratio - 1).abs() > cfg.clip).float().mean().item(),
        }
    return loss, stats


def ppo_update(
    policy: GCNActorCritic,
    opt: torch.optim.Optimizer,
    traj: Trajectory,
    adv: torch.Tensor,
    ret: torch.Tensor,
    cfg: TrainConfig,
    ent_coef: float,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Clipped-surrogate epochs (eq. 43) over episode minibatches; returns mean stats."""
    bsz = traj.chains.shape[0]
    stats: dict[str, list[float]] = {k: [] for k in STATS}
    for _ in range(cfg.epochs):
        for mb in minibatches(rng, bsz, max(1, bsz // cfg.minibatch_episodes)):
            loss, mb_stats = minibatch_loss(policy, traj, adv, ret, mb, cfg, ent_coef)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            opt.step()
            for k, v in mb_stats.items():
                stats[k].append(v)
    return {k: float(np.mean(v)) for k, v in stats.items()}
