"""Helpers of the training tests: random requests and a tiny training configuration."""

from __future__ import annotations

import numpy as np

from xapp_composer import features as F
from xapp_composer.configs import TrainConfig
from xapp_composer.episodes import RequestSet


def random_requests(m: int, seed: int) -> RequestSet:
    """``m`` requests with Dirichlet true vectors; E-LAM ``a`` predicts them exactly, ``b``
    predicts the even vector."""
    rng = np.random.default_rng(seed)
    s = rng.dirichlet(np.ones(4), size=m)
    preds = np.stack([s, np.full_like(s, 0.25)], axis=1)
    return RequestSet(s, rng.integers(4, size=m), np.zeros((m, F.TEXT_DIM), np.float32),
                      preds, ["a", "b"], np.array([0.002, 0.01]), ["p"] * m)  # fmt: skip


def tiny_config(**kw) -> TrainConfig:
    """Two iterations of 12 episodes on a few networks with a narrow policy."""
    base = dict(
        name="tiny", max_iterations=2, batch_episodes=12, minibatch_episodes=6, epochs=1,
        pool_size=4, pool_refresh=1, hidden=16, eval_every=1000, minutes=10,
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})
