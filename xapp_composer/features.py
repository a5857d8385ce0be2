"""Policy inputs, computed the same way in training, evaluation and the xApp runtime.

Three kinds of input feed the GCN-PPO policy (paper sec. V-C):

- **Node features** X (N, :data:`NODE_DIM`) and the normalised adjacency
  D^-1/2 (A + I) D^-1/2 of eq. 36, once per network state.
- **Candidate inputs** per decision step: :func:`step_inputs` gathers, for the M
  candidates, their per-agent terms (B, M, :data:`RAW_DIM`) and the chain so far
  (B, :data:`CHAIN_DIM`). The policy graph turns them into candidate features
  (:class:`xapp_composer.policy.CandidateFeatures`): what the chain becomes if agent i is
  appended. The exact factors of the extended prefix, completed optimistically for the
  steps still to come (per factor, the best agent of each remaining type; one-hop
  lookahead on BER), turned into the utilities of MODEL.md and scored with the predicted
  intent; at the last step they are exact. They expose each candidate's chain-level
  consequences, which a per-node score needs to generalise. Computing them inside the
  ONNX graph keeps the xApp's per-step work to a few gathers.
- **Context** z_in (:data:`CTX_DIM`): predicted intent, E-LAM one-hot, step, prefix
  summary, application and cheap text features of the request (known before
  translation, used to pick the E-LAM).

Everything is batched over B network states with the same N (B = 1 at run time), in
numpy, float64 internally and float32 at the output.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.special import pdtrc

from agentnet.config import ModelConfig
from agentnet.intents import APPS
from agentnet.network import Network

N_TYPES = 4
NODE_DIM = N_TYPES + 9
CAND_DIM = 21
RAW_DIM = 9
CHAIN_DIM = 20
LOOK_DIM = 5
# Column layouts. Factor groups are ordered [ln p, ln(1 - BER), L, ln(1 - F/O)] so the
# graph can add and transform them as one tensor.
RAW_COLUMNS = ("logp", "keep", "lat", "lnc", "pover", "f_hop", "f_next", "f_rate", "hop_keep")
CHAIN_COLUMNS = (
    "pre_logp", "pre_keep", "pre_lat", "pre_lnc", "pre_pover",
    "rest_logp", "rest_keep", "rest_lat", "rest_lnc", "rest_pover",
    "rest2_logp", "rest2_keep", "rest2_lat", "rest2_lnc", "rest2_pover",
    "last", "inv_n", "c_th", "l_max", "has_look",
)  # fmt: skip
LOOK_COLUMNS = ("logp", "keep", "lat", "lnc", "pover")
K_LOOK = 64
"""Next-step agents the lookahead considers at most (a per-factor shortlist beyond that)."""
K_CAND = 128
"""Candidates a step scores at most at run time (a per-factor shortlist beyond that), so
the per-step cost stops growing with N (networks of more than ~500 agents)."""
TEXT_DIM = 8
STEP_DIM = 3
PREFIX_DIM = 4
BER_FLOOR = 1e-16
LAT_CAP = 100.0  # seconds; latency of an unstable agent in the features (L_max * 10)


def n_ctx(n_elams: int) -> int:
    """Size of the context vector for ``n_elams`` E-LAMs."""
    return 4 + n_elams + STEP_DIM + PREFIX_DIM + len(APPS) + TEXT_DIM


# ---- text -------------------------------------------------------------------------------
_KEYWORDS = {
    "capability": r"\b(best|quality|insight|deep|depth|thorough|creative|professional|"
    r"publication|detailed|accurate|expert|high[- ]fidelity|polished|rigou?r)",
    "exact": r"\b(exact|precise|verbatim|figures?|numbers?|code|table|legal|medical|"
    r"translat|identifier|garble|spelled|typo|dose|sql|json)",
    "fast": r"\b(quick|fast|now|asap|real[- ]?time|live|instant|immediate|hurry|lag|"
    r"latency|seconds?|urgent|interactive|stream|vr|ar|game|gaming|chat)",
    "reliable": r"\b(must not fail|reliab|mission|critical|emergency|no downtime|payment|"
    r"broadcast|scheduled|guarantee|dependable|outage|complete|fail)",
    "waive": r"(no rush|don'?t mind|rough|whenever|take your time|not urgent|doesn'?t have)",
}
_KW = {k: re.compile(v, re.IGNORECASE) for k, v in _KEYWORDS.items()}


def text_features(prompt: str) -> np.ndarray:
    """Cheap features of a request's text, known before any translation, in [0, 1].

    [log length, has a digit, question, capability / exactness / speed / reliability
    keyword hits, waiver hits]; used only for the E-LAM choice (which model to call).
    """
    words = len(prompt.split())
    hits = [min(len(_KW[k].findall(prompt)), 3) / 3.0 for k in _KEYWORDS]
    return np.array(
        [
            min(np.log1p(words) / 5.0, 1.0),
            float(bool(re.search(r"\d", prompt))),
            float("?" in prompt),
            *hits,
        ],
        dtype=np.float32,
    )[:TEXT_DIM]


# ---- per network state ----------------------------------------------------------------------
@dataclass
class BatchState:
    """Per-state arrays of B networks with N agents and n-step chains of given types.

    Per-agent arrays are (B, N); ``route`` is the (B, N, N) route E[BER]; step arrays are
    (B, n) over the chain's steps.
    """

    cfg: ModelConfig
    chain_types: tuple[int, ...]
    node_x: np.ndarray
    adj: np.ndarray
    logp: np.ndarray
    lat: np.ndarray
    lnc: np.ndarray
    mu: np.ndarray
    lam: np.ndarray
    route: np.ndarray
    usable: np.ndarray  # (B, n, N) bool: available, right type, rho_i < 1
    step_set: np.ndarray  # (B, n, N) bool: available, right type (eq. 34 min-max set)
    outage: np.ndarray  # (B, N) |F_i| / |O_i|
    types: np.ndarray  # (B, N) service types
    p: np.ndarray  # (B, N) p_i
    pover: np.ndarray  # (B, N) P_over of a chain whose bottleneck is agent i (eq. 13)
    best_logp: np.ndarray  # (B, n) best ln p_i over the usable agents of each step
    min_lat: np.ndarray  # (B, n)
    best_lnc: np.ndarray  # (B, n)
    min_pover: np.ndarray  # (B, n)
    min_next_ber: np.ndarray  # (B, n, N): min route BER from i to a usable agent of step k+1

    def take(self, idx: np.ndarray) -> BatchState:
        """The states at ``idx`` (a new batch, arrays gathered)."""
        out = {}
        for name, value in self.__dict__.items():
            out[name] = value[idx] if isinstance(value, np.ndarray) else value
        return BatchState(**out)

    @classmethod
    def concat(cls, parts: Sequence[BatchState]) -> BatchState:
        """Concatenate batches along B."""
        out = {}
        for name, value in parts[0].__dict__.items():
            if isinstance(value, np.ndarray):
                out[name] = np.concatenate([getattr(p, name) for p in parts])
            else:
                out[name] = value
        return cls(**out)

    @property
    def batch(self) -> int:
        """B."""
        return self.logp.shape[0]

    @property
    def n_agents(self) -> int:
        """N."""
        return self.logp.shape[1]


def normalized_adjacency(n: int, edges: np.ndarray) -> np.ndarray:
    """D^-1/2 (A + I) D^-1/2 of eq. 36 for an undirected edge list, dense (N, N)."""
    a = np.eye(n)
    if len(edges):
        a[edges[:, 0], edges[:, 1]] = 1.0
        a[edges[:, 1], edges[:, 0]] = 1.0
    d = 1.0 / np.sqrt(a.sum(axis=1))
    return (a * d[:, None]) * d[None, :]


def node_features(net: Network) -> np.ndarray:
    """X (N, NODE_DIM): type one-hot, available, cloud, ln p, ln L (capped), unstable,
    log10 outage rate, ln mu, V, mean log10 BER of incident links, degree (eq. 33b plus
    type and availability). Scaled to roughly unit range."""
    n = net.n_agents
    lat = net.agent_latency()
    unstable = ~np.isfinite(lat)
    lat = np.where(unstable, LAT_CAP, np.minimum(lat, LAT_CAP))
    inc = np.zeros(n)
    deg = np.zeros(n)
    lb = np.log10(np.maximum(net.link_ber, BER_FLOOR))
    np.add.at(inc, net.edges[:, 0], lb)
    np.add.at(inc, net.edges[:, 1], lb)
    np.add.at(deg, net.edges[:, 0], 1.0)
    np.add.at(deg, net.edges[:, 1], 1.0)
    inc = inc / np.maximum(deg, 1.0)
    onehot = np.zeros((n, N_TYPES))
    onehot[np.arange(n), np.clip(net.types - 1, 0, N_TYPES - 1)] = 1.0
    cols = [
        net.available.astype(float),
        net.cloud.astype(float),
        np.log(net.p_success),
        np.log(lat) / 3.0,
        unstable.astype(float),
        np.log10(np.maximum(net.outage_rate, 1e-6)) / 3.0 + 1.0,
        np.log(net.mu) / 3.0,
        net.cv / 2.0,
        inc / 8.0 + 1.0,
    ]
    return np.concatenate([onehot, np.stack(cols, axis=1)], axis=1)


def batch_state(
    nets: Sequence[Network],
    chain_types: Sequence[int] | None = None,
    shortlist_k: int | None = None,
) -> BatchState:
    """Stack the per-state arrays of networks that share N (one network: B = 1).

    With ``shortlist_k``, route rows are computed only from each step's
    :func:`shortlist` of that size (what a :class:`StatePlan` with the same K scores);
    rows of other agents stay zero.
    """
    cfg = nets[0].cfg
    chain_types = tuple(cfg.chain_types if chain_types is None else chain_types)
    n = nets[0].n_agents
    if any(net.n_agents != n for net in nets):
        raise ValueError("all networks of a batch must have the same number of agents")
    steps = len(chain_types)
    b = len(nets)
    logp = np.stack([np.log(net.p_success) for net in nets])
    lat = np.stack([net.agent_latency() for net in nets])
    lnc = np.stack([np.log1p(-net.outage_rate) for net in nets])
    mu = np.stack([net.mu for net in nets])
    lam = np.array([net.arrival_rate for net in nets])
    usable = np.zeros((b, steps, n), dtype=bool)
    step_set = np.zeros((b, steps, n), dtype=bool)
    for i, net in enumerate(nets):
        for k, t in enumerate(chain_types):
            usable[i, k, net.agents_of_type(t, usable=True)] = True
            step_set[i, k] = (net.types == t) & net.available
    big = np.inf

    def masked(fn, arr, fill):
        out = np.where(usable, arr[:, None, :], fill)
        return fn(out, axis=2)

    # P_over depends on the chain only through its bottleneck, the lowest mu_i (eqs.
    # 11-13), and pdtrc(floor(mu), lambda) falls as mu grows: so P_over of a chain is the
    # largest P_over its agents would have alone.
    pover = pdtrc(np.floor(np.minimum(mu, 1e6)), lam[:, None])
    # Route E[BER] rows are only needed from agents that can precede another step; with
    # ``shortlist_k`` (one state, run time) only from the shortlisted candidates.
    route = np.zeros((b, n, n))
    for i, net in enumerate(nets):
        if shortlist_k is None:
            src = np.flatnonzero(np.isin(net.types, chain_types[:-1]))
        else:
            lists = [
                _shortlist(
                    logp[i], lat[i], lnc[i], pover[i], np.flatnonzero(usable[i, k]), shortlist_k
                )
                for k in range(steps - 1)
            ]
            src = np.unique(np.concatenate(lists)) if lists else np.zeros(0, dtype=np.int64)
        if len(src):
            route[i, src] = net.route_ber(src, np.arange(n))
    best_logp = masked(np.max, logp, -big)
    min_lat = masked(np.min, lat, big)
    best_lnc = masked(np.max, lnc, -big)
    min_pover = masked(np.min, pover, big)
    min_next = np.zeros((b, steps, n))
    for k in range(steps - 1):
        nxt = np.where(usable[:, k + 1, None, :], route, big)
        min_next[:, k, :] = nxt.min(axis=2)
    min_next = np.where(np.isfinite(min_next), min_next, 0.5)
    return BatchState(
        cfg=cfg,
        chain_types=chain_types,
        node_x=np.stack([node_features(net) for net in nets]).astype(np.float32),
        adj=np.stack([normalized_adjacency(n, net.edges) for net in nets]).astype(np.float32),
        logp=logp,
        lat=lat,
        lnc=lnc,
        mu=mu,
        lam=lam,
        route=route,
        usable=usable,
        step_set=step_set,
        outage=np.stack([net.outage_rate for net in nets]),
        types=np.stack([net.types for net in nets]),
        p=np.stack([net.p_success for net in nets]),
        pover=pover,
        best_logp=best_logp,
        min_lat=min_lat,
        best_lnc=best_lnc,
        min_pover=min_pover,
        min_next_ber=min_next,
    )


# ---- the partial chain ----------------------------------------------------------------------
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
        return cls(z.copy(), z.copy(), z.copy(), np.full(batch, np.inf), z.copy(), z.copy(),
                   np.full(batch, -1, dtype=np.int64), np.zeros(batch, dtype=np.int64))  # fmt: skip

    def append(self, s: BatchState, agent: np.ndarray) -> None:
        """Extend each chain by ``agent`` (B,), in place."""
        b = np.arange(s.batch)
        hop = np.where(self.last >= 0, s.route[b, np.maximum(self.last, 0), agent], 0.0)
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
    return _shortlist(s.logp[0], s.lat[0], s.lnc[0], s.pover[0], cand, k)


def _shortlist(logp, lat, lnc, pover, cand: np.ndarray, k: int) -> np.ndarray:
    if len(cand) <= k:
        return cand
    orders = [np.argsort(-logp[cand], kind="stable"), np.argsort(lat[cand], kind="stable"),
              np.argsort(-lnc[cand], kind="stable"), np.argsort(pover[cand], kind="stable")]  # fmt: skip
    picked: dict[int, None] = {}
    for rank in range(len(cand)):
        for order in orders:
            picked.setdefault(int(cand[order[rank]]))
            if len(picked) == k:
                return np.sort(np.fromiter(picked, dtype=np.int64))
    return np.sort(np.fromiter(picked, dtype=np.int64))


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
    hop = s.route[b, np.maximum(prefix.last, 0)][:, sel] * has_prev
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
    raw[..., 7] = np.log10(np.maximum(-np.expm1(lnc), 1e-6)) / 3.0 + 1.0
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
        look_keep[:] = np.log1p(-s.route[:, src][:, :, look_cols])
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
            hop = self.s.route[0, last, st.cols]
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
            hop = self.s.route[0][prefix.last[:, None], st.cols[None, :]]
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
