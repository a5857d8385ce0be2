"""Batched episodes give the same rewards and factors as the reference model."""

from __future__ import annotations

import numpy as np
import pytest

from agentnet.chain import evaluate_chain, step_rewards
from agentnet.network import generate_network
from xapp_composer import features as F
from xapp_composer import steps as S
from xapp_composer.episodes import chain_outcome, episode_scores
from xapp_composer.episodes import step_rewards as batch_step_rewards


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_rewards_match_evaluate_chain(seed: int) -> None:
    rng = np.random.default_rng(seed)
    nets = [generate_network(100 + seed * 10 + i) for i in range(6)]
    nets[0].available[nets[0].agents_of_type(2)[:4]] = False
    nets[1].set_arrival_rate(1.8)
    s = F.batch_state(nets)
    prefix = S.Prefix.empty(len(nets))
    true_s = rng.dirichlet(np.ones(4), size=len(nets))
    chains = np.zeros((len(nets), 3), dtype=np.int64)
    got_steps = []
    for k in range(3):
        choice = np.array(
            [
                rng.choice(net.agents_of_type(t, usable=True))
                for net, t in zip(nets, [k + 1] * 6, strict=True)
            ]
        )
        got_steps.append(batch_step_rewards(s, prefix, choice, true_s, 1.0))
        prefix.append(s, choice)
        chains[:, k] = choice
    out = chain_outcome(s, prefix)
    fee = np.full(len(nets), 0.01)
    score = episode_scores(out, true_s, fee)
    for i, net in enumerate(nets):
        ref = evaluate_chain(net, chains[i], true_s[i], fee=0.01)
        np.testing.assert_allclose(
            [g[i] for g in got_steps], step_rewards(net, chains[i], true_s[i]), rtol=1e-9
        )
        assert out["feasible"][i] == ref.feasible
        for key in ("C", "B"):
            assert out[key][i] == pytest.approx(getattr(ref, key), rel=1e-9, abs=1e-300)
        if ref.feasible:
            assert out["L"][i] == pytest.approx(ref.L, rel=1e-9)
            assert out["P_outage"][i] == pytest.approx(ref.P_outage, rel=1e-9)
        assert score[i] == pytest.approx(ref.r_episode, rel=1e-9)


def _features(net, chain_prefix, intent):
    import torch

    from xapp_composer.policy import CandidateFeatures

    s = F.batch_state([net])
    prefix = S.Prefix.empty(1)
    for a in chain_prefix:
        prefix.append(s, np.array([a]))
    k = len(chain_prefix)
    cols = np.flatnonzero(s.usable[0, k])
    step = S.step_inputs(s, prefix, cols)
    t = [torch.from_numpy(x) for x in step]
    feats = CandidateFeatures()(t[0], t[2], torch.from_numpy(intent).float(), t[3], t[4], t[5])
    return cols, step.mask, feats[0].numpy()


def test_last_step_features_are_the_exact_chain() -> None:
    """At the last step the candidate features carry the exact utilities of the chain."""
    net = generate_network(5)
    first = net.agents_of_type(1, usable=True)[0]
    second = net.agents_of_type(2, usable=True)[0]
    intent = np.array([[0.1, 0.4, 0.3, 0.2]])
    cols, mask, feats = _features(net, [first, second], intent)
    assert mask.all()
    for j, c in enumerate(cols):
        ref = evaluate_chain(net, [first, second, c], intent[0])
        assert bool(feats[j, 4]) == ref.feasible
        if ref.feasible:
            np.testing.assert_allclose(feats[j, :4], ref.utilities, atol=2e-5)
            assert feats[j, 5] == pytest.approx(ref.Q_subjective, abs=2e-5)
            assert feats[j, 16] == pytest.approx(ref.Q_subjective, abs=2e-5)


@pytest.mark.parametrize("seed", [3, 4])
def test_lookahead_one_step_before_the_end_is_the_best_completion(seed: int) -> None:
    net = generate_network(seed)
    first = net.agents_of_type(1, usable=True)[1]
    intent = np.array([[0.3, 0.3, 0.2, 0.2]])
    cols, _, feats = _features(net, [first], intent)
    lasts = net.agents_of_type(3, usable=True)
    for j, b in enumerate(cols):
        best = max(evaluate_chain(net, [first, b, c], intent[0]).Q_subjective for c in lasts)
        assert feats[j, 16] == pytest.approx(best, abs=5e-5)


def test_state_plan_reproduces_step_inputs() -> None:
    net = generate_network(8, n_agents=300)  # large enough for the lookahead shortlist
    net.available[net.agents_of_type(2)[:5]] = False
    s = F.batch_state([net])
    plan = S.StatePlan(s)
    prefix = S.Prefix.empty(1)
    rng = np.random.default_rng(0)
    for k in range(3):
        cols, fast = plan.inputs(prefix)
        np.testing.assert_array_equal(cols, np.flatnonzero(s.usable[0, k]))
        ref = S.step_inputs(s, prefix, cols)
        for a, b in zip(fast, ref, strict=True):
            np.testing.assert_array_equal(a, b)
        prefix.append(s, np.array([rng.choice(cols)]))


def test_large_networks_shortlist_the_candidates_of_each_factor() -> None:
    net = generate_network(9, n_agents=700)
    s = F.batch_state([net])
    plan = S.StatePlan(s)
    cols = plan.steps[0].cols
    usable = np.flatnonzero(s.usable[0, 0])
    assert len(usable) > S.K_CAND and len(cols) == S.K_CAND
    assert set(cols) <= set(usable)
    lat = net.agent_latency()
    assert usable[np.argmax(net.p_success[usable])] in cols
    assert usable[np.argmin(lat[usable])] in cols
    assert usable[np.argmin(net.outage_rate[usable])] in cols


def test_shortlisted_route_rows_give_the_same_plan() -> None:
    net = generate_network(10, n_agents=700)
    full = S.StatePlan(F.batch_state([net]))
    lean = S.StatePlan(F.batch_state([net], shortlist_k=S.K_CAND))
    prefix = S.Prefix.empty(1)
    s = F.batch_state([net])
    for k in range(3):
        cols_a, a = full.inputs(prefix)
        cols_b, b = lean.inputs(prefix)
        np.testing.assert_array_equal(cols_a, cols_b)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
        prefix.append(s, np.array([cols_a[k]]))
