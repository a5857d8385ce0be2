"""Generalised advantage estimation (paper eq. 42)."""

from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A_t = sum_l (gamma lambda)^l delta_{t+l}, delta_t = r_t + gamma V(s_{t+1}) - V(s_t) (eq. 42).

    Rows are time steps of B parallel episodes; an episode may end at any row.

    Args:
        rewards: (T, B) r_t.
        values: (T, B) V(s_t).
        next_values: (T, B) V(s_{t+1}); for a truncated step, the value of the state where
            the episode was cut.
        terminated: (T, B) 1 where s_{t+1} is terminal: no bootstrap.
        truncated: (T, B) 1 where the episode was cut after step t: bootstrap from
            ``next_values`` (SB3/CleanRL convention), but the next row starts a new episode.
        gamma: discount of eq. 40.
        lam: GAE lambda.

    Returns:
        ``(advantages, returns)``, each (T, B), returns = advantages + values.
    """
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        bootstrap = 1.0 - terminated[t]
        delta = rewards[t] + gamma * next_values[t] * bootstrap - values[t]
        same_episode = (1.0 - terminated[t]) * (1.0 - truncated[t])
        last = delta + gamma * lam * same_episode * last
        adv[t] = last
    return adv, adv + values
