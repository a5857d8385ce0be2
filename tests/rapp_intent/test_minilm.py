"""The minilm E-LAM: Dirichlet policy, zero-shot quality, head artefacts, ONNX parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agentnet.config import elam_fee
from agentnet.intents import project_intents
from rapp_intent.elam.base import MemoryContext
from rapp_intent.elam.minilm import DirichletHead, prepare_targets


@pytest.fixture
def fresh_head(minilm):
    """Restore the session model's head after a test that changes it."""
    saved = (minilm.head, minilm.artefact, minilm.card)
    yield minilm
    minilm.head, minilm.artefact, minilm.card = saved


def test_identity_and_fee(minilm):
    assert minilm.id == "minilm" and minilm.family == "encoder"
    assert 22e6 < minilm.n_parameters < 24e6
    assert minilm.fee == pytest.approx(elam_fee(minilm.n_parameters))
    assert minilm.artefact == "raw"


def test_fresh_head_is_exactly_the_zero_shot_mapping(minilm):
    prompts = ["render my VR scene with no lag", "summarise the patient's lab results"]
    emb, idx = minilm.inputs(prompts, ["immersive", "critical"])
    with torch.no_grad():
        mean = minilm.distribution_from(emb, idx).mean
        zero_shot = torch.softmax(minilm.raw_logits(emb, idx), -1)
        conc = minilm.distribution_from(emb, idx).concentration.sum(-1)
    assert torch.allclose(mean, zero_shot, atol=1e-6)
    assert torch.allclose(conc, torch.full_like(conc, minilm.zeroshot.concentration), rtol=1e-5)


def test_translations_are_valid_vectors(minilm):
    prompts = ["what's the capital of Peru, quick", "x", "Ω" * 50, "a " * 2000]
    out = minilm.translate(prompts, [MemoryContext(app="qa"), None, None, None])
    for t in out:
        assert t.ok
        assert len(t.vector) == 4 and min(t.vector) >= 0
        assert sum(t.vector) == pytest.approx(1.0)


def test_application_changes_the_prior(minilm):
    p = "help me with this"
    qa, crit = minilm.predict_mean([p, p], ["qa", "critical"])
    assert qa[2] > crit[2]  # QA's profile leans to latency
    assert crit[3] > qa[3]  # critical's to outage probability


def test_raw_model_beats_even_on_heldout_split(minilm):
    rows = project_intents("heldout")
    pred = minilm.predict_mean([r.prompt for r in rows], [r.app for r in rows])
    target = np.array([r.s for r in rows])
    mse = float(((pred - target) ** 2).mean())
    even = float(((target - 0.25) ** 2).mean())
    assert mse < 0.8 * even, (mse, even)


def test_log_prob_is_a_density_and_differentiable(fresh_head):
    minilm = fresh_head
    minilm.head = DirichletHead()
    prompts = ["stream the match in VR, no lag", "exact figures in the report please"]
    targets = [[0.15, 0.1, 0.55, 0.2], [0.2, 0.5, 0.15, 0.15]]
    lp = minilm.log_prob(prompts, targets, ["immersive", "content"])
    assert lp.shape == (2,) and torch.isfinite(lp).all()
    lp.sum().backward()
    grads = [p.grad for p in minilm.head.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    # a target at the boundary (a waived factor of exactly 0) stays finite
    assert torch.isfinite(minilm.log_prob(prompts[:1], [[0.0, 0.0, 1.0, 0.0]])).all()


def test_one_optimisation_step_moves_the_policy(fresh_head):
    minilm = fresh_head
    minilm.head = DirichletHead()
    minilm.head.train()
    prompts = ["play the racing game on my phone"] * 4
    target = [[0.05, 0.05, 0.85, 0.05]] * 4
    before = minilm.log_prob(prompts, target).detach()
    opt = torch.optim.Adam(minilm.head.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        (-minilm.log_prob(prompts, target).mean()).backward()
        opt.step()
    after = minilm.log_prob(prompts, target).detach()
    assert (after > before).all()


def test_head_save_and_load_round_trip(fresh_head, tmp_path):
    minilm = fresh_head
    head = DirichletHead()
    with torch.no_grad():
        head.net[2].bias.copy_(torch.tensor([0.0, 0.0, 1.5, 0.0, 0.3]))
    minilm.head = head
    prompt = ["tell me a joke"]
    expected = minilm.predict_mean(prompt, ["qa"])
    minilm.save_head(tmp_path, {"metrics": {"mse": 0.01}})
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["sha256"] == minilm.artefact and card["model"] == "minilm"
    minilm.head = DirichletHead()
    minilm.load_head(tmp_path)
    assert np.allclose(minilm.predict_mean(prompt, ["qa"]), expected, atol=1e-6)
    assert minilm.distilled and minilm.metrics()["card_mse"] == 0.01
    # a head whose bytes do not match its card is refused
    data = bytearray((tmp_path / "head.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "head.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        minilm.load_head(tmp_path)


def test_targets_are_floored_and_renormalised():
    t = prepare_targets([[0.0, 0.0, 1.0, 0.0]])
    assert float(t.min()) > 0 and float(t.sum()) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        prepare_targets([[0.5, 0.5]])


def test_onnx_encoder_matches_torch(minilm):
    rng = np.random.default_rng(0)
    words = ["render", "scene", "exact", "figures", "quick", "patient", "payment", "latency"]
    prompts = [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(1, 60, size=12)]
    prompts += ["ünïcødé 漢字 🚀", "a"]
    assert minilm.encoder.parity_error(prompts) < 1e-4


def test_embedding_cache_returns_same_rows(minilm):
    texts = ["first prompt", "second prompt", "first prompt"]
    a = minilm.embed(texts)
    b = minilm.embed(texts[::-1])
    assert np.array_equal(a[0], a[2]) and np.array_equal(a[0], b[0])
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_hybrid_encoder_paths_agree(minilm):
    from rapp_intent.elam.encoder import HybridEncoder
    from rapp_intent.elam.encoder_torch import TorchEncoder, bf16_fast

    large = TorchEncoder(dtype=torch.bfloat16 if bf16_fast() else torch.float32)
    hybrid = HybridEncoder(minilm.encoder, large, threshold=2)
    assert hybrid.backend == f"onnx+{large.backend}"
    prompts = [f"request {i}: keep the figures exact and answer quickly" for i in range(6)]
    small_path = np.concatenate([hybrid.encode([p]) for p in prompts])
    large_path = hybrid.encode(prompts)
    assert np.abs(small_path - large_path).max() < 5e-3
    # pooling and normalisation run in fp32 even for bfloat16 weights: unit rows
    assert np.allclose(np.linalg.norm(large_path, axis=1), 1.0, atol=1e-5)
    assert (small_path * large_path).sum(1).min() > 0.9998


def _distinct_head(out_dir):
    """Save a head that moves weight to latency, so a loaded head is recognisable."""
    from rapp_intent.elam.encoder_torch import TorchEncoder
    from rapp_intent.elam.minilm import MiniLMELam

    model = MiniLMELam(TorchEncoder())
    with torch.no_grad():
        model.head.net[2].bias.copy_(torch.tensor([0.0, 0.0, 2.0, 0.0, 0.0]))
    model.save_head(out_dir / "minilm", {"metrics": {"mse": 0.01}})
    return model.artefact


@pytest.mark.parametrize(
    ("backend", "expected"), [("onnx", "onnx"), ("torch", "torch"), ("torch-bf16", "torch-bf16")]
)
def test_registry_builds_the_configured_encoder(make_settings, backend, expected):
    from rapp_intent.elam.registry import load_elam

    elam = load_elam("minilm", make_settings(minilm_backend=backend))
    assert elam.encoder.backend == expected
    vec = elam.translate(["keep the call smooth"], [MemoryContext(app="qa")])[0].vector
    assert vec is not None and abs(sum(vec) - 1) < 1e-6


def test_registry_auto_backend_follows_the_cpu(make_settings):
    from rapp_intent.elam.encoder_torch import bf16_fast
    from rapp_intent.elam.registry import load_elam

    elam = load_elam("minilm", make_settings(minilm_backend="auto"))
    assert elam.encoder.backend == ("onnx+torch-bf16" if bf16_fast() else "onnx")


def test_distilled_setting_chooses_between_artefact_and_raw(make_settings, tmp_path):
    from rapp_intent.elam.registry import load_elam

    digest = _distinct_head(tmp_path / "arts")
    settings = dict(models_dir=tmp_path / "arts", minilm_backend="torch")
    distilled = load_elam("minilm", make_settings(**settings))
    raw = load_elam("minilm", make_settings(distilled=False, **settings))
    assert distilled.distilled and distilled.artefact == digest
    assert not raw.distilled and raw.artefact == "raw"
    prompt, ctx = ["stream the match in HD"], [MemoryContext(app="content")]
    v_distilled = distilled.translate(prompt, ctx)[0].vector
    v_raw = raw.translate(prompt, ctx)[0].vector
    assert v_distilled[2] > v_raw[2] + 0.05  # the head's latency bias shows
