"""Run the torch policy over a batch of requests: E-LAM choice, then one agent per step.

Used by the trainer (sampling, with the tensors PPO needs) and by evaluation (greedy).
The ONNX runtime (:mod:`xapp_composer.runtime`) follows the same sequence with the same
feature code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from xapp_composer import features as F
from xapp_composer import steps as S
from xapp_composer.configs import IntentMode
from xapp_composer.episodes import RequestSet, chain_outcome, episode_scores, step_rewards
from xapp_composer.policy import GCNActorCritic

EVEN = np.full(4, 0.25)


@dataclass
class Trajectory:
    """A batch of finished episodes.

    Step 0 is the E-LAM choice (absent in ``even`` mode); then one row per agent.
    Tensors are stacked over rows: (T, B, ...).
    """

    chains: np.ndarray  # (B, n)
    elam: np.ndarray  # (B,) index, -1 when no E-LAM is used
    intent_seen: np.ndarray  # (B, 4)
    outcome: dict[str, np.ndarray]
    score: np.ndarray  # (B,) r_episode under the true vector
    rewards: np.ndarray  # (T, B)
    x: torch.Tensor | None = None
    adj: torch.Tensor | None = None
    inputs: list[tuple[torch.Tensor, ...]] = field(default_factory=list)
    """Per row: (cand_idx, raw, mask, chain, look_raw, look_keep, look_mask)."""
    ctx: list[torch.Tensor] = field(default_factory=list)
    actions: list[torch.Tensor] = field(default_factory=list)
    logprobs: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)
    is_elam_row: list[bool] = field(default_factory=list)

    def record(
        self,
        inputs: tuple[torch.Tensor, ...],
        ctx: torch.Tensor,
        action: np.ndarray,
        logprob: torch.Tensor,
        value: torch.Tensor,
        elam_row: bool,
    ) -> None:
        """Keep one row's tensors for the PPO update (``action``: the index the policy
        chose among the row's choices)."""
        self.inputs.append(inputs)
        self.ctx.append(ctx)
        self.actions.append(torch.from_numpy(action))
        self.logprobs.append(logprob)
        self.values.append(value)
        self.is_elam_row.append(elam_row)


@torch.no_grad()
def run_episodes(
    policy: GCNActorCritic,
    s: F.BatchState,
    req: RequestSet,
    *,
    mode: IntentMode = "predicted",
    greedy: bool = False,
    rng: np.random.Generator | None = None,
    delta: float = 1.0,
    step_reward_coef: float = 1.0,
    keep_tensors: bool = False,
    forced_elam: np.ndarray | None = None,
) -> Trajectory:
    """Compose one chain per (state, request) pair of the batch.

    Args:
        policy: the actor-critic.
        s: B network states.
        req: B requests (true vectors score the rewards; the policy sees predictions).
        mode: ``predicted`` (SRL: the chosen E-LAM's vector) or ``even`` (DRL (Even):
            s fixed at [0.25] * 4, no E-LAM called, no fee).
        greedy: argmax instead of sampling.
        rng: random source for sampling.
        delta: r_flag magnitude (eq. 34).
        step_reward_coef: weight of the step rewards against the episode bonus.
        keep_tensors: keep the inputs and outputs PPO needs.
        forced_elam: (B,) E-LAM indices to use instead of the policy's choice.
    """
    rng = rng or np.random.default_rng()
    bsz = s.batch
    n = len(s.chain_types)
    k_elams = policy.cfg.n_elams
    x = torch.from_numpy(s.node_x)
    adj = torch.from_numpy(s.adj)
    node_h = policy.encode(x, adj)
    prefix = S.Prefix.empty(bsz)
    traj_rows: list[np.ndarray] = []
    out = Trajectory(
        chains=np.zeros((bsz, n), dtype=np.int64),
        elam=np.full(bsz, -1, dtype=np.int64),
        intent_seen=np.zeros((bsz, 4)),
        outcome={},
        score=np.zeros(bsz),
        rewards=np.zeros((0, bsz)),
    )
    if keep_tensors:
        out.x, out.adj = x, adj

    def pick(logits: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        logp = torch.log_softmax(logits, dim=-1)
        if greedy:
            a = logits.argmax(dim=-1).numpy()
        else:
            probs = logp.exp().numpy().astype(np.float64)
            probs /= probs.sum(axis=1, keepdims=True)
            cum = probs.cumsum(axis=1)
            u = rng.random((len(probs), 1))
            a = np.minimum((cum < u).sum(axis=1), probs.shape[1] - 1)
        return a, logp[torch.arange(len(a)), torch.from_numpy(a)]

    fee = np.zeros(bsz)
    if mode == "predicted":
        ctx = S.context(None, None, k_elams, prefix, n, req.app, req.text)
        ctx_t = torch.from_numpy(ctx)
        zero = np.zeros(1, dtype=np.int64)
        step0 = S.step_inputs(s, prefix, zero, zero)
        inputs0 = (
            torch.zeros((bsz, 1), dtype=torch.int64),
            *(torch.from_numpy(x) for x in step0),
        )
        inputs0 = (
            inputs0[0],
            inputs0[1],
            torch.zeros_like(inputs0[2]),
            *inputs0[3:6],
            torch.zeros_like(inputs0[6]),
        )
        _, elam_logits, value = policy.heads(node_h, *inputs0, ctx_t)
        if forced_elam is not None:
            kappa = np.asarray(forced_elam, dtype=np.int64)
            logp = torch.log_softmax(elam_logits, -1)[torch.arange(bsz), torch.from_numpy(kappa)]
        else:
            kappa, logp = pick(elam_logits)
        out.elam = kappa
        intent = req.preds[np.arange(bsz), kappa]
        fee = req.fees[kappa]
        traj_rows.append(np.zeros(bsz))
        if keep_tensors:
            out.record(inputs0, ctx_t, kappa, logp, value, elam_row=True)
        elam_arg = kappa
    else:
        intent = np.broadcast_to(EVEN, (bsz, 4)).copy()
        elam_arg = None
    out.intent_seen = intent
    for k in range(n):
        cols = S.step_candidates(s, k)
        step_in = S.step_inputs(s, prefix, cols, S.lookahead_candidates(s, k, shared=True))
        idx = np.broadcast_to(cols, (bsz, len(cols)))
        ctx = S.context(intent, elam_arg, k_elams, prefix, n, req.app, req.text)
        inputs = (
            torch.from_numpy(np.ascontiguousarray(idx)),
            *(torch.from_numpy(x) for x in step_in),
        )
        ctx_t = torch.from_numpy(ctx)
        logits, _, value = policy.heads(node_h, *inputs, ctx_t)
        a_sub, logp = pick(logits)
        a = idx[np.arange(bsz), a_sub]
        r = step_reward_coef * step_rewards(s, prefix, a, req.true_s, delta)
        prefix.append(s, a)
        out.chains[:, k] = a
        if keep_tensors:
            out.record(inputs, ctx_t, a_sub, logp, value, elam_row=False)
        traj_rows.append(r)
    out.outcome = chain_outcome(s, prefix)
    out.score = episode_scores(out.outcome, req.true_s, fee)
    traj_rows[-1] = traj_rows[-1] + out.score
    out.rewards = np.stack(traj_rows)
    return out
