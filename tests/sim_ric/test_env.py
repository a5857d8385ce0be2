"""The Gymnasium env: check_env, masking, rewards and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from agentnet.chain import evaluate_chain
from agentnet.network import generate_network
from sim_ric.env import AgenticNetworkEnv, EnvRequest


def rollout(env, seed):
    _, info = env.reset(seed=seed)
    trace, done = [], False
    while not done:
        valid = np.flatnonzero(info["action_mask"])
        action = int(env.np_random.choice(valid))
        _obs, reward, done, truncated, info = env.step(action)
        trace.append((action, reward))
        assert not truncated
    return trace, info


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_check_env() -> None:
    check_env(AgenticNetworkEnv(), skip_render_check=True)


def test_seeded_runs_are_reproducible() -> None:
    a, _ = rollout(AgenticNetworkEnv(), 42)
    b, _ = rollout(AgenticNetworkEnv(), 42)
    c, _ = rollout(AgenticNetworkEnv(), 43)
    assert a == b
    assert a != c


def test_masks_and_rewards_match_the_model() -> None:
    env = AgenticNetworkEnv(resample_network=False, vary_conditions=False)
    net = generate_network(0)
    true_s = np.array([0.1, 0.2, 0.6, 0.1])
    preds = np.array([[0.25] * 4, [0.1, 0.2, 0.5, 0.2]])
    req = EnvRequest(true_s, 1, preds, np.zeros(8))
    obs, info = env.reset(seed=0, options={"network": net, "request": req})
    assert obs["step"] == 0 and not obs["intent"].any()
    assert info["action_mask"].sum() == 2
    obs, r0, done, _, info = env.step(1)
    np.testing.assert_allclose(obs["intent"], preds[1], rtol=1e-6)
    assert r0 == 0.0 and not done
    chain, rewards = [], []
    for t in (1, 2, 3):
        mask = info["action_mask"]
        assert mask.sum() > 0
        assert np.all(net.types[np.flatnonzero(mask)] == t)
        action = int(np.flatnonzero(mask)[-1])
        obs, r, done, _, info = env.step(action)
        chain.append(action)
        rewards.append(r)
    assert done
    res = evaluate_chain(net, chain, true_s, fee=env.fees[1])
    np.testing.assert_allclose(rewards[:2], res.r_steps[:2])
    assert rewards[2] == pytest.approx(res.r_steps[2] + res.r_episode)
    assert info["result"].r_episode == pytest.approx(res.r_episode)
    # The true vector is not observable.
    for value in obs.values():
        arr = np.atleast_1d(np.asarray(value, dtype=float))
        assert not (arr.size == 4 and np.allclose(arr, true_s))


def test_masking_excludes_crashed_and_unstable_agents() -> None:
    env = AgenticNetworkEnv(resample_network=False, vary_conditions=False)
    net = generate_network(1)
    crashed = net.agents_of_type(1)[:3]
    net.available[crashed] = False
    net.set_arrival_rate(2.5)
    _, info = env.reset(seed=0, options={"network": net})
    _, _, _, _, info = env.step(0)
    mask = info["action_mask"]
    assert not mask[crashed].any()
    assert not mask[np.flatnonzero(net.utilization() >= 1)].any()


def test_wrong_type_is_penalised() -> None:
    env = AgenticNetworkEnv(resample_network=False, vary_conditions=False)
    net = generate_network(0)
    env.reset(seed=0, options={"network": net})
    env.step(0)
    wrong = int(net.agents_of_type(2)[0])
    _, r, _, _, _ = env.step(wrong)
    assert r <= -1.0 + 1.0 + 1e-9  # -delta + s . I with I <= 1
    with pytest.raises(ValueError):
        env.step(10_000)
