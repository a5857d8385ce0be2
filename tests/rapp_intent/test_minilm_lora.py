"""LoRA on the minilm encoder (peft format): coverage, files, joint training, serving it."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from peft.tuners.lora import LoraLayer
from test_iokd_distill import SAMPLES

from rapp_intent.elam import lora
from rapp_intent.elam.encoder_onnx import OnnxEncoder
from rapp_intent.elam.encoder_torch import TorchEncoder
from rapp_intent.elam.minilm import MiniLMELam
from rapp_intent.iokd import distill_minilm_encoder as dme
from rapp_intent.iokd.config import MinilmDistillConfig
from rapp_intent.settings import RappSettings

TEXTS = ["render the scene for my headset, no lag", "hi", "a thorough report on 5G fronthaul"]
SMALL = MinilmDistillConfig(encoder_lora_r=4, encoder_lora_alpha=8.0, encoder_lora_dropout=0.0)


@pytest.fixture(scope="module")
def raw_minilm():
    return MiniLMELam(TorchEncoder())


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every adapter a non-zero B (a fresh one is zero, a no-op)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, LoraLayer):
                b = m.lora_B["default"].weight
                b.copy_(0.05 * torch.randn(b.shape, generator=gen))


def _embed(encoder: torch.nn.Module, tokenizer) -> np.ndarray:
    batch = tokenizer(TEXTS)
    with torch.no_grad():
        ids = batch["input_ids"]
        return encoder(ids, batch["attention_mask"], torch.zeros_like(ids)).numpy()


def test_adapters_cover_every_encoder_linear_layer_but_the_pooler(raw_minilm) -> None:
    encoder = dme.trainable_encoder(raw_minilm, SMALL)
    trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    adapted = {n for n, m in encoder.named_modules() if isinstance(m, LoraLayer)}
    assert len(adapted) == 6 * 6  # q, k, v, attention output, intermediate, output per layer
    assert not any("pooler" in n for n in adapted)
    # 6 layers x (q, k, v, attention output: 384 -> 384; intermediate 384 -> 1536; output
    # 1536 -> 384), r (in + out) parameters each
    per_layer = 4 * 4 * (384 + 384) + 2 * 4 * (384 + 1536)
    assert lora.adapter_parameters(encoder.bert) == 6 * per_layer


def test_a_fresh_adapter_changes_nothing(raw_minilm) -> None:
    encoder = dme.trainable_encoder(raw_minilm, SMALL).eval()
    fresh = _embed(encoder, raw_minilm.encoder.tokenize)
    np.testing.assert_allclose(fresh, raw_minilm.encoder.encode(TEXTS), atol=2e-5)


def test_a_saved_adapter_merged_into_the_runtime_reproduces_the_trained_module(
    raw_minilm, tmp_path
) -> None:
    encoder = dme.trainable_encoder(raw_minilm, SMALL).eval()
    _randomise(encoder)
    files = lora.save_adapter(encoder.bert, tmp_path, "base")
    assert sorted(files) == sorted(lora.ADAPTER_FILES)
    assert json.loads((tmp_path / lora.ADAPTER_CONFIG).read_text())["peft_type"] == "LORA"
    trained = _embed(encoder, raw_minilm.encoder.tokenize)
    merged = raw_minilm.encoder.with_adapter(tmp_path)
    assert merged.adapter_sha == lora.adapter_digest(tmp_path)
    assert merged.path == raw_minilm.encoder.path
    np.testing.assert_allclose(merged.encode(TEXTS), trained, atol=2e-5)
    assert np.abs(merged.encode(TEXTS) - raw_minilm.encoder.encode(TEXTS)).max() > 1e-3


def test_an_adapter_snapshot_restores_the_weights_it_was_taken_of(raw_minilm) -> None:
    encoder = dme.trainable_encoder(raw_minilm, SMALL)
    _randomise(encoder, seed=1)
    snapshot = lora.adapter_state(encoder.bert)
    before = _embed(encoder.eval(), raw_minilm.encoder.tokenize)
    _randomise(encoder, seed=2)
    assert np.abs(_embed(encoder, raw_minilm.encoder.tokenize) - before).max() > 1e-4
    lora.restore_adapter_state(encoder.bert, snapshot)
    np.testing.assert_array_equal(_embed(encoder, raw_minilm.encoder.tokenize), before)


def test_check_adapter_refuses_a_missing_or_altered_file(tmp_path) -> None:
    with pytest.raises(ValueError, match="missing"):
        lora.check_adapter(tmp_path, {})
    for name in lora.ADAPTER_FILES:
        (tmp_path / name).write_text("{}")
    lora.check_adapter(tmp_path, {})
    with pytest.raises(ValueError, match="sha256"):
        lora.check_adapter(tmp_path, {lora.ADAPTER_WEIGHTS: "0" * 64})
    with pytest.raises(ValueError, match="rank"):
        lora.encoder_lora_config(0, 1.0)


def test_joint_training_changes_adapters_and_head_and_the_rapp_serves_them(
    raw_minilm, tmp_path
) -> None:
    config = replace(MinilmDistillConfig(), encoder_lora_r=4, encoder_epochs=2, val_fraction=0.34)
    head, adapter, summary = dme.distill_minilm_encoder(raw_minilm, SAMPLES, config)
    state = lora.adapter_state(adapter)
    assert adapter.peft_config["default"].r == 4
    assert any(float(v.abs().sum()) > 0 for k, v in state.items() if "lora_B" in k)
    assert float(head.net[2].weight.detach().abs().sum()) > 0
    assert summary["samples"] == 4 and 1 <= summary["best_epoch"] <= 2
    assert len(summary["val_curve"]) == summary["epochs_run"]
    assert summary["trained_on"] < summary["samples"]

    tuned = MiniLMELam(raw_minilm.encoder)
    tuned.head = head
    tuned.save_head(tmp_path, {"loss": "iokd"}, adapter)
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["encoder_adapter"]["r"] == 4
    assert set(card["encoder_adapter"]["files"]) == set(lora.ADAPTER_FILES)
    assert card["encoder_adapter"]["parameters"] == summary["encoder_adapter_parameters"]

    prompts, apps = [s.prompt for s in SAMPLES], [s.app for s in SAMPLES]
    served = MiniLMELam(TorchEncoder(), head_dir=tmp_path)
    assert served.distilled and served.encoder.adapter_sha == lora.adapter_digest(tmp_path)
    cache = RappSettings(_env_file=None).cache_dir
    onnx = MiniLMELam(OnnxEncoder(cache), head_dir=tmp_path)
    assert onnx.encoder.backend == "onnx" and "lora" in onnx.encoder.onnx_path.name
    got = served.predict_mean(prompts, apps)
    np.testing.assert_allclose(onnx.predict_mean(prompts, apps), got, atol=1e-5)
    assert np.abs(got - raw_minilm.predict_mean(prompts, apps)).max() > 1e-4
    # The zero-shot description embeddings stay the base encoder's, as in training.
    assert torch.equal(served._raise_emb[0], raw_minilm._raise_emb[0])
    translations = served.translate(prompts[:2])
    assert all(t.ok and abs(sum(t.vector) - 1) < 1e-6 for t in translations)

    weights = tmp_path / lora.ADAPTER_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(ValueError, match="sha256"):
        MiniLMELam(raw_minilm.encoder, head_dir=tmp_path)


def test_joint_training_refuses_a_distilled_start_or_a_frozen_encoder(raw_minilm) -> None:
    with pytest.raises(ValueError, match="positive"):
        dme.distill_minilm_encoder(
            raw_minilm, SAMPLES, replace(MinilmDistillConfig(), encoder_lora_r=0)
        )
    distilled = MiniLMELam(raw_minilm.encoder)
    distilled.artefact = "abc"
    with pytest.raises(ValueError, match="raw E-LAM"):
        dme.distill_minilm_encoder(distilled, SAMPLES)
    with pytest.raises(ValueError):
        MinilmDistillConfig(encoder_lora_r=-1)
