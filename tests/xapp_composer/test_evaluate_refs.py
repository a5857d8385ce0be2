"""Reference rows of ``xapp-composer eval``: the exact best chain for a decision vector."""

from __future__ import annotations

import numpy as np
import pytest

from agentnet.intents import LabelledIntent
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


@pytest.mark.parametrize("mse", [0.004, 0.008, 0.02])
def test_noisy_true_vectors_hit_the_asked_mse_on_the_simplex(mse: float) -> None:
    ev = _evalset()
    pairs = np.arange(len(ev))
    v = E.noisy_true_vectors(ev, pairs, mse, seed=1)
    assert v.shape == (len(pairs), 4)
    assert (v >= 0).all()
    np.testing.assert_allclose(v.sum(axis=1), 1.0, atol=1e-12)
    # one noisy vector per request: the MSE over distinct requests is the one asked for
    reqs, first = np.unique(ev.req_idx[pairs], return_index=True)
    got = ((v[first] - ev.requests.true_s[reqs]) ** 2).mean()
    assert got == pytest.approx(mse, abs=1e-5)
    # the same request keeps its vector on every network state
    for r in reqs:
        rows = v[ev.req_idx[pairs] == r]
        np.testing.assert_array_equal(rows, np.broadcast_to(rows[0], rows.shape))
    with pytest.raises(ValueError, match="mse"):
        E.noisy_true_vectors(ev, pairs, 0.0)


def test_best_for_vectors_matches_the_elam_reference_and_degrades_with_noise() -> None:
    ev = _evalset()
    pairs = np.arange(len(ev))
    fee = dict(zip(ev.requests.elam_ids, ev.requests.fees.tolist(), strict=True))
    exact = E.run_best_for_vectors(ev, pairs, ev.requests.true_s[ev.req_idx[pairs]])[0]
    assert exact == E.run_best_for(ev, pairs, "minilm")[0]  # minilm predicts the truth here
    noisy = E.run_best_for_vectors(ev, pairs, E.noisy_true_vectors(ev, pairs, 0.05, seed=2))
    res = E.score_decisions(ev, pairs, *noisy, fee)
    assert res.feasible.all() and res.normalized.mean() < 1.0 - 1e-6
    means = {
        "immersive": np.full(4, 0.25),
        "critical": np.full(4, 0.25),
        "qa": np.full(4, 0.25),
        "content": np.full(4, 0.25),
    }
    app_mean = E.run_best_for_vectors(ev, pairs, E.app_mean_vectors(ev, pairs, means))[0]
    assert app_mean == E.run_best_for(ev, pairs, None)[0]
    with pytest.raises(ValueError, match="shape"):
        E.run_best_for_vectors(ev, pairs, np.full((1, 4), 0.25))
