"""Multi-start decoding: one start is the greedy chain, more starts never score lower under
the predicted vector and serve a feasible chain whenever a rollout is feasible, on every
decision path (tables, prefix graph + step graph, step graph, the proposer's reduced
graph); the xApp reads ``XAPP_SRL_STARTS``."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from support.loop import copy_policy, perturbed_copy, unit_policy

from agentnet.chain import evaluate_chain
from agentnet.intents import APPS
from agentnet.network import generate_network
from lameta_proto.v1 import network_pb2
from servicekit import codec
from xapp_composer import features as F
from xapp_composer.agent import run_episodes
from xapp_composer.episodes import RequestSet
from xapp_composer.export import export_onnx, parity_check, write_card
from xapp_composer.export_tree import attach_tree
from xapp_composer.loop import build_service
from xapp_composer.policy import GCNActorCritic, PolicyConfig
from xapp_composer.proposer import profile_state, reduced_prepared
from xapp_composer.runtime import PolicyRuntime, best_chain
from xapp_composer.settings import XappSettings
from xapp_composer.translation import Translation

TEXT = np.zeros((1, F.TEXT_DIM), np.float32)


@pytest.fixture(scope="module")
def policy() -> GCNActorCritic:
    torch.manual_seed(5)
    return GCNActorCritic(PolicyConfig(hidden=16)).eval()


@pytest.fixture(scope="module")
def exported(policy, tmp_path_factory) -> Path:
    """The policy with its tabulated-decision graphs."""
    path = tmp_path_factory.mktemp("multistart") / "p.onnx"
    export_onnx(policy, path)
    write_card(
        path, policy, {"elam_ids": ["a", "b"], "fees": [0.002, 0.01]}, parity_check(policy, path)
    )
    attach_tree(policy, path)
    return path


def q_of(net, chain, v) -> float:
    """Q*_s of a chain under ``v`` by the reference model (exact routes)."""
    return evaluate_chain(net, chain, v).Q_subjective


def test_one_start_is_the_greedy_chain_of_the_torch_policy(policy, exported) -> None:
    tabulated, stepwise = PolicyRuntime(exported), PolicyRuntime(exported, tree=False)
    assert tabulated.starts == 1
    rng = np.random.default_rng(1)
    for n, levels in ((81, 3), (150, 2)):
        nets = [generate_network(700 + n + i, n_agents=n) for i in range(3)]
        true_s = rng.dirichlet(np.ones(4), size=3)
        preds = np.stack([true_s, rng.dirichlet(np.ones(4), size=3)], axis=1)
        req = RequestSet(
            true_s,
            np.array([0, 1, 2]),
            np.zeros((3, F.TEXT_DIM), np.float32),
            preds,
            ["a", "b"],
            np.array([0.002, 0.01]),
            ["x"] * 3,
        )
        traj = run_episodes(policy, F.batch_state(nets), req, greedy=True)
        for i, net in enumerate(nets):
            k, app = int(traj.elam[i]), int(req.app[i])
            greedy = tuple(int(a) for a in traj.chains[i])
            p, q = tabulated.prepare(net), stepwise.prepare(net)
            assert p.tree_levels == levels and q.tables is None
            for rt, prep in ((tabulated, p), (stepwise, q)):
                assert rt.compose(prep, preds[i, k], k, app, "x", TEXT) == greedy
                assert rt.compose(prep, preds[i, k], k, app, "x", TEXT, starts=1) == greedy
                assert rt.rollouts(prep, preds[i, k], k, app, "x", TEXT, starts=1) == [greedy]
                # More starts keep the greedy chain as their first candidate.
                more = rt.rollouts(prep, preds[i, k], k, app, "x", TEXT, starts=4)
                assert more[0] == greedy and len(more) == 4
                assert len({c[0] for c in more}) == 4  # distinct first picks


def test_more_starts_never_score_lower_on_every_decision_path(exported) -> None:
    tabulated, stepwise = PolicyRuntime(exported), PolicyRuntime(exported, tree=False)
    rng = np.random.default_rng(2)
    improved = 0
    for n in (81, 300, 600):
        net = generate_network(40 + n, n_agents=n)
        p = tabulated.prepare(net)
        reduced = reduced_prepared(p, profile_state(p.state).propose((0.25,) * 4, 6))
        paths = [(tabulated, p), (stepwise, stepwise.prepare(net)), (tabulated, reduced)]
        for rt, prep in paths:
            for j in range(4):
                v = rng.dirichlet(np.ones(4))
                q = {m: q_of(net, rt.compose(prep, v, j % 2, APPS[j], "x", starts=m), v)
                     for m in (1, 2, 4, 8)}  # fmt: skip
                # The m starts are the first m of the 2m: never lower, also from m to 2m.
                assert q[1] <= q[2] + 1e-9 and q[2] <= q[4] + 1e-9 and q[4] <= q[8] + 1e-9, q
                improved += q[8] > q[1] + 1e-9
                # The served chain is the best rollout by the reference model.
                rolled = rt.rollouts(prep, v, j % 2, APPS[j], "x", starts=8)
                chosen = rt.compose(prep, v, j % 2, APPS[j], "x", starts=8)
                assert chosen in rolled
                assert q_of(net, chosen, v) >= max(q_of(net, c, v) for c in rolled) - 1e-9
    assert improved > 0  # not vacuous: other starts do find better chains


def test_a_feasible_rollout_is_served_over_an_infeasible_greedy_chain() -> None:
    rt = PolicyRuntime(unit_policy(), starts=8)
    rng = np.random.default_rng(3)
    rescued = 0
    for seed in range(4):
        net = generate_network(seed, n_agents=81)
        p = rt.prepare(net)
        for _ in range(8):
            v = rng.dirichlet(np.ones(4))
            rolled = rt.rollouts(p, v, 0, "qa", "x", starts=8)
            feasible = [evaluate_chain(net, c, v).feasible for c in rolled]
            chosen = evaluate_chain(net, rt.compose(p, v, 0, "qa", "x"), v)
            assert chosen.feasible == any(feasible)
            rescued += (not feasible[0]) and any(feasible)
    assert rescued > 0  # the untrained policy's greedy chain often breaks eq. 18


def test_best_chain_prefers_feasible_then_the_first_of_equals() -> None:
    net = generate_network(3, n_agents=81)
    s = F.serving_state(net, None, 128)
    v = np.array([0.4, 0.2, 0.2, 0.2])
    cands = [np.flatnonzero(s.usable[0, k]) for k in range(3)]
    chains = [tuple(int(c[i]) for c in cands) for i in range(10)]
    results = [evaluate_chain(net, c, v) for c in chains]
    bad = [c for c, r in zip(chains, results, strict=True) if not r.feasible]
    good = [c for c, r in zip(chains, results, strict=True) if r.feasible]
    assert bad and good
    assert best_chain(s, [bad[0], good[-1]], v) == 1
    assert best_chain(s, [good[0], good[0]], v) == 0
    # The served state's Q*_s is the reference model's.
    qs = [r.Q_subjective for r in results]
    assert best_chain(s, chains, v) == int(np.argmax(qs))


def test_starts_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="starts must be at least 1, got 0"):
        PolicyRuntime(unit_policy(), starts=0)
    rt = PolicyRuntime(unit_policy())
    p = rt.prepare(generate_network(1, n_agents=40))
    with pytest.raises(ValueError, match="starts must be at least 1, got 0"):
        rt.compose(p, (0.25,) * 4, 0, "qa", "x", starts=0)
    with pytest.raises(ValueError, match="srl_starts"):
        XappSettings(srl_starts=0)
    with pytest.raises(ValueError, match="srl_starts_min_agents"):
        XappSettings(srl_starts_min_agents=0)
    # Chosen on the training's validation pairs: 4 starts from 300 agents up.
    assert (XappSettings().srl_starts, XappSettings().srl_starts_min_agents) == (4, 300)


def test_smaller_networks_than_starts_min_agents_get_the_greedy_chain() -> None:
    rt = PolicyRuntime(unit_policy(), starts=8, starts_min_agents=100)
    rng = np.random.default_rng(5)
    differs = {81: 0, 150: 0}
    for n, seed in ((n, seed) for n in differs for seed in range(3)):
        p = rt.prepare(generate_network(seed + n, n_agents=n))
        for _ in range(8):
            v = rng.dirichlet(np.ones(4))
            chain = rt.compose(p, v, 0, "qa", "x")
            greedy, multi = (rt.compose(p, v, 0, "qa", "x", starts=m) for m in (1, 8))
            assert chain == (greedy if n < 100 else multi)
            differs[n] += greedy != multi
    assert differs[81] > 0 and differs[150] > 0  # the gate, not the policy, made them equal
    with pytest.raises(ValueError, match="starts_min_agents must be at least 1, got 0"):
        PolicyRuntime(unit_policy(), starts_min_agents=0)


class VectorRapp:
    """An rApp answering every request with the vector set last."""

    def __init__(self):
        self.vector = (0.25, 0.25, 0.25, 0.25)

    def translate(self, prompt: str, elam: str, app: str, request_id: str) -> Translation:
        return Translation(self.vector, elam or "minilm", calibrated=True)  # type: ignore[arg-type]

    def served_models(self) -> frozenset[str] | None:
        return None


def test_the_xapp_reads_xapp_srl_starts_and_keeps_it_on_reload(tmp_path, monkeypatch) -> None:
    path = copy_policy(unit_policy(), tmp_path / "live")
    monkeypatch.setenv("XAPP_SRL_STARTS", "4")
    monkeypatch.setenv("XAPP_SRL_STARTS_MIN_AGENTS", "50")
    settings = XappSettings(policy=path, health_port=0, prefer_gpu=False)
    assert (settings.srl_starts, settings.srl_starts_min_agents) == (4, 50)
    service = build_service(settings)
    core = service.core
    assert (core.runtime.starts, core.runtime.starts_min_agents) == (4, 50)
    core.translator = VectorRapp()  # the vector is the input here (rApp: its own tests)
    net = generate_network(2, n_agents=81)
    core.on_state(
        codec.encode(
            codec.state_message(net, network="default", seq=1, timestamp_ns=time.time_ns())
        )
    )
    greedy_differs = 0
    rng = np.random.default_rng(4)
    for i in range(12):
        core.translator.vector = tuple(float(x) for x in rng.dirichlet(np.ones(4)))
        msg = network_pb2.ServiceRequest(
            request_id=f"r{i}", prompt="a request", app="qa", chain_types=(1, 2, 3), arrival_rate=1
        )
        res = core.handle_request(codec.encode(msg))
        d = res.decision
        if res.status != "decided":
            continue
        prep, v = core.state.inputs((1, 2, 3)), core.translator.vector
        k = core.runtime.elam_ids.index(d.elam)
        args = (prep, v, k, "qa", "a request")
        multi, greedy = core.runtime.compose(*args), core.runtime.compose(*args, starts=1)
        if evaluate_chain(net, multi, v).feasible:  # not repaired: the policy's own chain
            assert tuple(d.chain) == multi
        greedy_differs += multi != greedy
    assert greedy_differs > 0  # the setting changes what is served
    # A hot-reloaded policy is built by the same loader: it keeps the setting.
    new = perturbed_copy(unit_policy(), tmp_path / "new")
    for f in new.parent.iterdir():
        shutil.copy(f, path.parent / f.name)
    assert service.watcher.poll() == "settling" and service.watcher.poll() == "loaded"
    assert (core.runtime.starts, core.runtime.starts_min_agents) == (4, 50)
    assert core.runtime.version != PolicyRuntime(unit_policy()).version
