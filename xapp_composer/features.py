"""Policy inputs of a network state, computed the same way in training, evaluation and
the xApp runtime.

Three kinds of input feed the GCN-PPO policy (paper sec. V-C):

- **Node features** X (N, :data:`NODE_DIM`) and the normalised adjacency
  D^-1/2 (A + I) D^-1/2 of eq. 36, once per network state (this module:
  :func:`batch_state`, with the per-agent terms the candidate inputs are made of).
- **Candidate inputs** per decision step (:mod:`xapp_composer.steps`): for the M
  candidates of a step, their per-agent terms (B, M, :data:`RAW_DIM`, columns
  :data:`RAW_COLUMNS`) and the chain so far (B, :data:`CHAIN_DIM`, columns
  :data:`CHAIN_COLUMNS`). The policy graph turns them into candidate features
  (:class:`xapp_composer.policy.CandidateFeatures`): what the chain becomes if agent i is
  appended. The exact factors of the extended prefix, completed optimistically for the
  steps still to come (per factor, the best agent of each remaining type; one-hop
  lookahead on BER), turned into the utilities of MODEL.md and scored with the predicted
  intent; at the last step they are exact. They expose each candidate's chain-level
  consequences, which a per-node score needs to generalise. Computing them inside the
  ONNX graph keeps the xApp's per-step work to a few gathers.
- **Context** z_in (:func:`n_ctx` wide; :func:`xapp_composer.steps.context`): predicted intent, E-LAM one-hot, step, prefix
  summary, application and cheap text features of the request (:func:`text_features`:
  known before translation, used to pick the E-LAM).

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
from xapp_composer.routes import RouteTable

N_TYPES = 4
NODE_DIM = N_TYPES + 9
# Column layouts. Factor groups are ordered [ln p, ln(1 - BER), L, ln(1 - F/O)] so the
# graph can add and transform them as one tensor.
RAW_COLUMNS = ("logp", "keep", "lat", "lnc", "pover", "f_hop", "f_next", "f_rate", "hop_keep")
LOOK_COLUMNS = ("logp", "keep", "lat", "lnc", "pover")
CHAIN_COLUMNS = (
    *(f"pre_{c}" for c in LOOK_COLUMNS),
    *(f"rest_{c}" for c in LOOK_COLUMNS),
    *(f"rest2_{c}" for c in LOOK_COLUMNS),
    "last",
    "inv_n",
    "c_th",
    "l_max",
    "has_look",
)
CAND_COLUMNS = (
    "u_c",
    "u_b",
    "u_l",
    "u_p",
    "feasible",
    "score",
    "f_logc",
    "f_ber",
    "f_lat",
    "f_pout",
    "own_logp",
    "own_lat",
    "own_f_hop",
    "own_f_next",
    "own_f_rate",
    "last",
    "look_score",
    "look_u_c",
    "look_u_b",
    "look_u_l",
    "look_u_p",
)
"""Columns of the candidate features the policy graph computes
(:class:`xapp_composer.policy.CandidateFeatures`): utilities, feasibility and score of
candidate + optimistic completion; scaled logs of its factors, the candidate's own terms,
the last-step flag; the best lookahead score and its utilities."""
RAW_DIM = len(RAW_COLUMNS)
CHAIN_DIM = len(CHAIN_COLUMNS)
LOOK_DIM = len(LOOK_COLUMNS)
CAND_DIM = len(CAND_COLUMNS)
TEXT_DIM = 8
STEP_DIM = 3
PREFIX_DIM = 4
BER_FLOOR = 1e-16
RATE_FLOOR = 1e-6
"""Smallest crash or outage rate (and capability) the scaled-log features resolve."""
LAT_CAP = 100.0  # seconds; latency of an unstable agent in the features (L_max * 10)


def span(layout: Sequence[str], first: str, last: str | None = None) -> slice:
    """Columns ``first`` to ``last`` (inclusive; only ``first`` when ``last`` is None) of a
    column layout, as a slice that keeps the column axis."""
    return slice(layout.index(first), layout.index(last or first) + 1)


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

    Per-agent arrays are (B, N); step arrays are (B, n) over the chain's steps. ``route``
    is the (B, N, N) route E[BER] of a training batch, or for one served state
    (:func:`serving_state`) a :class:`~xapp_composer.routes.RouteTable` of rows computed
    per source; ``adj`` is then None and ``gcn_edges`` the GCN operator as an edge list.
    """

    cfg: ModelConfig
    chain_types: tuple[int, ...]
    node_x: np.ndarray
    adj: np.ndarray | None
    logp: np.ndarray
    lat: np.ndarray
    lnc: np.ndarray
    mu: np.ndarray
    lam: np.ndarray
    route: np.ndarray | RouteTable
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
    gcn_edges: GcnEdges | None = None

    def route_pairs(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Route E[BER] (R, M) of one state (B = 1) from agents ``src`` (R,) to ``dst`` (M,)."""
        if isinstance(self.route, np.ndarray):
            return self.route[0][np.asarray(src)[:, None], np.asarray(dst)[None, :]]
        return self.route.between(src, dst)

    def route_hop(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Route E[BER] (B,) from ``src[b]`` to ``dst[b]`` in each state b; 0 where
        ``src[b]`` is -1 (the first agent of a chain)."""
        src = np.asarray(src)
        if isinstance(self.route, np.ndarray):
            hop = self.route[np.arange(self.batch), np.maximum(src, 0), dst]
            return np.where(src >= 0, hop, 0.0)
        hop = np.zeros(len(src))
        first = src < 0
        hop[~first] = self.route.hops(src[~first], np.asarray(dst)[~first])
        return hop

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


class GcnEdges(NamedTuple):
    """D^-1/2 (A + I) D^-1/2 of eq. 36 as an edge list (self-loops and both directions of
    every link): ``out[dst] += weight * h[src]``. ``dst`` is (E, 1), ``weight`` (E, 1)."""

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray


def gcn_edges(n: int, edges: np.ndarray) -> GcnEdges:
    """The operator of :func:`normalized_adjacency` without the dense (N, N) matrix."""
    pairs = np.concatenate([edges, edges[:, ::-1]]).astype(np.int64).reshape(-1, 2)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    # Unique (dst, src) pairs, sorted, through one int64 key per pair (a 1-D sort is
    # several times faster than np.unique over rows).
    key = np.unique(pairs[:, 0] * n + pairs[:, 1])
    loops = np.arange(n, dtype=np.int64)
    dst = np.concatenate([loops, key // n])
    src = np.concatenate([loops, key % n])
    d = 1.0 / np.sqrt(np.bincount(dst, minlength=n).astype(float))
    w = (d[dst] * d[src]).astype(np.float32)
    return GcnEdges(src, dst[:, None], w[:, None])


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
        np.log10(np.maximum(net.outage_rate, RATE_FLOOR)) / 3.0 + 1.0,
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

    With ``shortlist_k`` (one network), the state is the one a
    :class:`~xapp_composer.steps.StatePlan` with candidate shortlists of that size scores
    (:func:`serving_state`).
    """
    if shortlist_k is not None:
        if len(nets) != 1:
            raise ValueError("a shortlisted state is built for one network")
        return serving_state(nets[0], chain_types, shortlist_k)
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

    pover = overload(mu, lam[:, None])
    # Route E[BER] rows are only needed from agents that can precede another step.
    route = np.zeros((b, n, n))
    for i, net in enumerate(nets):
        src = np.flatnonzero(np.isin(net.types, chain_types[:-1]))
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


def overload(mu: np.ndarray, lam: np.ndarray | float) -> np.ndarray:
    """P_over of a chain whose bottleneck is each agent (eq. 13).

    P_over depends on the chain only through its bottleneck, the lowest mu_i (eqs.
    11-13), and pdtrc(floor(mu), lambda) falls as mu grows: so P_over of a chain is the
    largest P_over its agents would have alone.
    """
    return pdtrc(np.floor(np.minimum(mu, 1e6)), lam)


def serving_state(
    net: Network,
    chain_types: Sequence[int] | None,
    shortlist_k: int,
    previous: BatchState | None = None,
) -> BatchState:
    """The state of one network as the xApp scores it (B = 1), with no (N, N) array.

    Routes come from a :class:`~xapp_composer.routes.RouteTable`: rows from the
    shortlisted candidates (:func:`shortlist_ids` of ``shortlist_k``) of every other step,
    which cover each pair of consecutive steps since links are undirected, and the
    lookahead's smallest BER to the next step by one multi-source Dijkstra per step. The
    entries a :class:`~xapp_composer.steps.StatePlan` reads equal :func:`batch_state`'s.

    Args:
        previous: the state this one follows, if any: its route rows are reused when the
            links did not change, its lookahead BER when, besides, the next step's usable
            agents did not change, and its GCN operator when the links join the same
            agents.
    """
    cfg = net.cfg
    chain_types = tuple(cfg.chain_types if chain_types is None else chain_types)
    steps = len(chain_types)
    n = net.n_agents
    logp = np.log(net.p_success)
    lat = net.agent_latency()
    lnc = np.log1p(-net.outage_rate)
    lam = float(net.arrival_rate)
    pover = overload(net.mu, lam)
    usable = np.zeros((steps, n), dtype=bool)
    step_set = np.zeros((steps, n), dtype=bool)
    for k, t in enumerate(chain_types):
        usable[k, net.agents_of_type(t, usable=True)] = True
        step_set[k] = (net.types == t) & net.available
    old = previous.route if previous is not None else None
    routes = RouteTable.for_network(net, old if isinstance(old, RouteTable) else None)
    same_links = routes is old
    # The GCN operator depends on the links' endpoints only, not on their E[BER].
    same_edges = same_links or (
        isinstance(old, RouteTable) and old.n == n and np.array_equal(old.edges, net.edges)
    )
    lists = [
        shortlist_ids(logp, lat, lnc, pover, np.flatnonzero(usable[k]), shortlist_k)
        for k in range(steps)
    ]
    routes.compute(np.concatenate([lists[k] for k in range(1, steps, 2)] or [[]]))
    min_next = np.zeros((steps, n))
    for k in range(steps - 1):
        if (
            same_links
            and previous is not None
            and previous.chain_types == chain_types
            and np.array_equal(previous.usable[0, k + 1], usable[k + 1])
        ):
            min_next[k] = previous.min_next_ber[0, k]
        else:
            min_next[k] = routes.nearest(np.flatnonzero(usable[k + 1]))

    def masked(fn, arr, fill):
        return fn(np.where(usable, arr[None, :], fill), axis=1)

    big = np.inf
    return BatchState(
        cfg=cfg,
        chain_types=chain_types,
        node_x=node_features(net)[None].astype(np.float32),
        adj=None,
        logp=logp[None],
        lat=lat[None],
        lnc=lnc[None],
        mu=net.mu[None],
        lam=np.array([lam]),
        route=routes,
        usable=usable[None],
        step_set=step_set[None],
        outage=net.outage_rate[None],
        types=net.types[None],
        p=net.p_success[None],
        pover=pover[None],
        best_logp=masked(np.max, logp, -big)[None],
        min_lat=masked(np.min, lat, big)[None],
        best_lnc=masked(np.max, lnc, -big)[None],
        min_pover=masked(np.min, pover, big)[None],
        min_next_ber=min_next[None],
        gcn_edges=(
            previous.gcn_edges
            if same_edges and previous is not None and previous.gcn_edges is not None
            else gcn_edges(n, net.edges)
        ),
    )


def shortlist_ids(
    logp: np.ndarray,
    lat: np.ndarray,
    lnc: np.ndarray,
    pover: np.ndarray,
    cand: np.ndarray,
    k: int,
) -> np.ndarray:
    """At most ``k`` of the agents ``cand``, taking the best of each factor in turn
    (capability ``logp``, latency ``lat``, crash rate ``lnc``, overload ``pover``; per-agent
    arrays of one state), so every trade-off stays represented. Sorted ids."""
    if len(cand) <= k:
        return cand
    orders = [
        np.argsort(-logp[cand], kind="stable"),
        np.argsort(lat[cand], kind="stable"),
        np.argsort(-lnc[cand], kind="stable"),
        np.argsort(pover[cand], kind="stable"),
    ]
    picked: dict[int, None] = {}
    for rank in range(len(cand)):
        for order in orders:
            picked.setdefault(int(cand[order[rank]]))
            if len(picked) == k:
                return np.sort(np.fromiter(picked, dtype=np.int64))
    return np.sort(np.fromiter(picked, dtype=np.int64))
