"""The actor-critic: the dense GCN layers = torch-geometric's GCNConv; masking; one PPO
update."""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.nn import GCNConv

from agentnet.network import generate_network
from xapp_composer import features as F
from xapp_composer.agent import run_episodes
from xapp_composer.configs import TrainConfig
from xapp_composer.episodes import RequestSet
from xapp_composer.gae import compute_gae
from xapp_composer.gcn_reference import PygGCNEncoder, graph_batch
from xapp_composer.policy import DenseGCNLayer, GCNActorCritic, PolicyConfig
from xapp_composer.ppo import ppo_update


def requests(m: int, rng) -> RequestSet:
    s = rng.dirichlet(np.ones(4), size=m)
    preds = np.stack([s, np.full_like(s, 0.25)], axis=1)
    return RequestSet(
        s,
        rng.integers(4, size=m),
        np.zeros((m, F.TEXT_DIM), np.float32),
        preds,
        ["a", "b"],
        np.array([0.002, 0.01]),
        ["p"] * m,
    )


def test_dense_gcn_layer_matches_gcnconv() -> None:
    """The exported layer is torch-geometric's GCNConv, which normalises the edge list
    itself (self-loops, symmetric degrees), on the dense normalised adjacency."""
    torch.manual_seed(0)
    for n in (10, 81, 300):
        net = generate_network(n, n_agents=n)
        x = torch.randn(n, 7)
        conv = GCNConv(7, 5)
        torch.nn.init.normal_(conv.bias)
        dense = DenseGCNLayer(7, 5)
        with torch.no_grad():
            dense.lin.weight.copy_(conv.lin.weight)
            dense.bias.copy_(conv.bias)
        edge_index = torch.from_numpy(np.concatenate([net.edges, net.edges[:, ::-1]]).T.copy())
        want = torch.relu(conv(x, edge_index))
        adj = torch.from_numpy(F.normalized_adjacency(n, net.edges)).float()
        got = dense(x.unsqueeze(0), adj.unsqueeze(0))[0]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_dense_encoder_matches_the_pyg_encoder_on_a_batch_of_graphs() -> None:
    """Node embeddings and mean pooling (eqs. 36, 37) of the policy's dense encoder equal
    the GCNConv + global_mean_pool reference on one torch-geometric batch of networks of
    different sizes, some agents unavailable."""
    torch.manual_seed(1)
    policy = GCNActorCritic(PolicyConfig(hidden=32))
    for layer in policy.gcn:
        torch.nn.init.normal_(layer.bias, std=0.1)
    nets = [generate_network(20 + n, n_agents=n) for n in (12, 81, 300)]
    nets[1].available[:10] = False
    batch = graph_batch(nets)
    node_h, h_graph = PygGCNEncoder.from_policy(policy)(batch.x, batch.edge_index, batch.batch)
    start = 0
    for i, net in enumerate(nets):
        s = F.batch_state([net])
        with torch.no_grad():
            want_h, want_g = policy.encode_graph(
                torch.from_numpy(s.node_x), torch.from_numpy(s.adj)
            )
        torch.testing.assert_close(
            node_h[start : start + net.n_agents], want_h[0], atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(h_graph[i], want_g[0], atol=1e-5, rtol=1e-5)
        start += net.n_agents


def test_masking_never_lets_an_invalid_agent_through() -> None:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    policy = GCNActorCritic(PolicyConfig())
    with torch.no_grad():  # push logits hard towards invalid agents if masking failed
        policy.actor[-1].bias.fill_(50.0)
    nets = [generate_network(i) for i in range(16)]
    for net in nets:
        net.available[rng.random(net.n_agents) < 0.2] = False
        net.set_arrival_rate(float(rng.uniform(0.5, 2.5)))
    s = F.batch_state(nets)
    for _ in range(20):
        traj = run_episodes(policy, s, requests(16, rng), rng=rng)
        for i, net in enumerate(nets):
            for k, a in enumerate(traj.chains[i]):
                assert net.types[a] == k + 1
                assert net.available[a]
                assert net.utilization()[a] < 1.0


def test_one_ppo_update_changes_the_parameters() -> None:
    rng = np.random.default_rng(1)
    torch.manual_seed(1)
    policy = GCNActorCritic(PolicyConfig())
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    s = F.batch_state([generate_network(i) for i in range(8)])
    traj = run_episodes(policy, s, requests(8, rng), rng=rng, keep_tensors=True)
    rewards = torch.from_numpy(traj.rewards).float()
    values = torch.stack(traj.values)
    nv = torch.cat([values[1:], torch.zeros_like(values[:1])])
    term = torch.zeros_like(rewards)
    term[-1] = 1.0
    adv, ret = compute_gae(rewards, values, nv, term, torch.zeros_like(rewards), 0.99, 0.95)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    cfg = TrainConfig(minibatch_episodes=4, epochs=1)
    stats = ppo_update(policy, opt, traj, adv, ret, cfg, 0.01, rng)
    assert np.isfinite(list(stats.values())).all()
    changed = [k for k, v in policy.state_dict().items() if not torch.equal(v, before[k])]
    for part in ("gcn.0", "actor", "critic", "elam_head", "phi", "psi"):
        assert any(k.startswith(part) for k in changed), part
