"""The project's labelled intents follow INTENTS.md and never overlap the dev set."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
from support.shared import shared_file

from agentnet.intents import APPS, INTENTS_DIR, load_intents


def records() -> list[dict]:
    out = []
    for path in sorted(INTENTS_DIR.glob("*.jsonl")):
        out += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return out


def test_rubric_rules() -> None:
    recs = records()
    assert len(recs) >= 400
    assert len({r["id"] for r in recs}) == len(recs)
    for r in recs:
        assert list(r) == ["id", "prompt", "s", "app", "split"], r["id"]
        s = np.array(r["s"])
        assert s.shape == (4,) and np.all(s >= 0), r["id"]
        assert abs(s.sum() - 1.0) < 1e-9, r["id"]
        np.testing.assert_allclose(s * 20, np.round(s * 20), atol=1e-9, err_msg=r["id"])
        assert r["app"] in APPS and r["split"] in ("train", "heldout")
        assert 0 < len(r["prompt"]) <= 600
    # Loadable by the shared reader.
    assert len(load_intents(sorted(INTENTS_DIR.glob("*.jsonl")))) == len(recs)


def test_every_app_has_a_heldout_split_and_all_dominant_factors() -> None:
    recs = records()
    for app in APPS:
        mine = [r for r in recs if r["app"] == app]
        split = Counter(r["split"] for r in mine)
        assert split["heldout"] >= 0.15 * len(mine) and split["train"] >= 0.7 * len(mine)
        dominant = Counter(int(np.argmax(r["s"])) for r in mine if max(r["s"]) > 0.25)
        assert all(dominant[k] >= 10 for k in range(4)), (app, dominant)


def test_no_dev_prompt_is_reused() -> None:
    path = shared_file("spec", "dev_intents.jsonl")
    dev = {json.loads(line)["prompt"].strip().lower() for line in path.open(encoding="utf-8")}
    ours = {r["prompt"].strip().lower() for r in records()}
    assert not dev & ours
