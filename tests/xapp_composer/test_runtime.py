"""ONNX export parity and the runtime: same decisions as torch, integrity checks."""

from __future__ import annotations

import gc
import re
import shutil
import weakref
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from support.loop import e2e_policy

from agentnet.network import generate_network
from xapp_composer import features as F
from xapp_composer import runtime as R
from xapp_composer.agent import run_episodes
from xapp_composer.episodes import RequestSet
from xapp_composer.export import export_onnx, parity_check, write_card
from xapp_composer.policy import GCNActorCritic, PolicyConfig
from xapp_composer.runtime import PolicyIntegrityError, PolicyRuntime


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[GCNActorCritic, Path]:
    torch.manual_seed(3)
    policy = GCNActorCritic(PolicyConfig(hidden=32))
    path = tmp_path_factory.mktemp("pol") / "p.onnx"
    export_onnx(policy, path)
    parity = parity_check(policy, path, sizes=(9, 40, 81, 150, 300))
    assert max(parity.values()) < 1e-5, parity
    write_card(path, policy, {"elam_ids": ["a", "b"], "fees": [0.002, 0.01]}, parity)
    return policy, path


def test_runtime_decides_like_the_torch_policy(exported) -> None:
    policy, path = exported
    rt = PolicyRuntime(path)
    assert rt.provider == "CPUExecutionProvider"
    rng = np.random.default_rng(0)
    for n in (40, 81, 150):
        nets = [generate_network(500 + n + i, n_agents=n) for i in range(4)]
        s = F.batch_state(nets)
        true_s = rng.dirichlet(np.ones(4), size=4)
        preds = np.stack([true_s, np.full_like(true_s, 0.25)], axis=1)
        req = RequestSet(
            true_s,
            np.array([0, 1, 2, 3]),
            np.zeros((4, F.TEXT_DIM), np.float32),
            preds,
            ["a", "b"],
            np.array([0.002, 0.01]),
            ["x"] * 4,
        )
        traj = run_episodes(policy, s, req, greedy=True)
        for i, net in enumerate(nets):
            prep = rt.prepare(net)
            k = rt.choose_elam(prep, int(req.app[i]), "x", np.zeros((1, F.TEXT_DIM), np.float32))
            assert k == traj.elam[i]
            chain = rt.compose(
                prep, preds[i, k], k, int(req.app[i]), "x", np.zeros((1, F.TEXT_DIM), np.float32)
            )
            assert chain == tuple(traj.chains[i])


def test_tampered_policy_is_refused(exported, tmp_path) -> None:
    _, path = exported
    for f in path.parent.iterdir():
        shutil.copy(f, tmp_path / f.name)
    bad = tmp_path / path.name
    data = bytearray(bad.read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(PolicyIntegrityError, match=r"p\.onnx: sha256 .* does not match its card"):
        PolicyRuntime(bad)
    shutil.copy(path, bad)  # the original bytes: the same card accepts them again
    assert PolicyRuntime(bad).version == PolicyRuntime(path).version
    card = tmp_path / "p.card.json"
    card.unlink()
    with pytest.raises(PolicyIntegrityError, match=re.escape(f"model card {card} is missing")):
        PolicyRuntime(bad)


def test_no_usable_agent_is_a_clear_error_and_served_elams_are_respected(exported) -> None:
    _, path = exported
    rt = PolicyRuntime(path)
    net = generate_network(11)
    net.available[net.types == 3] = False
    prep = rt.prepare(net)
    with pytest.raises(ValueError, match="no usable agent of type 3"):
        rt.compose(prep, (0.25, 0.25, 0.25, 0.25), 0, "qa", "x")
    ok = rt.prepare(generate_network(12))
    assert rt.choose_elam(ok, "qa", "x", served={"b"}) == 1
    assert rt.choose_elam(ok, "qa", "x", served={"a"}) == 0
    assert rt.choose_elam(ok, "qa", "x", served=set()) == -1
    d = rt.decide(ok, "qa", "x", lambda e: (0.1, 0.2, 0.3, 0.4), served={"b"})
    assert d.elam == "b" and len(d.chain) == 3


def test_providers_are_chosen_once_quietly_and_reused(exported, monkeypatch, capfd) -> None:
    monkeypatch.setattr(R, "_PROVIDERS", {})
    _, path = exported
    capfd.readouterr()
    first = PolicyRuntime(path)
    chosen = R._PROVIDERS[True]
    assert chosen[-1] == "CPUExecutionProvider"
    assert set(chosen) <= set(ort.get_available_providers())
    assert first.provider == chosen[0]
    # CUDA listed without its libraries (this machine) falls back to the CPU silently:
    # the probe's library-load errors are not printed.
    assert "Failed to load library" not in capfd.readouterr().err
    second = PolicyRuntime(path)  # a hot reload: no new probe
    assert second.provider == first.provider and R._PROVIDERS[True] is chosen
    assert PolicyRuntime(path, prefer_gpu=False).provider == "CPUExecutionProvider"
    assert R._PROVIDERS[False] == ["CPUExecutionProvider"]


def test_a_runtime_and_its_prepared_states_hold_no_reference_cycle() -> None:
    """The xApp freezes its start-up heap (servicekit.heap): frozen objects are freed by
    reference counting only, so a policy replaced by a hot reload, and the states prepared
    for it (tables and bound tables included when the policy has them), hold no cycle."""
    runtime = PolicyRuntime(e2e_policy())
    prepared = runtime.prepare(generate_network(3))
    runtime.compose(prepared, (0.25, 0.25, 0.25, 0.25), 0, "immersive", "render it")
    gone = weakref.ref(runtime), weakref.ref(prepared), weakref.ref(prepared.state)
    gc.disable()
    try:
        del runtime, prepared
        assert all(ref() is None for ref in gone)
    finally:
        gc.enable()
