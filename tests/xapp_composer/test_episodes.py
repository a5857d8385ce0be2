"""Batched episodes give the same rewards and factors as the reference model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agentnet.chain import evaluate_chain, step_rewards
from agentnet.config import DEFAULT
from agentnet.network import generate_network
from xapp_composer import features as F
from xapp_composer import steps as S
from xapp_composer.episodes import chain_outcome, episode_scores
from xapp_composer.episodes import step_rewards as batch_step_rewards
from xapp_composer.policy import CandidateFeatures


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


def _features(net, chain_prefix, intent, features=None):
    """Candidate features of the step after ``chain_prefix`` (default: the encoding for
    ``net.cfg``)."""
    s = F.batch_state([net])
    prefix = S.Prefix.empty(1)
    for a in chain_prefix:
        prefix.append(s, np.array([a]))
    k = len(chain_prefix)
    cols = np.flatnonzero(s.usable[0, k])
    step = S.step_inputs(s, prefix, cols)
    t = [torch.from_numpy(x) for x in step]
    featurize = features or CandidateFeatures(net.cfg)
    feats = featurize(t[0], t[2], torch.from_numpy(intent).float(), t[3], t[4], t[5])
    return cols, step.mask, feats[0].numpy()


COL = {name: i for i, name in enumerate(F.CAND_COLUMNS)}
UTILITIES = [COL["u_c"], COL["u_b"], COL["u_l"], COL["u_p"]]

OTHER_MODEL = DEFAULT.with_overrides(
    c_th=0.012,
    l_max=4.0,
    c_ref=0.4,
    l_ref=0.12,
    b_ref=3e-5,
    b_decades=3.0,
    p_ref=5e-3,
    p_decades=2.5,
)
"""Every constant of the utilities and the constraints away from MODEL.md's defaults."""


def _check_last_step(net, first, second, intent, features=None) -> int:
    """Assert that the last step's candidate features are agentnet's exact chain
    (``evaluate_chain`` under ``net.cfg``: feasibility, utilities, score); returns how many
    of the candidate chains are feasible."""
    cols, mask, feats = _features(net, [first, second], intent, features)
    assert mask.all()
    feasible = 0
    for j, c in enumerate(cols):
        ref = evaluate_chain(net, [first, second, c], intent[0])
        assert bool(feats[j, COL["feasible"]]) == ref.feasible
        if ref.feasible:
            feasible += 1
            np.testing.assert_allclose(feats[j, UTILITIES], ref.utilities, atol=2e-5)
            assert feats[j, COL["score"]] == pytest.approx(ref.Q_subjective, abs=2e-5)
            assert feats[j, COL["look_score"]] == pytest.approx(ref.Q_subjective, abs=2e-5)
    return feasible


def test_last_step_features_are_the_exact_chain() -> None:
    """At the last step the candidate features carry the exact utilities of the chain."""
    net = generate_network(5)
    first = net.agents_of_type(1, usable=True)[0]
    second = net.agents_of_type(2, usable=True)[0]
    assert _check_last_step(net, first, second, np.array([[0.1, 0.4, 0.3, 0.2]])) > 0


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_features_follow_the_model_config(seed: int) -> None:
    """At another configuration (thresholds and every reference point) the torch
    re-encoding of eqs. 2-14 and the utilities still gives agentnet's numbers, and the
    default-configuration encoding does not (the comparison sees the configuration)."""
    net = generate_network(seed, OTHER_MODEL)
    intent = np.array([[0.25, 0.3, 0.25, 0.2]])
    # Prefixes of capable agents, so that some completions meet the stricter latency bound.
    firsts, seconds = (
        sorted(net.agents_of_type(t, usable=True), key=lambda a: -net.p_success[a]) for t in (1, 2)
    )
    feasible = 0
    for first, second in (
        (firsts[0], seconds[0]),
        (firsts[1], seconds[2]),
        (firsts[2], seconds[1]),
    ):
        n = _check_last_step(net, first, second, intent)
        feasible += n
        if n:  # the utilities of feasible chains tell the reference points apart
            with pytest.raises(AssertionError):
                _check_last_step(net, first, second, intent, CandidateFeatures(DEFAULT))
    assert feasible >= 5


@pytest.mark.parametrize(("seed", "cfg"), [(3, DEFAULT), (4, DEFAULT), (8, OTHER_MODEL)])
def test_lookahead_one_step_before_the_end_is_the_best_completion(seed: int, cfg) -> None:
    net = generate_network(seed, cfg)
    first = net.agents_of_type(1, usable=True)[1]
    intent = np.array([[0.3, 0.3, 0.2, 0.2]])
    cols, _, feats = _features(net, [first], intent)
    lasts = net.agents_of_type(3, usable=True)
    for j, b in enumerate(cols):
        best = max(evaluate_chain(net, [first, b, c], intent[0]).Q_subjective for c in lasts)
        assert feats[j, COL["look_score"]] == pytest.approx(best, abs=5e-5)


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


def test_the_lookahead_keeps_every_agent_the_next_step_may_choose() -> None:
    """The lookahead of a step covers the next step's candidates: its per-factor shortlist
    ranks agents by their own terms only, so a shorter one would drop the near neighbours
    through which a candidate's best completion often goes."""
    for n in (300, 600):
        s = F.serving_state(generate_network(11, n_agents=n), None, S.K_CAND)
        plan = S.StatePlan(s)
        for k in range(len(s.chain_types) - 1):
            look = S.lookahead_candidates(s, k, shared=False)
            np.testing.assert_array_equal(np.sort(look), plan.steps[k + 1].cols)
        assert len(plan.steps[1].cols) > 64  # more than a lookahead of 64 would keep


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
