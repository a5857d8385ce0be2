"""Incremental preparation: after a state on the same links, only the embeddings within L
GCN hops of the agents whose features changed are encoded again (on the 2L-hop
subgraph), and the result equals encoding the whole graph; the decisions too."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from support.loop import unit_policy

from agentnet.network import generate_network
from xapp_composer import runtime as R
from xapp_composer.runtime import PolicyRuntime


@pytest.fixture(scope="module")
def rt() -> PolicyRuntime:
    return PolicyRuntime(unit_policy())


def changed_copy(net, idx):
    nxt = copy.deepcopy(net)
    nxt.observations = nxt.observations.copy()
    nxt.failures = nxt.failures.copy()
    nxt.observations[idx] += 1.0
    nxt.failures[idx] += 3.0
    return nxt


@pytest.mark.parametrize("share", [0.002, 0.01, 0.5])
def test_incremental_encoding_equals_the_whole_graphs(rt, share, monkeypatch) -> None:
    calls = []
    original = PolicyRuntime._encode_around

    def spy(self, *args):
        out = original(self, *args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(PolicyRuntime, "_encode_around", spy)
    net = generate_network(4, n_agents=1500)
    prep = rt.prepare(net)
    rng = np.random.default_rng(1)
    nxt = changed_copy(net, rng.choice(1500, max(1, round(share * 1500)), replace=False))
    inc = rt.prepare(nxt, previous=prep)
    whole = rt.prepare(nxt)
    # Small changes take the partial path; half the agents changed reach the whole graph.
    assert calls == [share < 0.1]
    assert rt.gcn_layers == 2
    assert not np.allclose(prep.node_h, whole.node_h)  # the change reached the embeddings
    np.testing.assert_allclose(inc.node_h, whole.node_h, atol=1e-5)
    np.testing.assert_allclose(inc.h_graph, whole.h_graph, atol=1e-5)
    vec = (0.2, 0.1, 0.5, 0.2)
    for app, prompt in [("immersive", "render my scene, no lag"), ("critical", "exact dose")]:
        a = rt.decide(inc, app, prompt, lambda e: vec)
        b = rt.decide(whole, app, prompt, lambda e: vec)
        assert a == b


def test_unchanged_features_reuse_the_embeddings(rt) -> None:
    net = generate_network(4, n_agents=300)
    prep = rt.prepare(net)
    again = rt.prepare(copy.deepcopy(net), previous=prep)
    assert again.node_h is prep.node_h and again.h_graph is prep.h_graph


def test_the_partial_path_gives_way_above_its_share(rt, monkeypatch) -> None:
    monkeypatch.setattr(R, "PARTIAL_MAX_SHARE", 0.0)
    net = generate_network(4, n_agents=300)
    prep = rt.prepare(net)
    nxt = changed_copy(net, [5])
    assert rt._encode_around(rt.prepare(nxt).state, prep, np.eye(300, dtype=bool)[5]) is None


def test_the_step_graph_on_candidate_rows_matches_the_exported_one(rt) -> None:
    """The runtime's step graph reads the candidates' rows and h_graph
    (sparse_gcn.head_on_rows); the exported one, every node's rows."""
    from xapp_composer.artefacts import OUTPUT_NAMES
    from xapp_composer.runtime import make_session
    from xapp_composer.steps import Prefix, context

    exported = make_session(rt.path, prefer_gpu=False)
    net = generate_network(6, n_agents=1500)
    p = rt.prepare(net)
    prefix = Prefix.empty(1)
    for _ in range(3):
        idx, step = p.plan.inputs(prefix)
        ctx = context(np.array([[0.2, 0.1, 0.5, 0.2]]), np.array([0]), rt.n_elams, prefix, 3,
                      np.array([1]), np.zeros((1, 8), np.float32))  # fmt: skip
        got = rt._run(p, idx, step, ctx)
        feeds = {"node_h": p.node_h, "cand_idx": idx[None, :].astype(np.int64), "raw": step.raw,
                 "mask": step.mask, "chain": step.chain, "look_raw": step.look_raw,
                 "look_keep": step.look_keep, "look_mask": step.look_mask, "ctx": ctx}  # fmt: skip
        ref = exported.run(OUTPUT_NAMES, feeds)
        for g, r in zip(got, ref, strict=True):
            np.testing.assert_allclose(g, r, atol=1e-5)
        prefix.append(p.state, np.array([int(idx[int(np.argmax(got[0][0]))])]))
