"""Training across network sizes (``--agents-mix``): one pool per size, every iteration's
episodes split over them with one update per size, validation per size and averaged."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from support.training import random_requests as requests
from support.training import tiny_config

from xapp_composer.configs import TrainConfig
from xapp_composer.policy import GCNActorCritic, PolicyConfig
from xapp_composer.rollouts import rollout_sizes, training_pools
from xapp_composer.train import train


def test_sizes_default_to_n_agents_and_are_sorted_unique() -> None:
    assert TrainConfig(n_agents=50).sizes == [50]
    assert TrainConfig(agents_mix=[300, 81, 300]).sizes == [81, 300]


def test_one_pool_per_size_with_fewer_networks_for_larger_sizes() -> None:
    pools = training_pools(
        tiny_config(pool_size=8, agents_mix=[48, 12, 24]), np.random.default_rng(0)
    )
    assert [p.state.n_agents for p in pools] == [12, 24, 48]
    assert [p.state.batch for p in pools] == [8, 4, 2]


def test_an_iteration_splits_its_episodes_over_the_sizes() -> None:
    cfg = tiny_config(pool_size=8, agents_mix=[12, 24, 48])
    rng = np.random.default_rng(1)
    pools = training_pools(cfg, rng)
    policy = GCNActorCritic(PolicyConfig(n_elams=2, hidden=16))
    parts = rollout_sizes(cfg, policy, pools, requests(32, 3), rng, 10)
    assert [len(p.chains) for p in parts] == [4, 3, 3]
    for part, n in zip(parts, (12, 24, 48), strict=True):
        assert part.x.shape[1] == n and part.adj.shape[1:] == (n, n)
        assert part.chains.max() < n
    # Fewer episodes than sizes: the empty shares are skipped.
    assert len(rollout_sizes(cfg, policy, pools, requests(32, 3), rng, 2)) == 2


@pytest.mark.slow
def test_training_across_sizes_updates_and_validates_every_size(tmp_path) -> None:
    cfg = tiny_config(pool_size=8, agents_mix=[12, 30])
    torch.manual_seed(cfg.seed)
    before = GCNActorCritic(PolicyConfig(n_elams=2, hidden=16)).state_dict()
    policy, summary = train(cfg, requests(64, 1), requests(16, 2), tmp_path, progress=False)
    after = policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    best = summary["best"]
    per_size = [best["val_normalized_score@12"], best["val_normalized_score@30"]]
    assert best["val_normalized_score"] == pytest.approx(np.mean(per_size))
    assert summary["config"]["agents_mix"] == [12, 30] and summary["episodes"] == 24
    rows = list(csv.DictReader((tmp_path / "tiny.curve.csv").open()))
    assert len(rows) == 2
    assert rows[0]["val_normalized_score@12"] and rows[0]["val_normalized_score@30"]
