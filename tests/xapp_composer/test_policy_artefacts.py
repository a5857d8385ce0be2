"""The shipped policies in models/policy: verified against their cards, loadable, deciding."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from sim_ric.network import generate_network
from sim_ric.users import APPS
from xapp_composer.cli import MODELS_DIR
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
