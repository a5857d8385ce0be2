"""Network generation (MODEL.md "Network", "Per-agent", "Per-link") and route BER."""

from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np
import pytest

from agentnet.config import DEFAULT
from agentnet.network import DENSE_ROUTE_LIMIT, generate_network


def test_reproducible_and_seed_dependent() -> None:
    a, b, c = generate_network(7), generate_network(7), generate_network(8)
    np.testing.assert_array_equal(a.compute, b.compute)
    np.testing.assert_array_equal(a.edges, b.edges)
    np.testing.assert_array_equal(a.link_ber, b.link_ber)
    assert not np.array_equal(a.compute, c.compute)


def test_agents_follow_the_table() -> None:
    net = generate_network(3, n_agents=2000)
    np.testing.assert_array_equal(net.types, np.arange(2000) % 4 + 1)
    assert abs(net.cloud.mean() - 0.4) < 0.04
    r = np.hypot(net.x - 0.5, net.y - 0.5)
    assert np.all(r[net.cloud] >= 0.35 - 1e-12) and np.all(r[net.cloud] <= 0.5 + 1e-12)
    assert np.all(r[~net.cloud] <= 0.3 + 1e-12)
    assert net.compute[net.cloud].min() >= 1e22 and net.compute[net.cloud].max() <= 1e25
    assert net.compute[~net.cloud].min() >= 1e19 and net.compute[~net.cloud].max() <= 3e22
    assert np.all((net.speed[net.cloud] >= 1) & (net.speed[net.cloud] <= 3))
    assert np.all((net.speed[~net.cloud] >= 0.5) & (net.speed[~net.cloud] <= 1.5))
    assert np.all((net.cv >= 0.5) & (net.cv <= 2.0))
    # Beta(1, 30) and Beta(1, 300) means.
    assert abs(net.outage_rate[~net.cloud].mean() - 1 / 31) < 0.005
    assert abs(net.outage_rate[net.cloud].mean() - 1 / 301) < 0.001
    np.testing.assert_array_equal(net.observations, 1000.0)


def test_per_agent_equations_independently() -> None:
    net = generate_network(1)
    i = 5
    c = net.compute[i]
    s = 0.34 + 0.28
    n_op = (0.34 * 406.4 / (0.28 * 410.7)) ** (1 / s) * (c / 6) ** (0.28 / s)
    d_op = (0.28 * 410.7 / (0.34 * 406.4)) ** (1 / s) * (c / 6) ** (0.34 / s)
    loss = 406.4 / n_op**0.34 + 410.7 / d_op**0.28
    assert net.n_params[i] == pytest.approx(n_op, rel=1e-12)
    assert net.p_success[i] == pytest.approx(math.exp(-loss), rel=1e-12)
    mean_s = 0.1 * (n_op / 1e9) ** 0.7 / net.speed[i]
    assert net.mu[i] == pytest.approx(1 / mean_s, rel=1e-12)


def test_graph_is_knn_plus_fewest_connecting_edges() -> None:
    for seed in range(5):
        net = generate_network(seed)
        g = nx.Graph()
        g.add_nodes_from(range(net.n_agents))
        g.add_edges_from(map(tuple, net.edges))
        assert nx.is_connected(g)
        assert min(dict(g.degree).values()) >= DEFAULT.k_neighbours
        # kNN part, rebuilt independently with a brute-force distance matrix.
        pts = np.stack([net.x, net.y], 1)
        d = np.linalg.norm(pts[:, None] - pts[None], axis=2)
        knn = nx.Graph()
        knn.add_nodes_from(range(net.n_agents))
        for u in range(net.n_agents):
            for v in np.argsort(d[u])[1 : DEFAULT.k_neighbours + 1]:
                knn.add_edge(u, int(v))
        extra = set(map(frozenset, g.edges)) - set(map(frozenset, knn.edges))
        assert len(extra) == nx.number_connected_components(knn) - 1


def test_link_ber_model() -> None:
    net = generate_network(11, n_agents=1000)
    snr_db = (7 - 30 * np.log10(net.length / np.median(net.length)) + net.shadowing_db).clip(0, 15)
    want = 0.5 * np.array([math.erfc(math.sqrt(10 ** (x / 10))) for x in snr_db])
    np.testing.assert_allclose(net.link_ber, want, rtol=1e-12)
    assert 3e-4 < np.median(net.link_ber) < 2e-3  # "a median link near 8e-4"
    assert net.link_ber.max() == pytest.approx(0.5 * math.erfc(1.0))
    assert net.link_ber.min() < 1e-8


def test_route_ber_is_the_least_lossy_path() -> None:
    net = generate_network(4, DEFAULT.with_overrides(k_neighbours=2), n_agents=16)
    g = nx.Graph()
    for (u, v), b in zip(net.edges, net.link_ber, strict=True):
        g.add_edge(int(u), int(v), b=b)
    for src in (0, 5):
        row = net.route_ber_from(src)
        for dst in range(net.n_agents):
            if dst == src:
                assert row[dst] == 0.0
                continue
            best = min(
                1 - np.prod([1 - g[a][b]["b"] for a, b in itertools.pairwise(p)])
                for p in nx.all_simple_paths(g, src, dst)
            )
            assert row[dst] == pytest.approx(best, rel=1e-9, abs=1e-15)


def test_large_network_routes_per_source_without_dense_matrix() -> None:
    net = generate_network(2, n_agents=DENSE_ROUTE_LIMIT + 500)
    row = net.route_ber_from(3)
    assert row.shape == (net.n_agents,) and row[3] == 0.0
    m = net.route_ber(np.array([3, 10]), np.array([0, 1, 2]))
    np.testing.assert_allclose(m[0], row[:3])
    assert net._dense is None and len(net._routes) == 2


def test_shadowing_update_changes_routes() -> None:
    net = generate_network(5)
    before = net.route_ber_from(0).copy()
    net.set_shadowing(net.shadowing_db + 3.0)
    after = net.route_ber_from(0)
    assert np.all(after <= before + 1e-15) and np.any(after < before)
    with pytest.raises(ValueError):
        net.set_shadowing(np.zeros(3))
