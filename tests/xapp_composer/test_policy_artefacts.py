"""The shipped policies in models/policy: verified against their cards, loadable, deciding."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from agentnet.intents import APPS
from agentnet.network import generate_network
from xapp_composer import steps as S
from xapp_composer import tree as T
from xapp_composer.artefacts import MODELS_DIR
from xapp_composer.runtime import PolicyRuntime

NAMES = ["srl-general", "drl-even", *(f"srl-{a}" for a in APPS)]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", NAMES)
def test_card_matches_the_graphs(name: str) -> None:
    card = json.loads((MODELS_DIR / f"{name}.card.json").read_text())
    assert card["sha256"] == _sha(MODELS_DIR / card["file"])
    for part in ("encoder", "elam"):
        assert card[part]["sha256"] == _sha(MODELS_DIR / card[part]["file"])
    assert max(card["parity_max_abs_error"].values()) < 1e-4
    tree = card["tree"]
    for part in ("plan", "decide", "prefix1", "prefix2"):
        assert tree[part]["sha256"] == _sha(MODELS_DIR / tree[part]["file"])
    assert tree["parity"]["same_chain"] == tree["parity"]["requests"] > 0
    # Computed under today's run-time shortlists (else: xapp-composer recheck).
    assert (tree["parity"]["k_cand"], tree["parity"]["k_look"], tree["parity"]["max_pairs"]) == (
        S.K_CAND,
        S.K_LOOK,
        T.DEFAULT_MAX_PAIRS,
    )
    cfg = card["training"]["config"]
    assert cfg["mode"] == ("even" if name == "drl-even" else "predicted")
    assert card["training"]["best"]["val_feasible"] == 1.0


def test_per_application_policies_start_from_the_general_one() -> None:
    general = json.loads((MODELS_DIR / "srl-general.card.json").read_text())
    base = general["training"]["config"]["minutes"]
    for app in APPS:
        cfg = json.loads((MODELS_DIR / f"srl-{app}.card.json").read_text())["training"]["config"]
        assert cfg["app"] == app and cfg["init"].endswith("srl-general.pt")
        # the general policy's training plus the fine-tuning: within 15 minutes per policy
        assert base + cfg["minutes"] <= 15.0


@pytest.mark.parametrize("name", ["srl-general", "srl-critical", "drl-even"])
def test_shipped_policy_decides_valid_chains(name: str) -> None:
    rt = PolicyRuntime(MODELS_DIR / f"{name}.onnx")
    for seed, n in ((7, 50), (8, 81), (9, 200)):
        net = generate_network(seed, n_agents=n)
        prep = rt.prepare(net)
        assert prep.tree_levels == (3 if n <= 81 else 2)
        d = rt.decide(prep, "critical", "keep it up, no outages", lambda e: np.full(4, 0.25))
        assert len(d.chain) == len(net.cfg.chain_types)
        for a, t in zip(d.chain, net.cfg.chain_types, strict=True):
            assert net.types[a] == t and net.available[a]


REPORTS = {
    "eval_dev_seeds101-105.json": [101, 102, 103, 104, 105],
    "eval_dev_seeds101-110.json": list(range(101, 111)),
}


@pytest.mark.parametrize("report", sorted(REPORTS))
def test_shipped_evaluation_is_of_the_shipped_policies(report: str) -> None:
    """The Fig. 8 reports the README quotes were produced by the graphs that ship, on the
    dev intents and the unseen seeds they name, and meet the targets: SRL >= 0.85, at least
    0.06 above DRL (Even) and 0.08 above Greedy."""
    out = json.loads((MODELS_DIR / "report" / report).read_text())
    meta = out["_meta"]
    assert meta["intents"].endswith("dev_intents.jsonl") and meta["seeds"] == REPORTS[report]
    assert meta["pairs"] == 48 * len(meta["seeds"]) and meta["agents"] == 81
    assert set(meta["per_app_policies"]) == set(APPS)
    assert meta["policies"] == {n: _sha(MODELS_DIR / f"{n}.onnx") for n in meta["policies"]}
    assert set(meta["policies"]) == set(NAMES)
    score = {k: v["normalized_score"] for k, v in out.items() if k != "_meta"}
    assert score["srl"] >= 0.85
    assert score["srl"] - score["drl_even"] >= 0.06
    assert score["srl"] - score["greedy"] >= 0.08
    assert all(v["feasible"] == 1.0 for k, v in out.items() if k in ("srl", "srl_general"))


SIZE_REPORTS = {
    "eval_dev_seeds101-105_agents300.json": 300,
    "eval_dev_seeds101-105_agents600.json": 600,
}


@pytest.mark.parametrize("report", sorted(SIZE_REPORTS))
def test_size_reports_are_of_the_shipped_policies(report: str) -> None:
    """The quality-at-size reports the results page renders were produced by the graphs
    that ship, on the dev intents, seeds 101-105 and the size they name."""
    meta = json.loads((MODELS_DIR / "report" / report).read_text())["_meta"]
    assert (
        meta["intents"].endswith("dev_intents.jsonl")
        and meta["seeds"] == REPORTS["eval_dev_seeds101-105.json"]
    )
    assert meta["agents"] == SIZE_REPORTS[report] and meta["pairs"] == 48 * 5
    assert meta["policies"] == {n: _sha(MODELS_DIR / f"{n}.onnx") for n in meta["policies"]}
    assert set(meta["policies"]) == set(NAMES)


def test_readme_report_has_every_method() -> None:
    """The report the README's table comes from is one run of the default command: all five
    methods (random, greedy, DRL (Even), LLM zero-shot, SRL), each with the score, the
    factors and the E-LAM shares, the LLM on its 48 pairs."""
    out = json.loads((MODELS_DIR / "report" / "eval_dev_seeds101-105.json").read_text())
    fields = {"normalized_score", "score", "Q", "C", "B", "L", "P_outage", "elam_share"}
    for key in ("random", "greedy", "drl_even", "llm_zero_shot", "srl"):
        assert fields <= set(out[key]), key
    assert out["_meta"]["llm_pairs"] == out["llm_zero_shot"]["n"] == 48
