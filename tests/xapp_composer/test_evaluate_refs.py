"""Reference rows of ``xapp-composer eval``: the exact best chain for a decision vector."""

from __future__ import annotations

import numpy as np
import pytest

from sim_ric.users import LabelledIntent
from xapp_composer import evaluate as E
from xapp_composer.data import evaluation_requests
from xapp_composer.scoring import EvalSet

INTENTS = [
    LabelledIntent(prompt="lowest latency please", s=(0.1, 0.1, 0.7, 0.1), app="immersive"),
    LabelledIntent(prompt="never drop the link", s=(0.1, 0.1, 0.1, 0.7), app="critical"),
    LabelledIntent(prompt="the most capable answer", s=(0.7, 0.1, 0.1, 0.1), app="qa"),
    LabelledIntent(prompt="exact text, no corruption", s=(0.2, 0.6, 0.1, 0.1), app="content"),
]


def _evalset() -> EvalSet:
    req = evaluation_requests(INTENTS, ["minilm", "smollm2"], "synthetic", seed=3)
    req.preds[:, 0] = req.true_s  # "minilm" predicts perfectly, "smollm2" keeps its noise
    return EvalSet.build([101, 102], req)


def test_best_chain_for_the_true_vector_scores_one() -> None:
    ev = _evalset()
    pairs = np.arange(len(ev))
    fee = dict(zip(ev.requests.elam_ids, ev.requests.fees.tolist(), strict=True))
    res = E.score_decisions(ev, pairs, *E.run_best_for(ev, pairs, "minilm"), fee)
    # the optimum pays the cheapest fee, which is minilm's here
    assert ev.requests.fees[0] == ev.requests.fees.min()
    np.testing.assert_allclose(res.normalized, 1.0, atol=1e-9)


def test_best_chain_for_another_vector_is_feasible_and_not_above_the_optimum() -> None:
    ev = _evalset()
    pairs = np.arange(len(ev))
    fee = dict(zip(ev.requests.elam_ids, ev.requests.fees.tolist(), strict=True))
    even = E.score_decisions(ev, pairs, *E.run_best_for(ev, pairs, None), fee)
    assert even.feasible.all() and set(even.elams) == {""}
    # the optimum pays the cheapest E-LAM's fee; a decision that calls no E-LAM pays none,
    # so it may pass the optimum by that fee and never by more
    opt, _ = ev.bounds()
    assert (even.score <= opt[pairs] + ev.requests.fees.min() + 1e-9).all()
    # skewed true vectors: the even vector's chain is not the best for all of them
    assert even.normalized.mean() < 1.0 - 1e-6


def test_per_app_breakdown_partitions_the_pairs() -> None:
    ev = _evalset()
    pairs = np.arange(len(ev))
    fee = dict(zip(ev.requests.elam_ids, ev.requests.fees.tolist(), strict=True))
    res = E.score_decisions(ev, pairs, *E.run_best_for(ev, pairs, None), fee)
    per_app = res.per_app(ev)
    assert set(per_app) == {"immersive", "critical", "qa", "content"}
    assert sum(a["n"] for a in per_app.values()) == len(pairs)
    weighted = sum(a["normalized_score"] * a["n"] for a in per_app.values()) / len(pairs)
    assert weighted == pytest.approx(res.normalized.mean())
