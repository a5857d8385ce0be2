"""The whole-decision fast path: per-state tables, one graph call per request, the same
chains as the step-by-step graphs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from agentnet.intents import APPS
from agentnet.network import generate_network
from xapp_composer import features as F
from xapp_composer import steps as S
from xapp_composer import tree as T
from xapp_composer.artefacts import (
    PLAN_INPUTS,
    PLAN_OUTPUTS,
    decide_inputs,
    decide_path,
    plan_path,
    prefix_path,
)
from xapp_composer.cli import main as cli_main
from xapp_composer.export import Bound, export_onnx, parity_check, write_card
from xapp_composer.export_tree import WalkGraph, attach_tree
from xapp_composer.policy import GCNActorCritic, PolicyConfig
from xapp_composer.runtime import PolicyIntegrityError, PolicyRuntime


@pytest.fixture(scope="module")
def policy() -> GCNActorCritic:
    torch.manual_seed(11)
    return GCNActorCritic(PolicyConfig(hidden=32)).eval()


@pytest.fixture(scope="module")
def exported(policy, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tree") / "p.onnx"
    export_onnx(policy, path)
    parity = parity_check(policy, path, sizes=(12, 81))
    write_card(path, policy, {"elam_ids": ["a", "b"], "fees": [0.002, 0.01]}, parity)
    attach_tree(policy, path)
    return path


def test_rows_inputs_equal_the_single_chain_inputs() -> None:
    for n, seed in ((12, 1), (81, 2), (200, 3)):
        s = F.batch_state([generate_network(seed, n_agents=n)], shortlist_k=S.K_CAND)
        plan = S.StatePlan(s)
        for k in range(len(plan.steps)):
            prefix = T._prefixes(plan, k)
            rows = plan.inputs_rows(k, prefix)
            for r in range(0, len(prefix.step), max(1, len(prefix.step) // 7)):
                one = S.Prefix(*(np.asarray(v)[r : r + 1].copy() for v in vars(prefix).values()))
                cols, single = plan.inputs(one)
                assert np.array_equal(cols, plan.steps[k].cols)
                for a, b in zip(rows, single, strict=True):
                    assert np.array_equal(a[r : r + 1], b)


def test_prefix_rows_are_in_walk_order() -> None:
    s = F.batch_state([generate_network(5, n_agents=40)], shortlist_k=S.K_CAND)
    plan = S.StatePlan(s)
    prefix = T._prefixes(plan, 2)
    m0, m1 = (len(st.cols) for st in plan.steps[:2])
    assert len(prefix.step) == m0 * m1
    a0, a1 = 3, 2
    r = a0 * m1 + a1
    ref = S.Prefix.empty(1)
    ref.append(s, np.array([plan.steps[0].cols[a0]]))
    ref.append(s, np.array([plan.steps[1].cols[a1]]))
    assert prefix.last[r] == ref.last[0]
    assert prefix.logp[r] == ref.logp[0] and prefix.keep[r] == ref.keep[0]


def test_request_feeds_and_elam_context_are_the_context_vector() -> None:
    """The fast builders lay out the same numbers as :func:`steps.context`."""
    rng = np.random.default_rng(3)
    for n_elams, elam in ((2, 1), (2, None), (3, 0)):
        for n_steps in (1, 3):
            for app in APPS:
                intent, text = rng.dirichlet(np.ones(4)), rng.normal(size=F.TEXT_DIM)
                prefix = S.Prefix.empty(1)
                ref = S.context(
                    intent[None, :],
                    None if elam is None else np.array([elam]),
                    n_elams,
                    prefix,
                    n_steps,
                    np.array([APPS.index(app)]),
                    text[None, :],
                )
                got = T.request_feeds(intent, elam, n_elams, app, text)
                k0 = 4 + n_elams
                rest = F.STEP_DIM + F.PREFIX_DIM
                assert np.array_equal(got["intent"], ref[:, :4])
                assert np.array_equal(got["elam"], ref[:, 4:k0])
                assert np.array_equal(got["no_elam"], ref[:, k0 : k0 + 1])
                assert np.array_equal(got["req"], ref[:, k0 + rest :])
                before = S.context(
                    None, None, n_elams, prefix, n_steps, np.array([APPS.index(app)]), text[None, :]
                )
                assert np.array_equal(T.elam_context(n_elams, n_steps, app, text), before)


def _torch_tables(policy, levels, node_h):
    plan = Bound(policy.featurize, "static", outputs=len(PLAN_OUTPUTS))
    with torch.no_grad():
        return T.plan_tables(
            lambda f: [t.numpy() for t in plan(*(torch.from_numpy(f[k]) for k in PLAN_INPUTS))],
            levels,
            node_h,
        )


def _torch_step_walk(policy, s, adj, plan, intent, elam, app, text):
    """The greedy step-by-step walk with the policy's own heads (what training does)."""
    n = len(plan.steps)
    prefix = S.Prefix.empty(1)
    node_h = policy.encode(torch.from_numpy(s.node_x), torch.from_numpy(adj))
    chain = []
    for _ in range(n):
        idx, step = plan.inputs(prefix)
        ctx = S.context(
            intent[None, :],
            None if elam is None else np.array([elam]),
            policy.cfg.n_elams,
            prefix,
            n,
            np.array([APPS.index(app)]),
            text[None, :],
        )
        with torch.no_grad():
            logits, _, _ = policy.heads(
                node_h,
                torch.from_numpy(idx[None, :].astype(np.int64)),
                *(torch.from_numpy(x) for x in step),
                torch.from_numpy(ctx),
            )
        agent = int(idx[int(torch.argmax(logits[0]))])
        chain.append(agent)
        prefix.append(s, np.array([agent]))
    return tuple(chain)


def test_torch_walk_over_tables_is_the_step_by_step_walk(policy) -> None:
    rng = np.random.default_rng(0)
    decide = WalkGraph(policy)
    for n in (12, 50, 81):
        net = generate_network(40 + n, n_agents=n)
        s = F.batch_state([net], shortlist_k=S.K_CAND)
        plan = S.StatePlan(s)
        levels = T.build_levels(plan, policy.cfg.n_elams)
        assert len(levels) == 3 and len(levels[0].mask) == 1
        adj = F.normalized_adjacency(n, net.edges)[None].astype(np.float32)
        with torch.no_grad():
            node_h, h_graph = policy.encode_graph(torch.from_numpy(s.node_x), torch.from_numpy(adj))
        tables = _torch_tables(policy, levels, node_h.numpy()[0])
        for j in range(12):
            intent = rng.dirichlet(np.ones(4))
            elam = None if j % 5 == 4 else j % 2
            app = APPS[j % 4]
            text = F.text_features(f"request {j} fast exact")
            feeds = {
                "h_graph": h_graph.numpy(),
                **T.request_feeds(intent, elam, policy.cfg.n_elams, app, text),
                **tables,
            }
            with torch.no_grad():
                picks = decide(
                    *(torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in decide_inputs())
                )[0].numpy()
            got = tuple(int(levels[k].cols[picks[k]]) for k in range(3))
            assert got == _torch_step_walk(policy, s, adj, plan, intent, elam, app, text)


def test_onnx_tree_decides_like_the_step_graphs_and_is_recorded(exported) -> None:
    card = json.loads(exported.with_name("p.card.json").read_text())
    tree = card["tree"]
    assert tree["steps"] == 3 and tree["parity"]["requests"] == 200
    assert tree["parity"]["same_chain"] == 200, tree["parity"]
    levels = {k: v["tabulated_steps"] for k, v in tree["parity"]["per_size"].items()}
    assert levels == {"N=12": 3, "N=50": 3, "N=81": 3, "N=300": 2, "N=600": 1}
    assert tree["parity"]["max_abs_logit_error"] < 1e-4
    assert {k: tree["parity"][k] for k in ("k_cand", "k_look", "max_pairs")} == {
        "k_cand": S.K_CAND,
        "k_look": S.K_LOOK,
        "max_pairs": T.DEFAULT_MAX_PAIRS,
    }
    rt = PolicyRuntime(exported)
    step_rt = PolicyRuntime(exported, tree=False)
    assert rt.decide_session is not None and step_rt.decide_session is None
    rng = np.random.default_rng(7)
    for n, seed in ((9, 1), (81, 2), (150, 3)):
        net = generate_network(seed, n_agents=n)
        p, q = rt.prepare(net), step_rt.prepare(net)
        assert p.tree_levels == (3 if n <= 81 else 2) and q.tables is None
        for j in range(15):
            d = rt.decide(p, APPS[j % 4], f"p{j}", lambda e: tuple(rng.dirichlet(np.ones(4))))
            again = step_rt.compose(q, d.intent, d.elam_index, APPS[j % 4], f"p{j}")
            assert d.chain == again


def test_each_state_size_takes_the_largest_path_that_fits_and_all_agree(exported) -> None:
    full = PolicyRuntime(exported)
    small = PolicyRuntime(exported, tree_max_rows=10)
    intent = (0.1, 0.2, 0.3, 0.4)
    # 120 agents: 30 x 30 x 30 rows at step 3; 600: 128 x 128 x 64 lookahead pairs at step 2
    for n, levels in ((81, 3), (120, 2), (600, 1)):
        net = generate_network(4, n_agents=n)
        p, q = full.prepare(net), small.prepare(net)
        assert (p.tree_levels, q.tree_levels, q.tables) == (levels, 0, None)
        for j, app in enumerate(APPS):
            d = full.compose(p, intent, j % 2, app, f"x{j}")
            assert d == small.compose(q, intent, j % 2, app, f"x{j}")
    net = generate_network(4, n_agents=81)
    two = full.prepare(net, chain_types=(1, 2))
    assert two.tables is None and len(full.compose(two, intent, 0, "qa", "x")) == 2


def test_unusable_step_is_still_a_clear_error(exported) -> None:
    rt = PolicyRuntime(exported)
    net = generate_network(11)
    net.available[net.types == 2] = False
    p = rt.prepare(net)
    assert p.tables is None
    with pytest.raises(ValueError, match="no usable agent of type 2"):
        rt.compose(p, (0.25,) * 4, 0, "qa", "x")


def test_tampered_tree_graph_is_refused(exported, tmp_path) -> None:
    for f in exported.parent.iterdir():
        shutil.copy(f, tmp_path / f.name)
    base = tmp_path / "p.onnx"
    for graph in (decide_path(base), plan_path(base), prefix_path(base, 1), prefix_path(base, 2)):
        good = graph.read_bytes()
        data = bytearray(good)
        data[-10] ^= 0xFF
        graph.write_bytes(bytes(data))
        with pytest.raises(PolicyIntegrityError, match="sha256"):
            PolicyRuntime(tmp_path / "p.onnx")
        graph.write_bytes(good)
    PolicyRuntime(tmp_path / "p.onnx")


def test_recheck_rewrites_only_the_parity_record(exported, tmp_path, capsys) -> None:
    """``xapp-composer recheck`` runs the tabulated parity check again on exported graphs
    (no checkpoint) and records it with the run-time shortlists; the graphs, and so the
    sha256 values the xApp verifies, stay as they are."""
    for f in exported.parent.iterdir():
        shutil.copy(f, tmp_path / f.name)
    card_path = tmp_path / "p.card.json"
    stale = json.loads(card_path.read_text())
    stale["tree"]["parity"] = {"same_chain": 1, "requests": 1, "per_size": {}}
    card_path.write_text(json.dumps(stale))
    graphs = {f.name: f.read_bytes() for f in tmp_path.glob("*.onnx")}
    assert cli_main(["recheck", "--models", str(tmp_path), "--name", "p"]) == 0
    report = json.loads(capsys.readouterr().out)
    card = json.loads(card_path.read_text())
    assert card["tree"]["parity"] == report["p"]
    assert report["p"]["same_chain"] == report["p"]["requests"] == 200
    assert (report["p"]["k_look"], report["p"]["k_cand"]) == (S.K_LOOK, S.K_CAND)
    assert {k: v for k, v in card.items() if k != "tree"} == {
        k: v for k, v in stale.items() if k != "tree"
    }
    assert {f.name: f.read_bytes() for f in tmp_path.glob("*.onnx")} == graphs
    PolicyRuntime(tmp_path / "p.onnx")  # still verifies against its card
