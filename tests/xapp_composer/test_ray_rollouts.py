"""SRL training with its rollouts and gradients on Ray actors: a minibatch step taken
from shard gradients equals the single-process step; a tiny run with two local workers
changes the parameters, takes its gradients at the weights its episodes were sampled with,
and its checkpoint exports to ONNX and passes the parity check. Without ``--ray`` nothing
imports Ray."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch
from support.training import random_requests as requests
from support.training import tiny_config as tiny

from agentnet.network import generate_network
from xapp_composer import features as F
from xapp_composer.agent import run_episodes
from xapp_composer.export import export_onnx, load_checkpoint, parity_check
from xapp_composer.policy import GCNActorCritic, PolicyConfig
from xapp_composer.ppo import advantages, minibatch_loss, moments, pooled
from xapp_composer.rollouts import (
    RayRollouts,
    apply_gradient,
    cluster_address,
    combine,
    flat_gradient,
    flat_parameters,
)
from xapp_composer.train import train

pytestmark = pytest.mark.slow


def test_a_step_from_uneven_shards_equals_the_single_process_step() -> None:
    rng = np.random.default_rng(3)
    torch.manual_seed(3)
    cfg = tiny()
    policy = GCNActorCritic(PolicyConfig(n_elams=2, hidden=16))
    s = F.batch_state([generate_network(i) for i in range(11)])
    traj = run_episodes(policy, s, requests(11, 4), rng=rng, keep_tensors=True)
    adv, ret = advantages(traj, cfg)
    mb = rng.permutation(11)
    shards = [mb[:4], mb[4:]]  # a 4 + 7 split: the weights must follow the rows
    twin = GCNActorCritic(PolicyConfig(n_elams=2, hidden=16))
    twin.load_state_dict(policy.state_dict())
    # SGD: Adam's first step is ~lr * sign(g), which magnifies rounding in tiny gradients.
    opt = torch.optim.SGD(policy.parameters(), lr=0.1)
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    loss, full_stats = minibatch_loss(policy, traj, adv, ret, mb, cfg, 0.01)
    opt.zero_grad()
    loss.backward()
    full = torch.cat([p.grad.reshape(-1) for p in policy.parameters()]).numpy().copy()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
    opt.step()

    m = np.stack([moments(adv[:, idx]) for idx in shards])
    norm = pooled(m.sum(axis=0))
    a = adv[:, torch.from_numpy(mb)]
    assert norm == pytest.approx((a.mean().item(), a.std().item()), rel=1e-6)
    parts = []
    for idx in shards:
        shard_loss, shard_stats = minibatch_loss(twin, traj, adv, ret, idx, cfg, 0.01, norm)
        parts.append((*flat_gradient(twin, shard_loss), shard_stats))
    grad, present, stats = combine(parts, m[:, 0])
    assert all(present)
    np.testing.assert_allclose(grad, full, rtol=1e-4, atol=1e-6)
    assert stats == pytest.approx(full_stats, rel=1e-4, abs=1e-7)
    apply_gradient(twin, twin_opt, grad, present, cfg.max_grad_norm)
    np.testing.assert_allclose(flat_parameters(twin), flat_parameters(policy), atol=1e-6)
    assert not np.allclose(flat_parameters(twin), flat_parameters(GCNActorCritic(
        PolicyConfig(n_elams=2, hidden=16))))  # fmt: skip


def test_two_ray_workers_train_a_policy_that_exports(tmp_path) -> None:
    pytest.importorskip("ray")
    cfg = tiny(ray="auto", workers=2)
    torch.manual_seed(cfg.seed)
    before = GCNActorCritic(PolicyConfig(n_elams=2, hidden=16)).state_dict()
    policy, summary = train(cfg, requests(64, 1), requests(16, 2), tmp_path, progress=False)
    assert summary["rollout_workers"] == 2 and summary["episodes"] == 24
    after = policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    trained, _ = load_checkpoint(tmp_path / "tiny.pt")
    onnx_path = tmp_path / "tiny.onnx"
    export_onnx(trained, onnx_path)
    worst = parity_check(trained, onnx_path, sizes=(12, 81))
    assert max(worst.values()) < 1e-4, worst
    curve = (tmp_path / "tiny.curve.csv").read_text().splitlines()
    assert len(curve) == 3  # header + one row per iteration


def test_ray_gradients_are_taken_at_the_sampling_weights(tmp_path) -> None:
    """One minibatch step per iteration: its ratio pi_new / pi_old is exactly 1 (KL 0, no
    clipping) only if the episodes were sampled with the weights the step starts from,
    including those started while the learner finished the previous iteration."""
    pytest.importorskip("ray")
    cfg = tiny(ray="auto", workers=2, minibatch_episodes=12, max_iterations=3, lr=0.05)
    train(cfg, requests(64, 1), requests(16, 2), tmp_path, progress=False)
    rows = list(csv.DictReader((tmp_path / "tiny.curve.csv").open()))
    assert len(rows) == 3
    for row in rows:
        assert abs(float(row["kl"])) < 1e-6 and float(row["clipfrac"]) == 0.0, row


def test_worker_replicas_stay_equal_to_the_learner() -> None:
    """Every worker steps its own replica on the all-reduced gradient: after a few
    iterations (one worker without episodes in some minibatch steps) every replica holds
    the learner's weights, bit for bit, and they have moved."""
    pytest.importorskip("ray")
    cfg = tiny(ray="auto", workers=2, batch_episodes=5, minibatch_episodes=1)
    torch.manual_seed(cfg.seed)
    policy = GCNActorCritic(PolicyConfig(n_elams=2, hidden=cfg.hidden))
    opt = torch.optim.Adam(policy.parameters(), lr=0.01)
    start = flat_parameters(policy).copy()
    workers = RayRollouts(cfg, requests(64, 1), policy)
    try:
        for _ in range(3):
            traj, stats = workers.iteration(policy, opt, 0.01)
            assert traj.chains.shape[0] == 5 and set(stats) == {"pg", "vf", "ent", "kl", "clipfrac"}
        replicas = workers.ray.get([w.parameters.remote() for w in workers.workers])
        seconds = workers.phase_seconds()
    finally:
        workers.close()
    for replica in replicas:
        np.testing.assert_array_equal(replica, flat_parameters(policy))
    assert not np.allclose(start, flat_parameters(policy))
    assert seconds["worker_gradient"] > 0 and seconds["update"] > 0


OWN_RAY = """
import sys
import ray
ray.init(num_cpus=1, include_dashboard=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


def test_auto_does_not_join_another_process_own_ray(monkeypatch) -> None:
    """A Ray that another process started for itself (as ``--ray auto`` does when there is
    no cluster) is not one ``--ray auto`` joins: its actors would wait for that run's CPUs
    and die when it ends."""
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    other = subprocess.Popen([sys.executable, "-c", OWN_RAY], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        address = other.stdout.readline().strip()
        assert address, "the other process's Ray did not start"
        assert cluster_address() != address
    finally:
        other.stdin.close()
        other.wait(timeout=120)


def test_the_single_process_loop_needs_no_ray(tmp_path) -> None:
    sys.modules.pop("ray", None)
    _, summary = train(tiny(), requests(32, 1), requests(16, 2), tmp_path, progress=False)
    assert summary["rollout_workers"] == 0 and summary["episodes"] == 24
    assert "ray" not in sys.modules


def test_several_sizes_do_not_train_on_ray(tmp_path) -> None:
    """``--agents-mix`` trains in one process: with ``--ray`` it is refused before Ray
    starts, with a message naming both flags."""
    cfg = tiny(ray="auto", workers=2, agents_mix=[81, 300])
    with pytest.raises(ValueError, match=r"agents-mix 81,300 .*drop --ray"):
        train(cfg, requests(8, 1), requests(8, 2), tmp_path, progress=False)
