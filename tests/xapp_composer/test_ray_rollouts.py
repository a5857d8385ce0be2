"""SRL training with its rollouts on Ray actors: a tiny run with two local workers
changes the parameters, and its checkpoint exports to ONNX and passes the parity check.
Without ``--ray`` nothing imports Ray."""

from __future__ import annotations

import sys

import pytest
import torch
from support.training import random_requests as requests
from support.training import tiny_config as tiny

from xapp_composer.export import export_onnx, load_checkpoint, parity_check
from xapp_composer.policy import GCNActorCritic, PolicyConfig
from xapp_composer.train import train

pytestmark = pytest.mark.slow


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


def test_the_single_process_loop_needs_no_ray(tmp_path) -> None:
    sys.modules.pop("ray", None)
    _, summary = train(tiny(), requests(32, 1), requests(16, 2), tmp_path, progress=False)
    assert summary["rollout_workers"] == 0 and summary["episodes"] == 24
    assert "ray" not in sys.modules
