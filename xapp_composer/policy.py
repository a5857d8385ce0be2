"""The GCN actor-critic of SRL (paper sec. V-C, eqs. 36-39).

Shared by the trainer, the ONNX exporter and the xApp. The encoder is a stack of GCN
layers on a precomputed normalised adjacency D^-1/2 (A + I) D^-1/2 (eq. 36): the same
operator as torch-geometric's ``GCNConv`` (its weights load one-to-one, see
:meth:`DenseGCNLayer.load_gcnconv`), but a dense matmul exports to ONNX cleanly and runs
faster at the sizes of this network than the sparse scatter. Global mean pooling (eq. 37)
gives h_graph; with the intent embedding phi(s) and the E-LAM embedding psi(kappa) it
forms the latent z_t. The actor (eq. 38) scores every agent from its node embedding, its
candidate features (what the chain becomes with it) and z_t; invalid agents are masked.
A second head scores the E-LAMs before the first agent; the critic (eq. 39) reads z_t.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from xapp_composer import features as F

MASKED_LOGIT = -1e9
"""Logit of a masked action (finite, so softmax and ONNX never see inf - inf)."""


@dataclass(frozen=True)
class PolicyConfig:
    """Sizes of the actor-critic."""

    n_elams: int = field(default=2, metadata={"help": "number of E-LAMs the policy picks from"})
    hidden: int = field(default=64, metadata={"help": "width of GCN layers and MLPs"})
    gcn_layers: int = field(default=2, metadata={"help": "GCN layers (eq. 36)"})
    embed: int = field(default=16, metadata={"help": "width of phi(s) and psi(kappa)"})
    node_dim: int = F.NODE_DIM
    cand_dim: int = F.CAND_DIM

    @property
    def ctx_dim(self) -> int:
        """Size of the context input."""
        return F.n_ctx(self.n_elams)

    def to_dict(self) -> dict:
        """JSON-friendly."""
        return asdict(self)


def neg_expm1(x: torch.Tensor) -> torch.Tensor:
    """-expm1(x) for x <= 0, accurate near 0 with ops every ONNX runtime has."""
    return torch.where(x > -1e-3, -x * (1.0 + 0.5 * x), 1.0 - torch.exp(x))


class CandidateFeatures(nn.Module):
    """What the chain becomes with each candidate (MODEL.md factors and utilities).

    No parameters: the same computation in training and inside the exported graph.
    From the per-candidate terms and the chain so far (:func:`features.step_inputs`):
    C (eq. 2), B (eq. 3), L (eq. 8), P_outage (eqs. 9-14, P_over through the chain's
    bottleneck) of the prefix + candidate + optimistic completion; their utilities,
    feasibility and score s . u under the predicted intent; scaled logs; and a one-step
    lookahead: the best score over the next step's agents (with the steps after that
    completed optimistically) and its utilities. At the last step both are exact; one
    step before, the lookahead is the exact best completion.

    Shapes:
        - raw: (B, M, RAW_DIM); chain: (B, CHAIN_DIM); intent: (B, 4)
        - look_raw: (B, M2, LOOK_DIM); look_keep: (B, M, M2); look_mask: (B, M2)
        - output: (B, M, CAND_DIM)
    """

    LN10 = 2.302585092994046

    def __init__(self, c_ref: float = 0.25, l_ref: float = 0.05):
        super().__init__()
        self.c_ref = c_ref
        self.l_ref = l_ref

    def utilities(self, cap, ber, lat, p_out, c_th, l_max) -> torch.Tensor:
        """[u_C, u_B, u_L, u_P] of MODEL.md, stacked on a new last axis."""
        u_c = torch.clamp(torch.log(cap / c_th) / torch.log(self.c_ref / c_th), 0.0, 1.0)
        u_b = 1.0 - torch.clamp(torch.log(ber / 1e-5) / (4.0 * self.LN10), 0.0, 1.0)
        u_l = torch.clamp(torch.log(l_max / lat) / torch.log(l_max / self.l_ref), 0.0, 1.0)
        u_p = 1.0 - torch.clamp(torch.log(p_out / 1e-3) / (3.0 * self.LN10), 0.0, 1.0)
        return torch.stack([u_c, u_b, u_l, u_p], dim=-1)

    def forward(
        self,
        raw: torch.Tensor,
        chain: torch.Tensor,
        intent: torch.Tensor,
        look_raw: torch.Tensor,
        look_keep: torch.Tensor,
        look_mask: torch.Tensor,
    ) -> torch.Tensor:
        logp, lat, lnc, pover, keep, f_hop, f_next, f_rate, hop_keep = raw.unbind(-1)
        c = [chain[:, i : i + 1] for i in range(F.CHAIN_DIM)]
        c_th, l_max = c[11], c[12]
        cap = torch.exp(c[0] + logp + c[5]) * c[10]  # eq. 2
        ber = neg_expm1(c[3] + keep)  # eq. 3
        lat_c = c[1] + lat + c[6]  # eq. 8
        p_over = torch.maximum(torch.maximum(c[4], pover), c[8])  # eqs. 11-13
        p_out = 1.0 - torch.exp(c[2] + lnc + c[7]) * (1.0 - p_over)  # eq. 14
        feasible = (cap >= c_th) & (lat_c <= l_max)
        u = self.utilities(cap, ber, lat_c, p_out, c_th, l_max)
        s4 = intent.unsqueeze(1)
        score = torch.where(feasible, (u * s4).sum(-1), torch.full_like(cap, -1.0))
        # One-step lookahead over the next step's agents (pairs candidate x next agent).
        lp, ll, lc, lo, lk = (t.unsqueeze(1) for t in look_raw.unbind(-1))
        c3 = [x.unsqueeze(-1) for x in c]
        cap2 = torch.exp(c3[0] + logp.unsqueeze(-1) + lp + c3[13]) * c3[10]
        ber2 = neg_expm1(c3[3] + hop_keep.unsqueeze(-1) + look_keep + lk)
        lat2 = c3[1] + lat.unsqueeze(-1) + ll + c3[14]
        pov2 = torch.maximum(torch.maximum(c3[4], pover.unsqueeze(-1)), torch.maximum(lo, c3[16]))
        pout2 = 1.0 - torch.exp(c3[2] + lnc.unsqueeze(-1) + lc + c3[15]) * (1.0 - pov2)
        feas2 = (cap2 >= c3[11]) & (lat2 <= c3[12]) & look_mask.unsqueeze(1)
        u2 = self.utilities(cap2, ber2, lat2, pout2, c3[11], c3[12])
        sc2 = torch.where(feas2, (u2 * s4.unsqueeze(2)).sum(-1), torch.full_like(cap2, -1.0))
        best, arg = sc2.max(dim=-1)
        u_best = torch.gather(u2, 2, arg[..., None, None].expand(-1, -1, 1, 4)).squeeze(2)
        has_look = c[17] > 0.5
        look_score = torch.where(has_look, best, score)
        look_u = torch.where(has_look.unsqueeze(-1), u_best, u)
        ln10 = self.LN10
        last = c[9].expand_as(cap)
        return torch.cat(
            [
                u,
                torch.stack(
                    [
                        feasible.to(cap.dtype),
                        score,
                        logp,
                        torch.log(lat) / 3.0,
                        f_rate,
                        f_hop,
                        f_next,
                        torch.log(torch.clamp(cap, min=1e-6)) / 3.0 + 1.0,
                        torch.log(torch.clamp(ber, min=1e-16)) / (8.0 * ln10) + 1.0,
                        torch.log(lat_c) / 3.0,
                        torch.log(torch.clamp(p_out, min=1e-6)) / (3.0 * ln10) + 1.0,
                        last,
                        look_score,
                    ],
                    dim=-1,
                ),
                look_u,
            ],
            dim=-1,
        )


class DenseGCNLayer(nn.Module):
    """One GCN layer, H' = relu(Â H W + b) with Â precomputed (eq. 36).

    Shapes:
        - x: (B, N, F_in)
        - adj: (B, N, N), the normalised adjacency with self-loops
        - output: (B, N, F_out)
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.lin = nn.Linear(in_channels, out_channels, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot weights and zero bias, as torch-geometric's GCNConv."""
        nn.init.xavier_uniform_(self.lin.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.matmul(adj, self.lin(x)) + self.bias)

    def load_gcnconv(self, conv) -> None:
        """Copy the weights of a ``torch_geometric.nn.GCNConv`` (same operator)."""
        with torch.no_grad():
            self.lin.weight.copy_(conv.lin.weight)
            self.bias.copy_(conv.bias)


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class GCNActorCritic(nn.Module):
    """Actor-critic with a shared GCN encoder (eqs. 36-39).

    Shapes:
        - x: (B, N, node_dim) node features
        - adj: (B, N, N) normalised adjacency
        - cand_idx: (B, M) ids of the step's candidate agents (int64)
        - raw: (B, M, RAW_DIM) their step inputs (:func:`features.step_inputs`)
        - mask: (B, M) valid candidates (bool)
        - chain: (B, CHAIN_DIM) the chain so far
        - look_raw, look_keep, look_mask: the next step's agents (lookahead)
        - ctx: (B, ctx_dim) context (intent, E-LAM, step, prefix, app, text)
        - outputs: candidate logits (B, M), E-LAM logits (B, K), value (B,)
    """

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.cfg = cfg
        h, e = cfg.hidden, cfg.embed
        dims = [cfg.node_dim] + [h] * cfg.gcn_layers
        self.gcn = nn.ModuleList(DenseGCNLayer(a, b) for a, b in itertools.pairwise(dims))
        self.phi = nn.Sequential(nn.Linear(4, e), nn.Tanh())  # intent embedding
        self.psi = nn.Sequential(nn.Linear(cfg.n_elams, e), nn.Tanh())  # E-LAM embedding
        rest = cfg.ctx_dim - 4 - cfg.n_elams
        self.ctx_rest = nn.Sequential(nn.Linear(rest, e), nn.Tanh())
        z_dim = h + 3 * e
        self.z_dim = z_dim
        self.actor = mlp([h + cfg.cand_dim + z_dim, h, h, 1])
        self.elam_head = mlp([z_dim, h, cfg.n_elams])
        self.critic = mlp([z_dim + 2, h, h, 1])
        self.featurize = CandidateFeatures()

    def encode(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """Node embeddings H^(L) (eq. 36)."""
        hid = x
        for layer in self.gcn:
            hid = layer(hid, adj)
        return hid

    def heads(
        self,
        node_h: torch.Tensor,
        cand_idx: torch.Tensor,
        raw: torch.Tensor,
        mask: torch.Tensor,
        chain: torch.Tensor,
        look_raw: torch.Tensor,
        look_keep: torch.Tensor,
        look_mask: torch.Tensor,
        ctx: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actor, E-LAM and critic heads on given node embeddings.

        Only the M candidate agents of the step are scored (the others are invalid
        anyway): ``cand_idx`` (B, M) are their ids, ``raw``/``mask`` (B, M, .) their step
        inputs; ``chain`` (B, CHAIN_DIM) describes the chain so far; ``look_*`` the next
        step's agents (:class:`features.StepInputs`).
        """
        k = self.cfg.n_elams
        cand = self.featurize(raw, chain, ctx[:, :4], look_raw, look_keep, look_mask)
        h_graph = node_h.mean(dim=1)  # eq. 37
        z = torch.cat(
            [
                h_graph,
                self.phi(ctx[:, :4]),
                self.psi(ctx[:, 4 : 4 + k]),
                self.ctx_rest(ctx[:, 4 + k :]),
            ],
            dim=-1,
        )
        m = cand_idx.shape[1]
        h_cand = torch.gather(node_h, 1, cand_idx.unsqueeze(-1).expand(-1, -1, node_h.shape[-1]))
        z_nodes = z.unsqueeze(1).expand(-1, m, -1)
        logits = self.actor(torch.cat([h_cand, cand, z_nodes], dim=-1)).squeeze(-1)  # eq. 38
        logits = torch.where(mask, logits, torch.full_like(logits, MASKED_LOGIT))
        elam_logits = self.elam_head(z)
        score = cand[..., 16]  # lookahead score
        maskf = mask.to(score.dtype)
        count = maskf.sum(dim=1).clamp(min=1.0)
        best = torch.where(mask, score, torch.full_like(score, -1.0)).amax(dim=1)
        mean = (score * maskf).sum(dim=1) / count
        value = self.critic(torch.cat([z, best.unsqueeze(1), mean.unsqueeze(1)], dim=-1))
        return logits, elam_logits, value.squeeze(-1)  # eq. 39

    def forward(self, x, adj, cand_idx, raw, mask, chain, look_raw, look_keep, look_mask, ctx):
        return self.heads(
            self.encode(x, adj), cand_idx, raw, mask, chain, look_raw, look_keep, look_mask, ctx
        )
