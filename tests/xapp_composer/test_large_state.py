"""The serving state without N x N arrays: the edge-list encoder, per-source routes, the
incremental preparation, and the contracted routing of large networks."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from agentnet.chain import evaluate_chain
from agentnet.network import generate_network
from agentnet.optimum import build_search_space, exact_optimum
from xapp_composer import features as F
from xapp_composer import routes as RT
from xapp_composer import steps as S
from xapp_composer.beam import beam_chain
from xapp_composer.runtime import PolicyRuntime

POLICY = Path(__file__).resolve().parents[2] / "models" / "policy" / "srl-general.onnx"
INTENT = (0.3, 0.2, 0.3, 0.2)


@pytest.fixture(scope="module")
def runtime() -> PolicyRuntime:
    return PolicyRuntime(POLICY, prefer_gpu=False, tree=False)


@pytest.mark.parametrize("n_agents", [81, 600])
def test_edge_list_encoder_matches_the_dense_one(runtime, n_agents) -> None:
    net = generate_network(31 + n_agents, n_agents=n_agents)
    s = F.serving_state(net, None, S.K_CAND)
    assert s.adj is None and not isinstance(s.route, np.ndarray)
    dense = F.normalized_adjacency(n_agents, net.edges)[None].astype(np.float32)
    want = runtime.encoder.run(["node_h", "h_graph"], {"x": s.node_x, "adj": dense})
    got = runtime.encode(s)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5)


@pytest.mark.parametrize("n_agents", [81, 600])
def test_served_state_reads_the_same_inputs_as_the_dense_one(n_agents) -> None:
    net = generate_network(7 + n_agents, n_agents=n_agents)
    sparse = S.StatePlan(F.serving_state(net, None, S.K_CAND))
    dense_state = F.batch_state([net])
    for k, st in enumerate(sparse.steps):
        prefix = S.Prefix.empty(1)
        prefix.step = np.array([k])
        look = S.lookahead_candidates(sparse.s, k, shared=False)
        want = S.step_inputs(dense_state, prefix, st.cols, look)
        for a, b in zip(want, st.base, strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    # The hop from a chosen first agent, as a decision step reads it.
    first = S.Prefix.empty(1)
    first.append(sparse.s, sparse.steps[0].cols[:1])
    dense_first = S.Prefix.empty(1)
    dense_first.append(dense_state, sparse.steps[0].cols[:1])
    _, got = sparse.inputs(first)
    want = S.step_inputs(
        dense_state, dense_first, sparse.steps[1].cols, S.lookahead_candidates(sparse.s, 1, False)
    )
    np.testing.assert_allclose(got.raw, want.raw, rtol=1e-6, atol=1e-6)


def test_incremental_preparation_decides_like_a_fresh_one(runtime) -> None:
    net = generate_network(5, n_agents=3000)
    prev = runtime.prepare(net)
    nxt = copy.deepcopy(net)
    idx = np.random.default_rng(1).choice(net.n_agents, 30, replace=False)
    nxt.failures = nxt.failures.copy()
    nxt.failures[idx] += 50.0
    nxt.available = nxt.available.copy()
    nxt.available[idx[:10]] = False
    inc = runtime.prepare(nxt, previous=prev)
    fresh = runtime.prepare(nxt)
    assert inc.state.route is prev.state.route  # same links: rows reused
    np.testing.assert_allclose(inc.node_h, fresh.node_h, atol=1e-6)
    for app, prompt in (("qa", "exact figures please"), ("immersive", "no lag, vr now")):
        got = runtime.compose(inc, INTENT, 0, app, prompt)
        assert got == runtime.compose(fresh, INTENT, 0, app, prompt)
        assert not set(got) & set(idx[:10].tolist())  # crashed agents are never chosen


def test_changed_links_are_routed_afresh() -> None:
    net = generate_network(9, n_agents=200)
    table = RT.RouteTable.for_network(net)
    nxt = copy.deepcopy(net)
    nxt.set_link_ber(np.minimum(net.link_ber * 2.0, 0.4))
    assert RT.RouteTable.for_network(nxt, table) is not table
    assert RT.RouteTable.for_network(copy.deepcopy(net), table) is table


def test_contracted_routes_stay_within_the_merge_tolerance() -> None:
    net = generate_network(11, n_agents=1500)
    exact = RT.RouteTable(net, merge=False)
    merged = RT.RouteTable(net, merge=True)
    assert merged.graph.shape[0] < net.n_agents  # near-perfect links were contracted
    src = np.arange(0, 1500, 97)
    dst = np.arange(3, 1500, 5)
    hops = 200  # far more merged links than any route holds
    np.testing.assert_allclose(
        merged.between(src, dst), exact.between(src, dst), rtol=0, atol=hops * RT.MERGE_BER
    )
    np.testing.assert_allclose(
        merged.nearest(dst), exact.nearest(dst), rtol=0, atol=hops * RT.MERGE_BER
    )
    np.testing.assert_allclose(exact.between(src, dst), net.route_ber(src, dst), rtol=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
def test_beam_search_is_exact_when_wide_and_never_better_narrow(seed) -> None:
    net = generate_network(seed, n_agents=81)
    s = F.serving_state(net, None, S.K_CAND)
    space = build_search_space(net)
    for intent in ((0.3, 0.2, 0.3, 0.2), (0.7, 0.1, 0.1, 0.1), (0.05, 0.05, 0.8, 0.1)):
        best = exact_optimum(space, intent)
        wide, wide_score = beam_chain(s, intent, width=10**6)
        assert wide_score == pytest.approx(best.Q_subjective, abs=1e-12)
        assert evaluate_chain(net, wide, intent).Q_subjective == pytest.approx(wide_score)
        narrow, score = beam_chain(s, intent, width=8)
        assert score <= best.Q_subjective + 1e-12
        assert evaluate_chain(net, narrow, intent).Q_subjective == pytest.approx(score)


def test_route_rows_are_bounded_and_still_served():
    """The kept rows stay within the bound while any number of sources is asked for, and
    every answer equals a fresh table's."""
    net = generate_network(3, n_agents=300)
    bounded = RT.RouteTable(net, max_rows=8)
    fresh = RT.RouteTable(net)
    rng = np.random.default_rng(0)
    for _ in range(20):
        src = rng.choice(net.n_agents, size=6, replace=False)
        dst = rng.choice(net.n_agents, size=5, replace=False)
        np.testing.assert_array_equal(bounded.between(src, dst), fresh.between(src, dst))
        assert len(bounded.rows) <= 8
    many = rng.choice(net.n_agents, size=30, replace=False)
    rows = bounded.rows_for(many.tolist())
    assert len(rows) == 30 and len(bounded.rows) <= 8
    with pytest.raises(ValueError, match="max_rows"):
        RT.RouteTable(net, max_rows=0)


@pytest.mark.parametrize("n_agents", [81, 300, RT.MERGE_FROM + 904])
def test_hops_read_what_one_between_call_per_pair_reads(n_agents) -> None:
    """``hops`` gives, bit for bit, what one ``between`` call per pair (in order) gives,
    and leaves the same rows computed: each pair is read from the same side."""
    net = generate_network(5, n_agents=n_agents)
    rng = np.random.default_rng(n_agents)
    kept = rng.choice(n_agents, size=12, replace=False)
    src = rng.integers(0, n_agents, 300)
    dst = rng.integers(0, n_agents, 300)
    src[::3] = rng.choice(kept, size=len(src[::3]))  # the source's row is kept
    dst[1::3] = rng.choice(kept, size=len(dst[1::3]))  # only the destination's may be
    src[2::9] = src[0]  # a source that repeats across pairs
    one, batch = RT.RouteTable(net), RT.RouteTable(net)
    one.compute(kept)
    batch.compute(kept)
    want = np.array([one.between([a], [c])[0, 0] for a, c in zip(src, dst, strict=True)])
    np.testing.assert_array_equal(batch.hops(src, dst), want)
    assert set(batch.rows) == set(one.rows)
    assert batch.hops(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)).shape == (0,)
