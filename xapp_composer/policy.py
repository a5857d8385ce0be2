"""The GCN actor-critic of SRL (paper sec. V-C, eqs. 36-39).

Shared by the trainer and the ONNX exporter. The encoder is a stack of GCN layers on a
precomputed normalised adjacency D^-1/2 (A + I) D^-1/2 (eq. 36): the same operator as
torch-geometric's ``GCNConv``, which is its tested reference
(:mod:`xapp_composer.gcn_reference`), but a dense matmul exports to ONNX cleanly and
trains and runs faster at the sizes of this network than the sparse scatter. Global mean pooling (eq. 37)
gives h_graph; with the intent embedding phi(s) and the E-LAM embedding psi(kappa) it
forms the latent z_t. The actor (eq. 38) scores every agent from its node embedding, its
candidate features (what the chain becomes with it) and z_t; invalid agents are masked.
A second head scores the E-LAMs before the first agent; the critic (eq. 39) reads z_t.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from agentnet.config import DEFAULT, ModelConfig
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


# Columns of the step inputs by name (one-column slices: the column axis stays), and the
# groups of the four factors [ln p, ln(1 - BER), L, ln(1 - F/O)], which travel together.
_RAW = {name: F.span(F.RAW_COLUMNS, name) for name in F.RAW_COLUMNS}
_CHAIN = {name: F.span(F.CHAIN_COLUMNS, name) for name in F.CHAIN_COLUMNS}
_LOOK = {name: F.span(F.LOOK_COLUMNS, name) for name in F.LOOK_COLUMNS}
_FACTORS = F.span(F.RAW_COLUMNS, "logp", "lnc")
_OWN_SCALED = F.span(F.RAW_COLUMNS, "f_hop", "f_rate")
_PRE = F.span(F.CHAIN_COLUMNS, "pre_logp", "pre_lnc")
_REST = F.span(F.CHAIN_COLUMNS, "rest_logp", "rest_lnc")
_REST2 = F.span(F.CHAIN_COLUMNS, "rest2_logp", "rest2_lnc")
_LOOK_FACTORS = F.span(F.LOOK_COLUMNS, "logp", "lnc")
_LOOK_SCORE = F.CAND_COLUMNS.index("look_score")


class CandidateFeatures(nn.Module):
    """What the chain becomes with each candidate (MODEL.md factors and utilities).

    No parameters: the same computation in training and inside the exported graph.
    From the per-candidate terms and the chain so far (:func:`steps.step_inputs`):
    C (eq. 2), B (eq. 3), L (eq. 8), P_outage (eqs. 9-14, P_over through the chain's
    bottleneck) of the prefix + candidate + optimistic completion; their utilities,
    feasibility and score s . u under the predicted intent; scaled logs; and a one-step
    lookahead: the best score over the next step's agents (with the steps after that
    completed optimistically) and its utilities. At the last step both are exact; one
    step before, the lookahead is the exact best completion. Output columns:
    :data:`features.CAND_COLUMNS`.

    The four factors travel as one tensor [ln p, ln(1 - BER), L, ln(1 - F/O)] so the
    exported graph stays small (a few dozen nodes): the xApp runs it at every step.

    Args:
        cfg: the model configuration whose utility reference points (``c_ref``,
            ``b_ref``, ``b_decades``, ``l_ref``, ``p_ref``, ``p_decades``) the utilities
            use; C_th and L_max come with each state (its ``chain`` inputs).

    Shapes:
        - raw: (B, M, RAW_DIM); chain: (B, CHAIN_DIM); intent: (B, 4)
        - look_raw: (B, M2, LOOK_DIM); look_keep: (B, M, M2); look_mask: (B, M2)
        - output: (B, M, CAND_DIM)
    """

    def __init__(self, cfg: ModelConfig = DEFAULT):
        super().__init__()
        self.c_ref = cfg.c_ref
        self.l_ref = cfg.l_ref
        ln10 = math.log(10.0)
        # Utility = clamp(ln(factor) * w + b). u_B and u_P (MODEL.md) are fixed by the
        # configuration: u = 1 - (ln x - ln x_ref) / (decades ln 10); u_C and u_L depend on
        # the state's C_th and L_max as well (:meth:`_affine`).
        self.register_buffer(
            "w_const",
            torch.tensor([0.0, -1.0 / (cfg.b_decades * ln10), 0.0, -1.0 / (cfg.p_decades * ln10)]),
            persistent=False,
        )
        self.register_buffer(
            "b_const",
            torch.tensor(
                [
                    0.0,
                    1.0 + math.log(cfg.b_ref) / (cfg.b_decades * ln10),
                    0.0,
                    1.0 + math.log(cfg.p_ref) / (cfg.p_decades * ln10),
                ]
            ),
            persistent=False,
        )
        # Scaled logs of [C, B, L, P_outage], as the step inputs scale the candidate's own
        # terms: ln C / 3 + 1, log10 B / 8 + 1, ln L / 3, log10 P / 3 + 1, each floored.
        self.register_buffer(
            "log_floor",
            torch.tensor(
                [math.log(F.RATE_FLOOR), math.log(F.BER_FLOOR), -50.0, math.log(F.RATE_FLOOR)]
            ),
            persistent=False,
        )
        self.register_buffer(
            "log_scale",
            torch.tensor([1.0 / 3.0, 1.0 / (8 * ln10), 1.0 / 3.0, 1.0 / (3 * ln10)]),
            persistent=False,
        )
        self.register_buffer("log_shift", torch.tensor([1.0, 1.0, 0.0, 1.0]), persistent=False)

    def _affine(self, c_th: torch.Tensor, l_max: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(w, b) of the four utilities, (B, 4), for this state's C_th and L_max."""
        inv_c = 1.0 / torch.log(self.c_ref / c_th)
        inv_l = 1.0 / torch.log(l_max / self.l_ref)
        zeros = torch.zeros_like(c_th)
        w = self.w_const + torch.cat([inv_c, zeros, -inv_l, zeros], dim=-1)
        b = self.b_const + torch.cat(
            [-torch.log(c_th) * inv_c, zeros, torch.log(l_max) * inv_l, zeros], dim=-1
        )
        return w, b

    def _factors(self, sums: torch.Tensor, pover: torch.Tensor, inv_n: torch.Tensor):
        """ln of [C, B, L, P_outage] from summed [ln p, ln(1 - BER), L, ln(1 - F/O)]."""
        log_c = sums[..., 0:1] + torch.log(inv_n)  # eq. 2
        ber = neg_expm1(sums[..., 1:2])  # eq. 3
        lat = sums[..., 2:3]  # eq. 8
        p_out = 1.0 - torch.exp(sums[..., 3:4]) * (1.0 - pover)  # eqs. 9, 14
        return torch.cat([log_c, torch.log(ber), torch.log(lat), torch.log(p_out)], dim=-1)

    def forward(
        self,
        raw: torch.Tensor,
        chain: torch.Tensor,
        intent: torch.Tensor,
        look_raw: torch.Tensor,
        look_keep: torch.Tensor,
        look_mask: torch.Tensor,
    ) -> torch.Tensor:
        return self.combine(*self.static(raw, chain, look_raw, look_keep, look_mask), intent)

    def static(
        self,
        raw: torch.Tensor,
        chain: torch.Tensor,
        look_raw: torch.Tensor,
        look_keep: torch.Tensor,
        look_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The parts of the features that do not depend on the intent.

        Returns:
            ``head`` (B, M, 5): the four utilities and feasibility of candidate +
            optimistic completion; ``tail`` (B, M, 10): scaled logs, the candidate's own
            terms and the last-step flag; ``u2`` (B, M, M2, 4) and ``feas2`` (B, M, M2):
            utilities and feasibility of each (candidate, next agent) pair of the
            lookahead; ``has_look`` (B, 1): whether there is a next step.
        """
        pre, rest, rest2 = chain[:, None, _PRE], chain[:, None, _REST], chain[:, None, _REST2]
        inv_n, c_th, l_max = (
            chain[:, _CHAIN["inv_n"]],
            chain[:, _CHAIN["c_th"]],
            chain[:, _CHAIN["l_max"]],
        )
        log_th = torch.cat([torch.log(c_th), torch.log(l_max)], dim=-1)[:, None, :]
        w, b = self._affine(c_th, l_max)
        w, b = w[:, None, :], b[:, None, :]
        pre_pover = chain[:, None, _CHAIN["pre_pover"]]
        # Candidate + optimistic completion.
        logs = self._factors(
            pre + raw[..., _FACTORS] + rest,
            torch.maximum(
                torch.maximum(pre_pover, raw[..., _RAW["pover"]]),
                chain[:, None, _CHAIN["rest_pover"]],
            ),
            inv_n[:, None, :],
        )
        u = torch.clamp(logs * w + b, 0.0, 1.0)
        feasible = (logs[..., 0] >= log_th[..., 0]) & (logs[..., 2] <= log_th[..., 1])
        # One-step lookahead over the next step's agents (pairs candidate x next agent): the
        # candidate's BER term becomes its hop BER plus the route BER to the next agent.
        zero = torch.zeros_like(look_keep)
        keep2 = look_keep - raw[..., _RAW["keep"]] + raw[..., _RAW["hop_keep"]]
        own = raw[..., None, _FACTORS] + torch.stack([zero, keep2, zero, zero], dim=-1)
        sums2 = (
            pre[:, :, None, :] + own + look_raw[:, None, :, _LOOK_FACTORS] + rest2[:, :, None, :]
        )
        pover2 = torch.maximum(
            torch.maximum(pre_pover[:, :, None, :], raw[..., None, _RAW["pover"]]),
            torch.maximum(
                look_raw[:, None, :, _LOOK["pover"]], chain[:, None, None, _CHAIN["rest2_pover"]]
            ),
        )
        logs2 = self._factors(sums2, pover2, inv_n[:, None, None, :])
        u2 = torch.clamp(logs2 * w[:, :, None, :] + b[:, :, None, :], 0.0, 1.0)
        feas2 = (
            (logs2[..., 0] >= log_th[..., None, 0])
            & (logs2[..., 2] <= log_th[..., None, 1])
            & look_mask[:, None, :]
        )
        scaled = (torch.maximum(logs, self.log_floor) * self.log_scale) + self.log_shift
        last = chain[:, _CHAIN["last"]].expand_as(feasible).to(u.dtype)
        own_terms = torch.cat(
            [raw[..., _RAW["logp"]], torch.log(raw[..., _RAW["lat"]]) / 3.0, raw[..., _OWN_SCALED]],
            dim=-1,
        )
        head = torch.cat([u, feasible.to(u.dtype)[..., None]], dim=-1)
        tail = torch.cat([scaled, own_terms, last[..., None]], dim=-1)
        return head, tail, u2, feas2, chain[:, _CHAIN["has_look"]] > 0.5

    @staticmethod
    def combine(
        head: torch.Tensor,
        tail: torch.Tensor,
        u2: torch.Tensor | None,
        feas2: torch.Tensor | None,
        has_look: torch.Tensor | None,
        intent: torch.Tensor,
    ) -> torch.Tensor:
        """The candidate features (B, M, CAND_DIM) from :meth:`static` and the intent:
        the score s . u (eq. 34's utility under the predicted vector; -1 if infeasible),
        and the best lookahead score with its utilities.

        ``has_look`` None: every chain has a next step (the lookahead is used as is);
        ``u2`` and ``feas2`` None: none has (the lookahead is the candidate itself).
        """
        u, feasible = head[..., 0:4], head[..., 4] > 0.5
        s4 = intent[:, None, :]
        minus_one = u.new_tensor(-1.0)
        score = torch.where(feasible, (u * s4).sum(-1), minus_one)
        if u2 is None or feas2 is None:
            return torch.cat([head, score[..., None], tail, score[..., None], u], dim=-1)
        sc2 = torch.where(feas2, (u2 * s4[:, :, None, :]).sum(-1), minus_one)
        best, arg = sc2.max(dim=-1)
        u_best = torch.gather(u2, 2, arg[..., None, None].expand(-1, -1, 1, 4)).squeeze(2)
        if has_look is None:
            look_score, look_u = best, u_best
        else:
            look = has_look[:, :, None]
            look_score = torch.where(look[..., 0], best, score)
            look_u = torch.where(look, u_best, u)
        return torch.cat([head, score[..., None], tail, look_score[..., None], look_u], dim=-1)


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
        - raw: (B, M, RAW_DIM) their step inputs (:func:`steps.step_inputs`)
        - mask: (B, M) valid candidates (bool)
        - chain: (B, CHAIN_DIM) the chain so far
        - look_raw, look_keep, look_mask: the next step's agents (lookahead)
        - ctx: (B, ctx_dim) context (intent, E-LAM, step, prefix, app, text)
        - outputs: candidate logits (B, M), E-LAM logits (B, K), value (B,)
    """

    def __init__(self, cfg: PolicyConfig, model: ModelConfig = DEFAULT):
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
        self.featurize = CandidateFeatures(model)

    def encode_graph(self, x: torch.Tensor, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Node embeddings and their global mean pooling h_graph (eqs. 36, 37)."""
        node_h = self.encode(x, adj)
        return node_h, node_h.mean(dim=1)

    def encode(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """Node embeddings H^(L) (eq. 36)."""
        hid = x
        for layer in self.gcn:
            hid = layer(hid, adj)
        return hid

    def latent(self, h_graph: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """z_t = [h_graph || phi(s) || psi(kappa) || context] (sec. V-C)."""
        k = self.cfg.n_elams
        return torch.cat(
            [
                h_graph,
                self.phi(ctx[:, :4]),
                self.psi(ctx[:, 4 : 4 + k]),
                self.ctx_rest(ctx[:, 4 + k :]),
            ],
            dim=-1,
        )

    def elam_logits(self, h_graph: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """Scores of the E-LAMs before translation, from h_graph (eq. 37) and the context."""
        return self.elam_head(self.latent(h_graph, ctx))

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
        step's agents (:class:`steps.StepInputs`).
        """
        cand = self.featurize(raw, chain, ctx[:, :4], look_raw, look_keep, look_mask)
        z = self.latent(node_h.mean(dim=1), ctx)
        m = cand_idx.shape[1]
        h_cand = torch.gather(node_h, 1, cand_idx.unsqueeze(-1).expand(-1, -1, node_h.shape[-1]))
        z_nodes = z.unsqueeze(1).expand(-1, m, -1)
        logits = self.actor(torch.cat([h_cand, cand, z_nodes], dim=-1)).squeeze(-1)  # eq. 38
        logits = torch.where(mask, logits, torch.full_like(logits, MASKED_LOGIT))
        elam_logits = self.elam_head(z)
        score = cand[..., _LOOK_SCORE]
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
