"""torch-geometric's GCN layers as the reference of the policy's dense encoder.

The policy encodes a network with :class:`~xapp_composer.policy.DenseGCNLayer` (a matmul
with the precomputed D^-1/2 (A + I) D^-1/2 of eq. 36) because that exports to ONNX as
two matmuls and, at these sizes, trains faster: ``bench/bench_gcn.py`` measures a
2-layer encoder's forward and backward on a PPO minibatch (128 networks of 81 agents)
at about a third of the time of ``GCNConv`` on the batched edge lists. This module is the
same encoder written with torch-geometric's own ``GCNConv`` (which normalises the edge
list itself) and ``global_mean_pool`` (eq. 37) over a ``Batch`` of graphs, possibly of
different sizes: the reference the dense layers are tested against
(``tests/xapp_composer/test_policy.py``). Training side only (the ``train`` extra); the
xApp never imports it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GCNConv, global_mean_pool

from agentnet.network import Network
from xapp_composer import features as F
from xapp_composer.policy import GCNActorCritic


def graph_batch(nets: Sequence[Network]) -> Batch:
    """The networks as one torch-geometric ``Batch``: node features X (eq. 33b, as the
    policy sees them) and each undirected link in both directions."""
    graphs = []
    for net in nets:
        edges = np.concatenate([net.edges, net.edges[:, ::-1]]).T.copy()
        x = torch.from_numpy(F.node_features(net)).float()
        graphs.append(Data(x=x, edge_index=torch.from_numpy(edges).long()))
    return Batch.from_data_list(graphs)


class PygGCNEncoder(nn.Module):
    """The policy's encoder (eqs. 36, 37) with ``GCNConv`` layers on edge lists.

    Args:
        dims: feature sizes, input first (``[node_dim, hidden, ...]``).

    Shapes:
        - x: (sum of N over the graphs, node_dim)
        - edge_index: (2, E), the batch's edges (both directions, no self-loops)
        - batch: (sum of N,) graph index of each node
        - output: node embeddings (sum of N, hidden) and h_graph (graphs, hidden)
    """

    def __init__(self, dims: Sequence[int]):
        super().__init__()
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in itertools.pairwise(dims))

    def reset_parameters(self) -> None:
        """Glorot weights and zero bias in every layer (torch-geometric's defaults)."""
        for conv in self.convs:
            conv.reset_parameters()

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hid = x
        for conv in self.convs:
            hid = torch.relu(conv(hid, edge_index))
        return hid, global_mean_pool(hid, batch)

    @classmethod
    def from_policy(cls, policy: GCNActorCritic) -> PygGCNEncoder:
        """An encoder with the policy's GCN weights (the same operator, layer by layer)."""
        dims = [policy.cfg.node_dim] + [layer.bias.shape[0] for layer in policy.gcn]
        enc = cls(dims)
        with torch.no_grad():
            for conv, dense in zip(enc.convs, policy.gcn, strict=True):
                conv.lin.weight.copy_(dense.lin.weight)
                conv.bias.copy_(dense.bias)
        return enc.eval()
