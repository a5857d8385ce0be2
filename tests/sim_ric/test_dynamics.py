"""Live dynamics: arrival rate, AR(1) shadowing, crashes and recoveries."""

from __future__ import annotations

import numpy as np

from agentnet.network import generate_network
from sim_ric.dynamics import Dynamics, DynamicsConfig


def run(seed: int, ticks: int, cfg: DynamicsConfig | None = None):
    net = generate_network(0)
    dyn = Dynamics(net, np.random.default_rng(seed), cfg)
    rates, shadow, avail = [], [], []
    for _ in range(ticks):
        dyn.tick()
        rates.append(net.arrival_rate)
        shadow.append(net.shadowing_db.copy())
        avail.append(net.available.copy())
    return net, dyn, np.array(rates), np.array(shadow), np.array(avail)


def test_seeded_and_reproducible() -> None:
    a = run(1, 50)
    b = run(1, 50)
    c = run(2, 50)
    np.testing.assert_array_equal(a[2], b[2])
    np.testing.assert_array_equal(a[3], b[3])
    assert not np.array_equal(a[3], c[3])


def test_statistics_of_the_processes() -> None:
    net, dyn, rates, shadow, avail = run(3, 3000)
    # AR(1) keeps the stationary std of the shadowing (2 dB) and is correlated.
    assert abs(shadow[500:].std() - 2.0) < 0.15
    x = shadow[500:, 0]
    lag1 = np.corrcoef(x[:-1], x[1:])[0, 1]
    assert 0.85 < lag1 < 0.99
    # Arrival rate swings around the base rate.
    assert rates.min() < 0.8 and rates.max() > 1.2 and abs(rates.mean() - 1.0) < 0.1
    # Long-run share of time in outage follows the initial outage rate.
    init = generate_network(0).outage_rate
    share = 1.0 - avail.mean(axis=0)
    assert abs(share.mean() - init.mean()) < 0.01
    # Counters follow the observations: every tick observes every agent once.
    np.testing.assert_array_equal(net.observations, 1000.0 + 3000)
    assert dyn.crashes > 0 and dyn.recoveries > 0


def test_crashed_agents_are_not_usable() -> None:
    net, *_ = run(4, 200, DynamicsConfig(crash_scale=20.0))
    down = np.flatnonzero(~net.available)
    assert len(down) > 0
    for t in (1, 2, 3, 4):
        assert not set(down) & set(net.agents_of_type(t, usable=True).tolist())
