"""LLM zero-shot baseline: prompt, parsing, and the real local C-LAM answering."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from agentnet.intents import LabelledIntent
from agentnet.network import generate_network
from xapp_composer.episodes import RequestSet
from xapp_composer.llm_baseline import build_prompt, parse_chain, run_llm
from xapp_composer.scoring import EvalSet

INTENTS = [
    LabelledIntent(prompt="quick: capital of Peru?", app="qa", s=(0.15, 0.15, 0.55, 0.15)),
    LabelledIntent(
        prompt="Guide the robot arm in the cleanroom, no mistakes allowed.",
        app="critical",
        s=(0.15, 0.1, 0.15, 0.6),
    ),
]


def _evalset() -> EvalSet:
    preds = {"minilm": np.array([i.s for i in INTENTS])}
    req = RequestSet.from_intents(INTENTS, preds, {"minilm": 22e6})
    return EvalSet.build([7], req, n_agents=30)


def test_prompt_lists_usable_candidates_of_each_step() -> None:
    net = generate_network(3, n_agents=30)
    messages, lists = build_prompt(net, "quick: capital of Peru?", "qa")
    assert [m["role"] for m in messages] == ["system", "user"]
    for t, cand in zip(net.cfg.chain_types, lists, strict=True):
        assert len(cand) > 0 and all(net.types[a] == t and net.available[a] for a in cand)
        assert all(f"agent {a}:" in messages[1]["content"] for a in cand)


def test_parse_chain_accepts_only_valid_chains() -> None:
    net = generate_network(3, n_agents=30)
    _, lists = build_prompt(net, "x", "qa")
    good = tuple(int(c[0]) for c in lists)
    assert parse_chain(f"{good[0]}, {good[1]}, {good[2]}", net) == good
    assert parse_chain("I would pick " + " then ".join(map(str, good)), net) == good
    assert parse_chain(f"{good[1]}, {good[0]}, {good[2]}", net) is None  # wrong types
    assert parse_chain("12", net) is None and parse_chain("no idea", net) is None
    assert parse_chain(f"{good[0]}, {good[1]}, 9999", net) is None


def test_run_llm_scores_what_the_model_answers() -> None:
    ev = _evalset()
    pairs = np.arange(len(ev))

    def first_candidates(messages):  # a "model" that takes the first agent listed per step
        blocks = messages[1]["content"].split("candidates:")[1:]
        return ", ".join(re.search(r"agent (\d+):", b).group(1) for b in blocks)

    chains, elams, fees = run_llm(ev, pairs, chat=first_candidates)
    assert all(c is not None and len(c) == 3 for c in chains)
    assert elams == ["llm"] * len(pairs) and fees == {"llm": 0.0}
    chains, _, _ = run_llm(ev, pairs, chat=lambda m: "sorry, I cannot help")
    assert chains == [None] * len(pairs)


def test_run_llm_with_the_local_clam() -> None:
    pytest.importorskip("transformers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ev = _evalset()
    pairs = np.arange(2)
    chains, elams, fees = run_llm(ev, pairs, backend="local")
    assert len(chains) == 2 and elams == ["llm:local:SmolLM2-135M-Instruct"] * 2
    assert fees[elams[0]] > 0
    for p, c in zip(pairs, chains, strict=True):
        net = ev.nets[ev.net_idx[p]]
        assert c is None or parse_chain(", ".join(map(str, c)), net) == c
