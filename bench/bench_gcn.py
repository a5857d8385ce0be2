"""The policy's dense GCN encoder against torch-geometric's GCNConv, serving and training.

Prints one JSON object:

- per N (81, 500, 2,000 agents), the forward time of the 2-layer encoder (hidden 64) on
  one network: torch-geometric ``GCNConv`` on the edge list
  (:class:`xapp_composer.gcn_reference.PygGCNEncoder`), the dense matmul in torch, and the
  exported dense encoder in onnxruntime (CPU), what the xApp runs once per state;
- ``train_minibatch``: forward and backward of the same encoder on a PPO minibatch (128
  networks of 81 agents, what ``xapp_composer.ppo.ppo_update`` encodes), dense on the
  stacked adjacencies against ``GCNConv`` on one torch-geometric ``Batch``.

The policy feeds D^-1/2 (A + I) D^-1/2 precomputed once per network state; these are the
measurements behind that choice, for serving and for training. One torch thread.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch

from agentnet.network import generate_network
from xapp_composer import features as F
from xapp_composer.artefacts import ENCODER_OUTPUTS, encoder_path
from xapp_composer.export import export_onnx
from xapp_composer.gcn_reference import PygGCNEncoder, graph_batch
from xapp_composer.policy import GCNActorCritic, PolicyConfig

MINIBATCH = 128


def timeit(fn, repeat: int) -> float:
    """Mean microseconds per call after five warm-up calls."""
    for _ in range(5):
        fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat * 1e6


def serving(policy: GCNActorCritic, pyg: PygGCNEncoder) -> dict[str, dict[str, float]]:
    """Forward time on one network per size, torch-geometric, dense torch and ONNX."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.onnx"
        export_onnx(policy, path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        enc = ort.InferenceSession(str(encoder_path(path)), so, providers=["CPUExecutionProvider"])
        for n in (81, 500, 2000):
            net = generate_network(1, n_agents=n)
            g = graph_batch([net])
            s = F.batch_state([net])
            x, adj = torch.from_numpy(s.node_x), torch.from_numpy(s.adj)

            def sparse(g=g):
                with torch.no_grad():
                    return pyg(g.x, g.edge_index, g.batch)

            def dense(x=x, adj=adj):
                with torch.no_grad():
                    return policy.encode_graph(x, adj)

            feeds = {"x": s.node_x, "adj": s.adj}
            rep = 200 if n <= 500 else 30
            out[f"N={n}"] = {
                "pyg_gcnconv_sparse_us": timeit(sparse, rep),
                "torch_dense_us": timeit(dense, rep),
                "onnxruntime_dense_us": timeit(
                    lambda feeds=feeds: enc.run(ENCODER_OUTPUTS, feeds), rep
                ),
            }
    return out


def training(policy: GCNActorCritic, pyg: PygGCNEncoder) -> dict[str, float]:
    """Forward and backward on a PPO minibatch of 81-agent networks, both ways."""
    nets = [generate_network(100 + i) for i in range(MINIBATCH)]
    s = F.batch_state(nets)
    x, adj = torch.from_numpy(s.node_x), torch.from_numpy(s.adj)
    g = graph_batch(nets)

    def dense():
        node_h, h_graph = policy.encode_graph(x, adj)
        (node_h.sum() + h_graph.sum()).backward()

    def sparse():
        node_h, h_graph = pyg(g.x, g.edge_index, g.batch)
        (node_h.sum() + h_graph.sum()).backward()

    dense_us, sparse_us = timeit(dense, 30), timeit(sparse, 30)
    return {
        "networks": MINIBATCH,
        "agents": nets[0].n_agents,
        "torch_dense_fwd_bwd_ms": round(dense_us / 1e3, 2),
        "pyg_gcnconv_fwd_bwd_ms": round(sparse_us / 1e3, 2),
        "pyg_over_dense": round(sparse_us / dense_us, 2),
    }


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    policy = GCNActorCritic(PolicyConfig())
    pyg = PygGCNEncoder.from_policy(policy)
    out: dict = serving(policy, pyg)
    out["train_minibatch"] = training(policy, pyg)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
