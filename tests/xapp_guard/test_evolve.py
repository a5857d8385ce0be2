"""Prompts, answers and the self-evolution loop; the whole experiment on a model-made corpus
with the LLM behind an OpenAI-compatible endpoint (the test server)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from guard_support import TINY, Perturb, model_corpus
from support.openai import ChatServer

from llmkit.chat import CachedChat, make_chat
from xapp_guard.config import METHODS, EvolveConfig, ExperimentConfig
from xapp_guard.corpus import load
from xapp_guard.evolve import Loop
from xapp_guard.experiment import run, split
from xapp_guard.features import INDEX
from xapp_guard.scenarios import CLASSES, SCHEMA
from xapp_guard.synth import (
    GuardLlmSettings,
    first_json,
    parse_scenario,
    parse_windows,
    scenario_prompt,
    window_line,
    window_prompt,
)
from xapp_guard.traffic import StackModel


def test_scenario_prompt_is_one_line_then_the_examples() -> None:
    ex = [{"rate_hz": 20.0, "jitter": 0.1, "burst": 2, "duration_s": 12.0, "prompt_bytes": 80}]
    fb = "Last round 1 of 4 new lines were accepted. "
    (msg,) = scenario_prompt("request_flood", "slow", ex, fb)
    head, *lines = msg["content"].splitlines()
    assert msg["role"] == "user" and lines == [json.dumps(ex[0])]
    assert head.startswith('Complete the list of "request_flood" (slow) attack scenarios.')
    assert fb.strip() in head


def test_answers_in_the_shapes_small_models_write_are_parsed() -> None:
    answer = 'Here you go:\n{\n  "rate_hz": 22.0, "jitter": 0.03, "burst": 3,\n  "duration_s": 12.5, "prompt_bytes": 160}\n{"rate'
    s = parse_scenario(answer, "request_flood", "fast")
    assert s.params["rate_hz"] == 22.0 and s.cls == "request_flood" and s.variant == "fast"
    assert first_json('x [1, 2] {"a": 1}') == [1, 2]
    with pytest.raises(ValueError):
        first_json("no json at all")
    seq = np.zeros((8, len(INDEX)), np.float32)
    seq[-2:, INDEX["pub_req"]] = [30, 41]
    seq[-1, INDEX["iat_mean"]] = 0.0234
    line = window_line(seq)
    assert json.loads(line) == [{"pub_req": 30}, {"pub_req": 41, "iat_mean": 0.023}]
    back = parse_windows(line, 8)
    assert back[-1, INDEX["pub_req"]] == 41 and back[:6].sum() == 0
    (msg,) = window_prompt("request_flood", "fast", [seq])
    assert msg["content"].endswith(line + "\n") and "last 2 windows" in msg["content"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return load(model_corpus(tmp_path_factory.mktemp("corpus"), seed=4))


def test_the_loop_checks_keeps_or_drops_and_logs_each_generation(corpus, cal) -> None:
    x, y, xv, yv = split(corpus, TINY.length)
    eps = [e for e in corpus.labels["episodes"] if e["part"] == "train"]
    chat = Perturb()
    loop = Loop(x, y, xv, yv, eps, StackModel(cal), chat, EvolveConfig(generations=2, per_cell=1),
                TINY)  # fmt: skip
    pool, history = loop.evolve()
    assert [h.generation for h in history] == [1, 2]
    cells = sum(1 if c == "benign" else 2 for c in CLASSES)
    assert chat.calls == 2 * 2 * cells  # generations x routes x cells
    for h in history:
        assert h.candidates == 2 * cells
        assert 0 <= h.accepted_share <= 1 and h.accepted == sum(
            d["accepted"] for d in h.by_route.values()
        )
        # Scaling every number by 40 breaks bounds or lands far from the real class.
        assert h.reasons, h
    kept = [h for h in history if h.kept]
    assert len(pool.accepted) == sum(h.accepted for h in kept)
    for h in history:
        if not h.kept:
            assert h.accepted == 0 or h.val_macro_f1 < h.best_before


def test_training_recording_without_a_val_part_is_refused(corpus, tmp_path) -> None:
    labels = dict(corpus.labels)
    corpus.part[corpus.part == "val"] = "train"
    try:
        with pytest.raises(ValueError, match="train and val parts"):
            split(corpus, 8)
    finally:
        corpus.part[:] = load(model_corpus(tmp_path / "again", seed=4)).part
    assert labels["parts"]


@pytest.mark.slow
def test_the_experiment_through_an_openai_compatible_endpoint(tmp_path, monkeypatch) -> None:
    corpus_dir = model_corpus(tmp_path / "corpus", seed=5)
    server = ChatServer()  # answers every prompt with itself: the examples come back
    try:
        monkeypatch.setenv("GUARD_LLM_BACKEND", "openai")
        monkeypatch.setenv("GUARD_LLM_BASE_URL", server.url)
        monkeypatch.setenv("GUARD_LLM_MODEL", "guard-test-model")
        settings = GuardLlmSettings()
        chat = CachedChat(make_chat(settings), tmp_path / "cache.jsonl")
        out = tmp_path / "models"
        summary = run(ExperimentConfig(corpus=corpus_dir, out=out, seeds=1),
                      EvolveConfig(generations=1, per_cell=1), TINY, chat=chat,
                      command="test")  # fmt: skip
    finally:
        server.close()
    assert server.requests and all(b["model"] == "guard-test-model" for b, _ in server.requests)
    assert set(summary["methods"]) == set(METHODS)
    evolution = json.loads((out / "evolution.json").read_text())
    (gen,) = evolution["generations"]
    # An echo repeats the prompt's first example: the checks refuse every such copy...
    assert gen["accepted"] == 0 and set(gen["reasons"]) <= {"duplicate", "schema", "far"}
    # ...while the unchecked baseline keeps what can be realised.
    assert evolution["candidates"]["synthetic"]["usable"] > 0
    for m in METHODS:
        card = json.loads((out / "detectors" / f"{m}-s0.card.json").read_text())
        assert card["method"] == m and card["onnx_parity_max_abs_diff"] < 1e-4
        assert 0 < card["alert"]["threshold"] <= 0.5
    assert (out / "guard.onnx").is_file() and (out / "evolution.png").stat().st_size > 1000
    assert json.loads((out / "guard.card.json").read_text())["name"] == "guard"
    fields = set(SCHEMA["request_flood"])
    prompts = [b["messages"][-1]["content"] for b, _ in server.requests]
    assert any(all(f in p for f in fields) for p in prompts)
