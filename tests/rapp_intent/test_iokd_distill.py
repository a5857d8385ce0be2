"""IoKD distillation: pairs and reference policies, one training step per family."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.iokd import sample

from llmkit.smollm2 import load_model
from rapp_intent.elam.minilm import DirichletHead
from rapp_intent.iokd import distill_minilm as dm
from rapp_intent.iokd import distill_smollm2 as ds
from rapp_intent.iokd import minilm_pairs as mp
from rapp_intent.iokd.config import LossConfig, MinilmDistillConfig, Smollm2DistillConfig
from rapp_intent.iokd.data import dedupe
from rapp_intent.iokd.loss import dataset_means, sample_beta
from rapp_intent.settings import RappSettings

CACHE = RappSettings(_env_file=None).cache_dir

SAMPLES = [
    sample(
        "qa-1",
        "quick, what's the capital of Peru",
        [0.2, 0.15, 0.5, 0.15],
        target_app="qa",
        contrastive=((0.6, 0.15, 0.1, 0.15), (0.1, 0.6, 0.1, 0.2)),
    ),
    sample(
        "qa-2",
        "explain the causes of inflation thoroughly",
        [0.5, 0.15, 0.2, 0.15],
        target_app="qa",
        contrastive=((0.15, 0.1, 0.6, 0.15),),
    ),
    sample(
        "qa-2~syn1",
        "give me a thorough explanation of what causes inflation",
        [0.5, 0.15, 0.2, 0.15],
        split="synthetic",
        origin="synthetic",
        source_id="qa-2",
        target_app="qa",
        contrastive=((0.15, 0.1, 0.6, 0.15),),
    ),
    sample(
        "content-1",
        "write a polished press release about our new inverter",
        [0.5, 0.2, 0.15, 0.15],
        app="content",
        target_app="content",
        contrastive=((0.1, 0.2, 0.1, 0.6),),
    ),
]


@pytest.fixture(scope="module")
def raw_minilm():
    from rapp_intent.elam.encoder_torch import TorchEncoder
    from rapp_intent.elam.minilm import MiniLMELam

    return MiniLMELam(TorchEncoder())


# --- minilm ---------------------------------------------------------------------------------
def test_targets_are_smoothed_off_the_simplex_boundary(raw_minilm) -> None:
    t = mp.smooth([[0.0, 0.0, 0.4, 0.6]], eps=0.02)
    assert torch.all(t > 0) and torch.allclose(t.sum(-1), torch.tensor(1.0))
    lp = raw_minilm.log_prob(["hello"], t, ["qa"])
    assert torch.isfinite(lp).all()


def test_pairs_carry_the_raw_elam_as_reference_and_eq_32_beta(raw_minilm) -> None:
    config = MinilmDistillConfig(loss=LossConfig(kind="iokd", beta_base=0.1, lam=1.5))
    means = dataset_means(SAMPLES)
    pairs = mp.build_pairs(raw_minilm, SAMPLES, config, means, cache_dir=None)
    assert len(pairs) == 5  # one pair per contrastive vector
    assert pairs.sample.tolist() == [0, 0, 1, 2, 3]
    prompts = [SAMPLES[i].prompt for i in pairs.sample.tolist()]
    apps = [SAMPLES[i].app for i in pairs.sample.tolist()]
    with torch.no_grad():
        ref_c = raw_minilm.log_prob(prompts, pairs.chosen, apps)
        ref_r = raw_minilm.log_prob(prompts, pairs.rejected, apps)
    assert torch.allclose(pairs.ref_chosen, ref_c, atol=1e-4)
    assert torch.allclose(pairs.ref_rejected, ref_r, atol=1e-4)
    s_bar = np.array([means[s.target_app] for s in SAMPLES])
    beta = sample_beta(np.array([s.s for s in SAMPLES]), s_bar, config.loss)
    assert np.allclose(pairs.beta.numpy(), beta[pairs.sample.numpy()], atol=1e-7)
    assert len(set(means)) == 2  # s_bar per target application


def test_validation_groups_keep_synthetic_children_out_of_training() -> None:
    for seed in range(20):
        train, val = mp.validation_groups(SAMPLES, 0.3, seed)
        ids = [s.id for s in SAMPLES]
        if val[ids.index("qa-2")]:
            assert not train[ids.index("qa-2~syn1")] and not val[ids.index("qa-2~syn1")]
        assert not val[ids.index("qa-2~syn1")]  # only labelled samples validate
        assert not (train & val).any()


def test_one_training_step_changes_the_head(raw_minilm) -> None:
    config = MinilmDistillConfig(batch_size=8, seed=3)
    pairs = mp.build_pairs(raw_minilm, SAMPLES, config, dataset_means(SAMPLES))
    torch.manual_seed(config.seed)
    fresh = DirichletHead(hidden=config.hidden)
    head, hist = dm.train_head(raw_minilm, pairs, config, epochs=1)
    assert hist["epochs_run"] == 1 and np.isfinite(hist["loss"][0])
    before, after = fresh.state_dict(), head.state_dict()
    assert set(before) == set(after)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "net.2.weight" in changed  # the zero-initialised output layer moved
    assert float(after["net.2.weight"].abs().sum()) > 0


def test_distill_minilm_end_to_end_on_tiny_data(raw_minilm) -> None:
    config = MinilmDistillConfig(epochs=3, patience=2, val_fraction=0.34)
    head, summary = dm.distill_minilm(raw_minilm, SAMPLES, config)
    assert isinstance(head, DirichletHead)
    assert summary["samples"] == 4 and summary["synthetic"] == 1
    assert 1 <= summary["epochs"] <= 3 and "val_mse" in summary and "val_mse_raw" in summary
    distilled = type(raw_minilm)(raw_minilm.encoder)
    distilled.artefact = "abc"
    with pytest.raises(ValueError, match="raw E-LAM"):
        dm.distill_minilm(distilled, SAMPLES, config)


def test_merged_heads_output_the_mean_of_their_members() -> None:
    torch.manual_seed(0)
    heads = [DirichletHead(hidden=h) for h in (8, 16, 8)]
    for h in heads:  # fresh heads output zeros; give them something to average
        torch.nn.init.normal_(h.net[2].weight)
        torch.nn.init.normal_(h.net[2].bias)
    merged = dm.merge_heads(heads)
    assert merged.hidden == 32 and merged.config()["hidden"] == 32
    x, app = torch.randn(6, 384), torch.tensor([0, 1, 2, 3, 4, 0])
    with torch.no_grad():
        outs = [h(x, app) for h in heads]
        delta, log_c = merged(x, app)
    assert torch.allclose(delta, torch.stack([o[0] for o in outs]).mean(0), atol=1e-5)
    assert torch.allclose(log_c, torch.stack([o[1] for o in outs]).mean(0), atol=1e-5)
    assert dm.merge_heads(heads[:1]) is heads[0]
    with pytest.raises(ValueError):
        dm.merge_heads([])
    with pytest.raises(ValueError):
        dm.merge_heads([heads[0], DirichletHead(n_apps=3)])


def test_an_ensemble_is_one_wider_head_that_the_rapp_loads(raw_minilm, tmp_path) -> None:
    config = MinilmDistillConfig(epochs=2, patience=2, val_fraction=0.34, ensemble=3, hidden=16)
    head, summary = dm.distill_minilm(raw_minilm, SAMPLES, config)
    assert head.hidden == 48 and summary["ensemble"] == 3
    distilled = type(raw_minilm)(raw_minilm.encoder)
    distilled.head = head
    distilled.save_head(tmp_path, {"loss": "iokd"})
    served = type(raw_minilm)(raw_minilm.encoder, head_dir=tmp_path)
    prompts, apps = [s.prompt for s in SAMPLES], [s.app for s in SAMPLES]
    assert served.head.hidden == 48
    assert (served.predict_mean(prompts, apps) == distilled.predict_mean(prompts, apps)).all()
    with pytest.raises(ValueError):
        MinilmDistillConfig(ensemble=0)


# --- smollm2 --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_smollm2():
    return load_model(CACHE)


def test_shared_prompt_log_probs_equal_full_sequence_log_probs(base_smollm2) -> None:
    model, tok = base_smollm2
    b = ds.PromptBuilder(tok)
    prompts = [b.prompt("quick, what's 2+2", "qa"), b.prompt("a thorough report on 5G", None)]
    vectors = ([0.2, 0.15, 0.5, 0.15], [0.6, 0.1, 0.1, 0.2])
    answers = [[b.answer(v) for v in vectors] for _ in prompts]
    with torch.no_grad():
        got = ds.group_logps(model, prompts, answers)
        for i, p in enumerate(prompts):
            for j, a in enumerate(answers[i]):
                logits = model(input_ids=torch.tensor([p + a])).logits[0].float()
                lp = torch.log_softmax(logits, -1)
                want = sum(float(lp[len(p) - 1 + t, a[t]]) for t in range(len(a)))
                assert float(got[i, j]) == pytest.approx(want, abs=1e-3)
    assert tok.decode(answers[0][0]) == "[0.20, 0.15, 0.50, 0.15]<|im_end|>"
    with pytest.raises(ValueError):
        ds.group_logps(model, prompts[:1], [[answers[0][0], answers[0][0][:-1]]])


def test_items_cycle_through_samples_and_contrastive_vectors() -> None:
    config = Smollm2DistillConfig(contrastive_per_item=2)
    items = ds.make_items(SAMPLES, 8, config)
    assert len(items) == 8
    assert len({s.id for s, _, _ in items[:4]}) == 4  # every sample before any twice
    for s, cs, beta in items:
        assert len(cs) == 2 and all(c in s.contrastive for c in cs) and beta > 0
    first = [cs for s, cs, _ in items if s.id == "qa-1"]
    assert first[0] == list(SAMPLES[0].contrastive)


def test_per_sample_reference_gives_the_items_reference_and_is_cached(
    base_smollm2, tmp_path, monkeypatch
) -> None:
    model, tok = base_smollm2
    b = ds.PromptBuilder(tok)
    config = Smollm2DistillConfig(contrastive_per_item=1)
    chosen = ds.make_items(SAMPLES, 6, config)  # some samples twice, other s_c
    data = dedupe([s for s, _, _ in chosen])
    table = ds.sample_reference(model, b, data, batch=3, cache_dir=tmp_path)
    assert set(table) == {s.id for s in SAMPLES}
    assert [len(table[s.id]) for s in SAMPLES] == [3, 2, 2, 2]  # s_p and every s_c
    looked_up = ds.items_from_reference(b, chosen, table)
    direct = ds.reference_items(model, b, chosen)
    assert looked_up.prompts == direct.prompts and looked_up.answers == direct.answers
    assert torch.allclose(looked_up.ref, direct.ref, atol=1e-3)
    assert torch.equal(looked_up.beta, direct.beta)
    # The same data again (e.g. the DPO ablation): read from disk, no forward pass.
    monkeypatch.setattr(ds, "group_logps", lambda *a, **k: pytest.fail("recomputed"))
    again = ds.sample_reference(model, b, data, cache_dir=tmp_path)
    assert all(np.array_equal(again[k], table[k]) for k in table)


def test_one_training_step_changes_the_adapters(base_smollm2) -> None:
    model, tok = base_smollm2
    config = Smollm2DistillConfig(
        steps=1, batch_items=1, contrastive_per_item=1, lora_layers=1, lora_r=2, warmup_steps=1
    )
    b = ds.PromptBuilder(tok)
    chosen = ds.make_items(SAMPLES[:1], 1, config)
    items = ds.reference_items(model, b, chosen)
    peft_model = ds.add_adapters(model, config)
    try:
        trainable = {
            n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad
        }
        assert trainable and all("lora_" in n for n in trainable)
        assert all(".layers.29." in n for n in trainable)  # only the top layer
        hist = ds.train_adapters(peft_model, items, config)
        assert hist["steps_done"] == 1 and np.isfinite(hist["loss"][0])
        after = dict(peft_model.named_parameters())
        changed = [n for n, v in trainable.items() if not torch.equal(v, after[n].detach())]
        assert any("lora_B" in n for n in changed)  # B starts at zero and moved
    finally:
        peft_model.unload()  # leave the shared base model without adapters
