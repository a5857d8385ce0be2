"""Per-step inputs of the policy: the chain so far, the step's candidates, the lookahead.

A decision extends a chain one agent per step. At each step the policy scores the
candidates of the step's type (:func:`step_candidates`, or at run time the usable ones,
shortlisted to :data:`K_CAND` on large networks) from their per-agent terms, the chain so
far (:class:`Prefix`) and a one-step lookahead over the next step's agents
(:func:`lookahead_candidates`): :func:`step_inputs` gathers them from a
:class:`~xapp_composer.features.BatchState`, and :class:`StatePlan` precomputes what does
not depend on the chain so far, once per state, for the xApp. :func:`context` is the
context vector z_in of a step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from agentnet.intents import APPS
from xapp_composer.features import (
    BER_FLOOR,
    CHAIN_DIM,
    LAT_CAP,
    LOOK_DIM,
    RATE_FLOOR,
    RAW_DIM,
    BatchState,
    shortlist_ids,
)

K_CAND = 128
"""Candidates a step scores at most at run time (a per-factor shortlist beyond that), so
the per-step cost stops growing with N (networks of more than ~500 agents)."""
K_LOOK = K_CAND
"""Next-step agents the lookahead considers at most (a per-factor shortlist beyond that).
As many as a step's candidates: the per-factor shortlist ranks agents by their own terms,
not by their route to the candidate, so a shorter one drops the near neighbours that the
best completion of a candidate often goes through (on 600 agents, 64 of ~140 lost up to
0.08 of normalised score on a network; training-side seeds)."""


@dataclass
class Prefix:
    """Running sums of the chain so far, one entry per batch element."""

    logp: np.ndarray
    lat: np.ndarray
    lnc: np.ndarray
    mu: np.ndarray
    keep: np.ndarray  # sum of log(1 - hop BER)
    pover: np.ndarray  # P_over of the prefix (largest P_over of its agents)
    last: np.ndarray  # last agent id, -1 before the first
    step: np.ndarray  # agents chosen so far

    @classmethod
    def empty(cls, batch: int) -> Prefix:
        """No agent chosen yet."""
        z = np.zeros(batch)
        return cls(
            z.copy(),
            z.copy(),
            z.copy(),
            np.full(batch, np.inf),
            z.copy(),
            z.copy(),
            np.full(batch, -1, dtype=np.int64),
            np.zeros(batch, dtype=np.int64),
        )

    def append(self, s: BatchState, agent: np.ndarray) -> None:
        """Extend each chain by ``agent`` (B,), in place."""
        b = np.arange(s.batch)
        hop = s.route_hop(self.last, agent)
        self.logp = self.logp + s.logp[b, agent]
        self.lat = self.lat + s.lat[b, agent]
        self.lnc = self.lnc + s.lnc[b, agent]
        self.mu = np.minimum(self.mu, s.mu[b, agent])
        self.keep = self.keep + np.log1p(-hop)
        self.pover = np.maximum(self.pover, s.pover[b, agent])
        self.last = agent.astype(np.int64)
        self.step = self.step + 1


class StepInputs(NamedTuple):
    """Per-step inputs of the policy graph for M candidates and M2 lookahead agents."""

    raw: np.ndarray  # (B, M, RAW_DIM)
    mask: np.ndarray  # (B, M)
    chain: np.ndarray  # (B, CHAIN_DIM)
    look_raw: np.ndarray  # (B, M2, LOOK_DIM)
    look_keep: np.ndarray  # (B, M, M2)
    look_mask: np.ndarray  # (B, M2)


def lookahead_candidates(s: BatchState, step: int, shared: bool) -> np.ndarray:
    """Agents (M2,) of the step after ``step`` that the lookahead considers.

    With a shared type layout (training batches) these are all agents of the next type
    (the mask filters); for one state (run time) the usable ones, shortlisted to
    :data:`K_LOOK` by taking the best of each factor in turn when there are more.
    """
    n = len(s.chain_types)
    if step >= n - 1:
        return np.zeros(1, dtype=np.int64)
    if shared:
        return step_candidates(s, step + 1)
    cand = np.flatnonzero(s.usable[0, step + 1])
    if len(cand) == 0:
        # Nobody can follow: one placeholder, masked out by step_inputs (the chain cannot
        # be completed, so every candidate's lookahead is infeasible).
        return np.zeros(1, dtype=np.int64)
    return shortlist(s, cand, K_LOOK)


def shortlist(s: BatchState, cand: np.ndarray, k: int) -> np.ndarray:
    """At most ``k`` of ``cand`` (one state), taking the best of each factor in turn
    (capability, latency, crash rate, overload), so every trade-off stays represented."""
    return shortlist_ids(s.logp[0], s.lat[0], s.lnc[0], s.pover[0], cand, k)


def step_inputs(
    s: BatchState,
    prefix: Prefix,
    cols: np.ndarray | None = None,
    look_cols: np.ndarray | None = None,
) -> StepInputs:
    """Per-step policy inputs of the candidates ``cols`` (default: all N agents).

    All chains of the batch must be at the same step.

    Returns:
        ``raw`` (B, M, RAW_DIM), columns :data:`RAW_COLUMNS`: per candidate ln p_i,
        ln(1 - hop BER) + ln(1 - lookahead BER), L_i (capped), ln(1 - F/O), P_over alone,
        scaled logs of the hop BER, the lookahead BER and the outage rate, and
        ln(1 - hop BER);
        ``chain`` (B, CHAIN_DIM), columns :data:`CHAIN_COLUMNS`: the prefix sums, the
        optimistic completion of the later steps and of the steps after the next one,
        last-step flag, 1/n, C_th, L_max, whether there is a next step;
        ``mask`` (B, M): usable candidates of the step;
        ``look_*``: the agents of the next step (``look_cols``, default
        :func:`lookahead_candidates`), their terms (:data:`LOOK_COLUMNS`: ln p,
        ln(1 - their lookahead BER), L, ln(1 - F/O), P_over), ln(1 - route BER) from each
        candidate to each of them, and which are usable.
    """
    cfg = s.cfg
    n = len(s.chain_types)
    b = np.arange(s.batch)
    sel = slice(None) if cols is None else cols
    k = np.minimum(prefix.step, n - 1)
    step = int(k[0])
    if np.any(k != step):
        raise ValueError("step_inputs needs every chain of the batch at the same step")
    has_prev = (prefix.last >= 0)[:, None]
    if isinstance(s.route, np.ndarray):
        hop = s.route[b, np.maximum(prefix.last, 0)][:, sel] * has_prev
    elif has_prev[0, 0]:
        hop = s.route_pairs(prefix.last, np.arange(s.n_agents)[sel])
    else:
        hop = np.zeros((1, len(np.arange(s.n_agents)[sel])))
    next_ber = s.min_next_ber[b, k][:, sel] * (k < n - 1)[:, None]
    lat = s.lat[:, sel]
    lnc = s.lnc[:, sel]
    hop_keep = np.log1p(-hop)
    raw = np.empty((*hop.shape, RAW_DIM), dtype=np.float32)
    raw[..., 0] = s.logp[:, sel]
    raw[..., 1] = hop_keep + np.log1p(-next_ber)
    raw[..., 2] = np.where(np.isfinite(lat), np.minimum(lat, LAT_CAP), LAT_CAP)
    raw[..., 3] = lnc
    raw[..., 4] = s.pover[:, sel]
    raw[..., 5] = np.log10(np.maximum(hop, BER_FLOOR)) / 8.0 + 1.0
    raw[..., 6] = np.log10(np.maximum(next_ber, BER_FLOOR)) / 8.0 + 1.0
    raw[..., 7] = np.log10(np.maximum(-np.expm1(lnc), RATE_FLOOR)) / 3.0 + 1.0
    raw[..., 8] = hop_keep
    # Optimistic completion over the steps after k (each factor at its own best), and
    # over the steps after k + 1 for the lookahead (no BER term: the lookahead BER of
    # the candidate, resp. of the next agent, is in their own terms).
    steps = np.arange(n)[None, :]
    chain = np.zeros((s.batch, CHAIN_DIM), dtype=np.float32)
    chain[:, 0] = prefix.logp
    chain[:, 1] = prefix.keep
    chain[:, 2] = np.minimum(prefix.lat, LAT_CAP)
    chain[:, 3] = prefix.lnc
    chain[:, 4] = prefix.pover
    for col, later in ((5, steps > k[:, None]), (10, steps > k[:, None] + 1)):
        chain[:, col] = np.maximum(np.where(later, s.best_logp, 0.0).sum(axis=1), -50.0)
        chain[:, col + 2] = np.minimum(np.where(later, s.min_lat, 0.0).sum(axis=1), LAT_CAP)
        chain[:, col + 3] = np.maximum(np.where(later, s.best_lnc, 0.0).sum(axis=1), -50.0)
        chain[:, col + 4] = np.minimum(np.where(later, s.min_pover, 0.0).max(axis=1), 1.0)
    chain[:, 15] = k == n - 1
    chain[:, 16] = 1.0 / n
    chain[:, 17] = cfg.c_th
    chain[:, 18] = cfg.l_max
    chain[:, 19] = k < n - 1
    mask = s.usable[b, k][:, sel] & (prefix.step < n)[:, None]
    # Lookahead over the next step's agents.
    if look_cols is None:
        look_cols = lookahead_candidates(s, step, shared=cols is not None and s.batch > 1)
    look_raw = np.zeros((s.batch, len(look_cols), LOOK_DIM), dtype=np.float32)
    look_keep = np.zeros((s.batch, hop.shape[1], len(look_cols)), dtype=np.float32)
    look_mask = np.zeros((s.batch, len(look_cols)), dtype=bool)
    if step < n - 1:
        nb = s.min_next_ber[:, step + 1][:, look_cols] * (step + 1 < n - 1)
        llat = s.lat[:, look_cols]
        look_raw[..., 0] = s.logp[:, look_cols]
        look_raw[..., 1] = np.log1p(-nb)
        look_raw[..., 2] = np.where(np.isfinite(llat), np.minimum(llat, LAT_CAP), LAT_CAP)
        look_raw[..., 3] = s.lnc[:, look_cols]
        look_raw[..., 4] = s.pover[:, look_cols]
        src = np.arange(s.n_agents)[sel]
        if isinstance(s.route, np.ndarray):
            look_keep[:] = np.log1p(-s.route[:, src][:, :, look_cols])
        else:
            look_keep[0] = np.log1p(-s.route_pairs(src, look_cols))
        look_mask = s.usable[:, step + 1][:, look_cols]
    return StepInputs(raw, mask, chain, look_raw, look_keep, look_mask)


@dataclass
class _PlannedStep:
    cols: np.ndarray
    base: StepInputs
    next_keep: np.ndarray  # (1, M) ln(1 - lookahead BER) of each candidate


class StatePlan:
    """The per-step inputs of one network state that do not depend on the chain so far.

    At run time a decision step then only fills in the predecessor's route row and the
    prefix sums (:meth:`inputs`), instead of recomputing everything
    (:func:`step_inputs`, which it reproduces exactly). Candidates are the usable agents
    of each step (shortlisted to :data:`K_CAND` on large networks); the lookahead is
    :func:`lookahead_candidates` for one state.
    """

    def __init__(self, s: BatchState):
        if s.batch != 1:
            raise ValueError("a StatePlan is built for one network state")
        self.s = s
        self.steps: list[_PlannedStep] = []
        for k in range(len(s.chain_types)):
            cols = shortlist(s, np.flatnonzero(s.usable[0, k]), K_CAND)
            fake = Prefix.empty(1)
            fake.step = np.array([k])
            base = step_inputs(s, fake, cols, lookahead_candidates(s, k, shared=False))
            nb = s.min_next_ber[:, k][:, cols] * (k < len(s.chain_types) - 1)
            self.steps.append(_PlannedStep(cols, base, np.log1p(-nb)))

    def inputs(self, prefix: Prefix) -> tuple[np.ndarray, StepInputs]:
        """(candidate ids, step inputs) for the chain ``prefix`` (one chain)."""
        k = int(prefix.step[0])
        st = self.steps[k]
        raw = st.base.raw.copy()
        last = int(prefix.last[0])
        if last >= 0:
            hop = self.s.route_pairs(np.array([last]), st.cols)[0]
            hop_keep = np.log1p(-hop)
            raw[0, :, 8] = hop_keep
            raw[0, :, 1] = hop_keep + st.next_keep[0]
            raw[0, :, 5] = np.log10(np.maximum(hop, BER_FLOOR)) / 8.0 + 1.0
        chain = st.base.chain.copy()
        chain[0, 0] = prefix.logp[0]
        chain[0, 1] = prefix.keep[0]
        chain[0, 2] = min(prefix.lat[0], LAT_CAP)
        chain[0, 3] = prefix.lnc[0]
        chain[0, 4] = prefix.pover[0]
        b = st.base
        return st.cols, StepInputs(raw, b.mask, chain, b.look_raw, b.look_keep, b.look_mask)

    def inputs_rows(self, step: int, prefix: Prefix) -> StepInputs:
        """:meth:`inputs` for R chains at the same ``step`` at once (``prefix`` has R
        rows), with the same values row by row; the step's candidates are
        ``self.steps[step].cols`` and the lookahead arrays are repeated per row."""
        st = self.steps[step]
        rows = len(prefix.step)
        if np.any(prefix.step != step):
            raise ValueError("inputs_rows needs every chain at the given step")
        b = st.base
        raw = np.repeat(b.raw, rows, axis=0)
        if step > 0:
            hop = self.s.route_pairs(prefix.last, st.cols)
            hop_keep = np.log1p(-hop)
            raw[:, :, 8] = hop_keep
            raw[:, :, 1] = hop_keep + st.next_keep[0]
            raw[:, :, 5] = np.log10(np.maximum(hop, BER_FLOOR)) / 8.0 + 1.0
        chain = np.repeat(b.chain, rows, axis=0)
        chain[:, 0] = prefix.logp
        chain[:, 1] = prefix.keep
        chain[:, 2] = np.minimum(prefix.lat, LAT_CAP)
        chain[:, 3] = prefix.lnc
        chain[:, 4] = prefix.pover
        return StepInputs(
            raw,
            np.repeat(b.mask, rows, axis=0),
            chain,
            np.repeat(b.look_raw, rows, axis=0),
            np.repeat(b.look_keep, rows, axis=0),
            np.repeat(b.look_mask, rows, axis=0),
        )


def step_candidates(s: BatchState, step: int) -> np.ndarray:
    """Ids (M,) of the agents a step chooses among, shared by the batch: those of the
    step's type when every network has the same type layout (generated networks:
    round-robin types), else all N agents (the mask then does the filtering)."""
    row = np.flatnonzero(s.types[0] == s.chain_types[step])
    if np.all(s.types == s.types[0]):
        return row
    return np.arange(s.n_agents)


def context(
    intent: np.ndarray | None,
    elam: np.ndarray | None,
    n_elams: int,
    prefix: Prefix,
    n_steps: int,
    app: np.ndarray,
    text: np.ndarray,
) -> np.ndarray:
    """z_in (B, n_ctx): intent, E-LAM one-hot, step, prefix summary, app, text.

    ``intent``/``elam`` are None (zeros) at the E-LAM step, before translation.
    """
    bsz = len(prefix.step)
    iv = np.zeros((bsz, 4)) if intent is None else np.asarray(intent, dtype=float)
    eo = np.zeros((bsz, n_elams))
    if elam is not None:
        eo[np.arange(bsz), np.asarray(elam)] = 1.0
    chosen = elam is not None
    step = np.stack(
        [
            np.full(bsz, 0.0 if chosen else 1.0),
            prefix.step / n_steps,
            (prefix.step == n_steps - 1).astype(float),
        ],
        axis=1,
    )
    pre = np.stack(
        [
            prefix.logp / 3.0,
            np.log(prefix.lat + 1e-3) / 3.0 * (prefix.step > 0),
            prefix.lnc * 5.0,
            prefix.keep * 5.0,
        ],
        axis=1,
    )
    ao = np.zeros((bsz, len(APPS)))
    ao[np.arange(bsz), np.asarray(app)] = 1.0
    return np.concatenate([iv, eo, step, pre, ao, np.asarray(text, dtype=float)], axis=1).astype(
        np.float32
    )
