"""How the MiniLM encoder cuts a batch into forward passes (padding, shapes, truncation)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rapp_intent.elam.batch_plan import (
    FORWARD_COST,
    LENGTH_STEP,
    MAX_ROWS,
    ROW_SIZES,
    plan_sub_batches,
)
from rapp_intent.elam.encoder import MAX_TOKENS


def _spy_forward(encoder, monkeypatch) -> list[tuple[int, int]]:
    """Record the input shape of every forward pass ``encoder`` runs from now on."""
    shapes: list[tuple[int, int]] = []
    forward = encoder._forward

    def spy(input_ids, attention_mask):
        shapes.append(input_ids.shape)
        return forward(input_ids, attention_mask)

    monkeypatch.setattr(encoder, "_forward", spy)
    return shapes


def _cost(plan) -> int:
    return sum(FORWARD_COST + sub.rows * sub.length for sub in plan)


@pytest.mark.parametrize("quantise", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_plan_covers_every_prompt_once_within_its_shape(seed, quantise):
    rng = np.random.default_rng(seed)
    lengths = [int(x) for x in rng.integers(3, 120, size=int(rng.integers(1, 200)))]
    plan = plan_sub_batches(lengths, quantise=quantise)
    covered = sorted(i for sub in plan for i in sub.index)
    assert covered == list(range(len(lengths)))
    for sub in plan:
        assert 1 <= len(sub.index) <= sub.rows
        assert len(sub.index) <= MAX_ROWS
        assert sub.length >= max(lengths[i] for i in sub.index)
        if quantise:
            assert sub.rows in ROW_SIZES and sub.length % LENGTH_STEP == 0
        else:
            assert sub.rows == len(sub.index)
            assert sub.length == max(lengths[i] for i in sub.index)


@pytest.mark.parametrize("quantise", [False, True])
def test_plan_is_the_cheapest_split_of_the_sorted_prompts(quantise):
    rng = np.random.default_rng(7)
    lengths = [int(x) for x in rng.integers(4, 300, size=8)]
    ordered = sorted(lengths)

    def shape(run):
        if not quantise:
            return len(run), max(run)
        rows = next(r for r in ROW_SIZES if r >= len(run))
        return rows, LENGTH_STEP * -(-max(run) // LENGTH_STEP)

    brute = min(
        sum(FORWARD_COST + rows * length for rows, length in map(shape, runs))
        for cuts in itertools.chain.from_iterable(
            itertools.combinations(range(1, 8), k) for k in range(8)
        )
        for runs in [[ordered[a:b] for a, b in zip((0, *cuts), (*cuts, 8), strict=True)]]
    )
    assert _cost(plan_sub_batches(lengths, quantise=quantise)) == brute


def test_plan_separates_short_from_long_prompts():
    lengths = [200] * 10 + [12] * 30
    plan = plan_sub_batches(lengths)
    assert [(len(s.index), s.length) for s in plan] == [(30, 12), (10, 200)]
    assert set(plan[0].index) == set(range(10, 40))
    # similar lengths stay in one pass
    assert len(plan_sub_batches([20, 21, 22, 24] * 16)) == 1


def test_batch_rows_match_prompts_encoded_alone_in_input_order(minilm):
    prompts = [
        "keep the figures exact",
        "a " * 90,
        "hi",
        "render the scene for my headset with no lag at all, please, it is a live demo",
        "ünïcødé 漢字 🚀",
    ]
    batch = minilm.encoder.encode(prompts)
    alone = np.concatenate([minilm.encoder.encode([p]) for p in prompts])
    assert np.abs(batch - alone).max() < 1e-5


def test_a_translate_batch_of_similar_prompts_is_one_forward_pass(minilm, monkeypatch, tmp_path):
    from rapp_intent.elam.registry import Registry
    from rapp_intent.memory import Memory
    from rapp_intent.service import IntentTranslator, TranslateInput

    shapes = _spy_forward(minilm.encoder, monkeypatch)
    translator = IntentTranslator(Registry([minilm]), Memory(tmp_path / "memory.sqlite3"))
    items = [
        TranslateInput(prompt=f"batch test {i}: keep my video call smooth", app=app, model="minilm")
        for i, app in zip(range(64), ["qa", "content", "immersive", "critical"] * 16, strict=True)
    ]
    out = translator.translate_batch(items)
    assert len(out) == 64 and not any(o.fallback for o in out)
    assert len(shapes) == 1 and shapes[0][0] == 64


def test_prompts_past_max_tokens_are_truncated_not_refused(minilm):
    """A 4 KiB prompt is encoded from its first 256 tokens (sentence-transformers' rule)."""
    head = "render the scene for my headset, no lag " * 60
    a = head + "and keep the exact figures of the report " * 40
    b = head + "lose whatever you want, it does not matter at all " * 30
    assert len(minilm.encoder.tokenizer(a)["input_ids"]) > MAX_TOKENS
    assert len(a.encode()) <= 4096 and len(b.encode()) <= 4096
    ea, eb = minilm.encoder.encode([a, b])
    assert np.abs(ea - eb).max() < 1e-5
    out = minilm.translate([a, b])
    assert all(t.ok for t in out)


def test_bf16_warmup_runs_every_quantised_shape_once(monkeypatch):
    import torch

    from rapp_intent.elam.encoder_torch import TorchEncoder

    encoder = TorchEncoder(dtype=torch.bfloat16, warm_lengths=20)
    seen = _spy_forward(encoder, monkeypatch)
    shapes = encoder.warmup()
    assert sorted(shapes) == sorted((r, n) for r in ROW_SIZES for n in (8, 16))
    assert seen == shapes
    # the shapes a planned batch then uses are among the warmed ones
    seen.clear()
    encoder.encode([f"warm {i}: keep the call smooth" for i in range(12)])
    assert all(shape in shapes for shape in seen)
    encoder.dtype = torch.float32  # fp32 kernels are not built per shape: nothing to warm
    assert encoder.warmup() == []


def test_onnx_warmup_runs_each_single_prompt_length_once_and_changes_no_output(minilm, monkeypatch):
    encoder = minilm.encoder
    texts = ["keep the call smooth", "render the scene for my headset, no lag", "hi"]
    before = encoder.encode(texts)
    monkeypatch.setattr(encoder, "warm_lengths", 12)
    seen = _spy_forward(encoder, monkeypatch)
    shapes = encoder.warmup()
    assert shapes == [(1, n) for n in range(2, 13)]
    assert seen == shapes
    np.testing.assert_array_equal(encoder.encode(texts), before)
    monkeypatch.setattr(encoder, "warm_lengths", 0)
    assert encoder.warmup() == []


def test_warm_lengths_setting_reaches_the_encoder(make_settings, monkeypatch):
    from rapp_intent.elam.registry import load_elam

    monkeypatch.setenv("RAPP_MINILM_WARM_LENGTHS", "0")
    assert make_settings().minilm_warm_lengths == 0
    elam = load_elam("minilm", make_settings(minilm_backend="torch-bf16", minilm_warm_lengths=8))
    assert elam.encoder.warm_lengths == 8
    elam.warmup()
    vec = elam.translate(["keep the call smooth"])[0].vector
    assert vec is not None and abs(sum(vec) - 1) < 1e-6
    onnx = load_elam("minilm", make_settings(minilm_backend="onnx", minilm_warm_lengths=5))
    assert onnx.encoder.warm_lengths == 5
