"""LoRA on the minilm encoder: the adapter maths, its file, joint training, serving it."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_iokd_distill import SAMPLES

from rapp_intent.elam import lora
from rapp_intent.elam.encoder import OnnxEncoder, TorchEncoder
from rapp_intent.elam.minilm import ADAPTER_FILE, MiniLMELam
from rapp_intent.iokd import distill_minilm as dm
from rapp_intent.settings import RappSettings

TEXTS = ["render the scene for my headset, no lag", "hi", "a thorough report on 5G fronthaul"]


@pytest.fixture(scope="module")
def raw_minilm():
    return MiniLMELam(TorchEncoder())


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, lora.LoRALinear):
                m.lora_B.copy_(0.05 * torch.randn(m.lora_B.shape, generator=gen))


def test_a_fresh_adapter_leaves_the_layer_unchanged_and_merging_is_exact() -> None:
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 5)
    x = torch.randn(3, 6)
    reference = base(x).detach()
    wrapped = lora.LoRALinear(base, r=2, scale=4.0)
    assert torch.equal(wrapped(x), reference)
    _randomise(wrapped)
    expected = reference + 4.0 * x @ wrapped.lora_A.T @ wrapped.lora_B.T
    assert torch.allclose(wrapped(x), expected, atol=1e-6)
    assert not base.weight.requires_grad and wrapped.lora_A.requires_grad

    holder = torch.nn.Sequential(torch.nn.Linear(6, 5))
    holder[0].load_state_dict(base.state_dict())
    state = {"0.lora_A": wrapped.lora_A.detach(), "0.lora_B": wrapped.lora_B.detach()}
    assert lora.merge_adapter(holder, state, lora.LoraSpec(r=2, alpha=8.0)) == 1
    assert torch.allclose(holder(x), wrapped(x), atol=1e-6)


def test_merging_rejects_adapters_that_do_not_fit(tmp_path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    spec = lora.LoraSpec(r=1, alpha=1.0)
    with pytest.raises(ValueError, match="not in the model"):
        lora.merge_adapter(
            model, {"9.lora_A": torch.zeros(1, 4), "9.lora_B": torch.zeros(3, 1)}, spec
        )
    with pytest.raises(ValueError, match="does not fit"):
        lora.merge_adapter(
            model, {"0.lora_A": torch.zeros(1, 5), "0.lora_B": torch.zeros(3, 1)}, spec
        )
    with pytest.raises(ValueError, match="lacks"):
        lora.merge_adapter(model, {"0.lora_A": torch.zeros(1, 4)}, spec)
    with pytest.raises(ValueError):
        lora.LoraSpec(r=0)
    from safetensors.torch import save_file

    save_file({"0.lora_A": torch.zeros(1, 4)}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(ValueError, match="metadata"):
        lora.load_adapter(tmp_path / "bare.safetensors")


def test_adapters_cover_every_encoder_linear_layer_but_the_pooler(raw_minilm) -> None:
    spec = lora.LoraSpec(r=4, alpha=8.0)
    encoder = dm.trainable_encoder(raw_minilm, spec, dropout=0.0)
    trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    adapted = {n for n, m in encoder.named_modules() if isinstance(m, lora.LoRALinear)}
    assert len(adapted) == 6 * 6  # q, k, v, attention output, intermediate, output per layer
    assert not any("pooler" in n for n in adapted)


def test_a_saved_adapter_merged_into_the_runtime_reproduces_the_trained_module(
    raw_minilm, tmp_path
) -> None:
    spec = lora.LoraSpec(r=4, alpha=8.0)
    encoder = dm.trainable_encoder(raw_minilm, spec, dropout=0.0).eval()
    _randomise(encoder)
    path = lora.save_adapter(tmp_path / "a.safetensors", lora.adapter_state(encoder.bert), spec)
    state, loaded = lora.load_adapter(path)
    assert loaded == spec and len(state) == 2 * 36
    batch = raw_minilm.encoder.tokenize(TEXTS)
    with torch.no_grad():
        trained = encoder(
            batch["input_ids"], batch["attention_mask"], torch.zeros_like(batch["input_ids"])
        ).numpy()
    merged = raw_minilm.encoder.with_adapter(path)
    assert merged.adapter_sha and merged.path == raw_minilm.encoder.path
    np.testing.assert_allclose(merged.encode(TEXTS), trained, atol=2e-5)
    assert np.abs(merged.encode(TEXTS) - raw_minilm.encoder.encode(TEXTS)).max() > 1e-3


def test_joint_training_changes_adapters_and_head_and_the_rapp_serves_them(
    raw_minilm, tmp_path
) -> None:
    config = replace(
        dm.MinilmDistillConfig(), encoder_lora_r=4, encoder_epochs=2, val_fraction=0.34
    )
    head, (state, spec), summary = dm.distill_minilm_encoder(raw_minilm, SAMPLES, config)
    assert spec.r == 4
    assert any(float(v.abs().sum()) > 0 for k, v in state.items() if k.endswith("lora_B"))
    assert float(head.net[2].weight.detach().abs().sum()) > 0
    assert summary["samples"] == 4 and 1 <= summary["best_epoch"] <= 2
    assert len(summary["val_curve"]) == summary["epochs_run"]
    assert summary["trained_on"] < summary["samples"]

    tuned = MiniLMELam(raw_minilm.encoder)
    tuned.head = head
    tuned.save_head(tmp_path, {"loss": "iokd"}, (state, spec))
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["encoder_adapter"]["file"] == ADAPTER_FILE and card["encoder_adapter"]["r"] == 4

    prompts, apps = [s.prompt for s in SAMPLES], [s.app for s in SAMPLES]
    served = MiniLMELam(TorchEncoder(), head_dir=tmp_path)
    assert served.distilled and served.encoder.adapter_sha == card["encoder_adapter"]["sha256"]
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

    (tmp_path / ADAPTER_FILE).write_bytes((tmp_path / ADAPTER_FILE).read_bytes()[:-1] + b"\0")
    with pytest.raises(ValueError, match="sha256"):
        MiniLMELam(raw_minilm.encoder, head_dir=tmp_path)


def test_joint_training_refuses_a_distilled_start_or_a_frozen_encoder(raw_minilm) -> None:
    with pytest.raises(ValueError, match="positive"):
        dm.distill_minilm_encoder(
            raw_minilm, SAMPLES, replace(dm.MinilmDistillConfig(), encoder_lora_r=0)
        )
    distilled = MiniLMELam(raw_minilm.encoder)
    distilled.artefact = "abc"
    with pytest.raises(ValueError, match="raw E-LAM"):
        dm.distill_minilm_encoder(distilled, SAMPLES)
    with pytest.raises(ValueError):
        dm.MinilmDistillConfig(encoder_lora_r=-1)
