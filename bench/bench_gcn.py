"""Sparse GCNConv (torch-geometric) against the dense normalised adjacency the policy uses.

Prints one JSON object: per N, the forward time of a 2-layer GCN encoder (hidden 64) as
torch-geometric GCNConv on the edge list, as a dense matmul in torch, and as the exported
dense encoder in onnxruntime (CPU). The policy feeds D^-1/2 (A + I) D^-1/2 precomputed once
per network state; this is the measurement behind that choice.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch_geometric.nn import GCNConv

from agentnet.network import generate_network
from xapp_composer import features as F
from xapp_composer.artefacts import ENCODER_OUTPUTS
from xapp_composer.export import export_onnx
from xapp_composer.policy import GCNActorCritic, PolicyConfig


def timeit(fn, repeat: int) -> float:
    for _ in range(5):
        fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat * 1e6


def main() -> None:
    import onnxruntime as ort

    torch.set_num_threads(1)
    policy = GCNActorCritic(PolicyConfig())
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.onnx"
        export_onnx(policy, path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        enc = ort.InferenceSession(
            str(path.with_name("p.encoder.onnx")), so, providers=["CPUExecutionProvider"]
        )
        for n in (81, 500, 2000):
            net = generate_network(1, n_agents=n)
            x = torch.from_numpy(F.node_features(net)).float()
            adj = torch.from_numpy(F.normalized_adjacency(n, net.edges)).float()
            ei = torch.from_numpy(np.concatenate([net.edges, net.edges[:, ::-1]]).T.copy())
            convs = [GCNConv(F.NODE_DIM, 64), GCNConv(64, 64)]

            def sparse(convs=convs, x=x, ei=ei):
                with torch.no_grad():
                    h = x
                    for c in convs:
                        h = torch.relu(c(h, ei))
                    return h

            def dense(x=x, adj=adj):
                with torch.no_grad():
                    return policy.encode(x[None], adj[None])

            feeds = {"x": x[None].numpy(), "adj": adj[None].numpy()}
            rep = 200 if n <= 500 else 30
            out[f"N={n}"] = {
                "pyg_gcnconv_sparse_us": timeit(sparse, rep),
                "torch_dense_us": timeit(dense, rep),
                "onnxruntime_dense_us": timeit(
                    lambda feeds=feeds: enc.run(ENCODER_OUTPUTS, feeds), rep
                ),
            }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
