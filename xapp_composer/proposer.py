"""Intent-conditioned action-space reduction: the top-k agents per chain position.

Generative AI-in-the-loop (mechanism 3: "LLMs can help with action space reduction and
increase the efficiency of the exploration") puts a proposer in front of the decision
maker: knowing the request, it keeps a few candidates per chain position and the policy
(or an exact search) then decides on that reduced graph. On a network of 100,000 agents a
3-step chain has about 10^13 candidates; the proposer leaves k^3.

Scorers. The proposer ranks each position's usable agents by a score conditioned on the
request:

- **Preference profile** (the default, torch-free, what the xApp runs): the request is
  its predicted preference vector s = [w_C, w_B, w_L, w_P] (the E-LAM's output), an
  agent is its profile in the same four axes, the Weber-Fechner utilities of MODEL.md
  [u_C, u_B, u_L, u_P] of the chain the agent would head if every other position took
  its best agent on each factor (its capability ln p_i, the smallest route E[BER] from
  the previous position's usable agents and to the next position's strong ones, its
  latency L_i of eq. 7, its crash rate and P_over of eq. 13). The strong agents of a
  position are its shortlist of :data:`~xapp_composer.steps.K_CAND` agents best on each
  factor in turn (the policy's own candidates): the nearest usable agent is often a weak
  one, so a link term to it would favour agents no good chain passes through. The
  score is s . u, the weighted subjective QoE of MODEL.md
  applied to that optimistic chain; within-position percentile ranks of the four
  factors, weighted by s, break the ties the utilities' clipping leaves.
- **Text embeddings** (:class:`EmbeddingScorer`, an option where a sentence encoder is
  available, such as the rApp's MiniLM E-LAM): the request's text against a one-line
  text descriptor of each agent (:func:`agent_descriptors`), by cosine similarity. The
  xApp cannot embed text without torch, so the deployed xApp uses the preference profile.
- Any other per-position scores (a C-LAM's ranking, say) through ``scores=`` of
  :meth:`StateProfile.propose`.

Guarantee. Whatever the scores, the top-k contains a feasible chain whenever the state has
one. Feasibility (eq. 18b-d) is separable: on usable agents (right type, available,
rho_i < 1) a chain is feasible iff the sum of its ln p_i reaches ln(n C_th) and the sum of
its L_i stays within L_max (route E[BER] has no constraint). A chain exists iff one exists
among each position's Pareto front on (L_i, ln p_i) (replacing an agent by one that
dominates it keeps a chain feasible), which :func:`feasible_chain` decides exactly with
Pareto-pruned partial sums. When the top-k holds no feasible chain, the feasible chain of
the fronts with the best summed score replaces the lowest-scored agents.

Uses of the reduced sets: :func:`reduced_prepared` (the policy's state restricted to
them, for :meth:`xapp_composer.runtime.PolicyRuntime.compose`) and :func:`topk_exhaustive`
(the exact optimum over them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agentnet import qoe
from agentnet.config import ModelConfig
from agentnet.network import Network
from agentnet.optimum import MAX_CHAINS, OptimumUnavailable, build_search_space
from xapp_composer.features import BatchState, shortlist_ids
from xapp_composer.routes import RouteTable
from xapp_composer.runtime import Prepared
from xapp_composer.steps import K_CAND, StatePlan

TIE_WEIGHT = 1e-6
"""Weight of the percentile-rank tie-break against the utilities (which lie in [0, 1])."""


@dataclass(frozen=True)
class StateProfile:
    """What the proposer knows of one served network state (B = 1): computed once per
    state, reused by every request on it.

    Attributes:
        cfg: the model configuration (utility constants, C_th, L_max).
        chain_types: the service type of each position.
        candidates: per position, the usable agents (ids).
        factors: per position, (M_k, 4) [C, B, L, P_outage] of each candidate's
            optimistic chain, B with the smallest route E[BER] from any usable agent of
            the previous position and to any of the next: each factor at least as good
            as that of any chain through the candidate (a bound).
        ber_in: per position, each candidate's smallest route E[BER] from a usable
            agent of the previous position (0 at the first).
        ber_out: per position, each candidate's smallest route E[BER] to the next
            position's shortlist (0 at the last), the link term the scores use.
        ranks: per position, (M_k, 4) within-position percentile ranks of the
            candidates' factors (1 best), the tie-break.
        lat: per position, L_i of each candidate (eq. 7).
        logp: per position, ln p_i of each candidate.
        fronts: per position, indices into ``candidates`` of the Pareto front on
            (L_i low, ln p_i high).
        logp_min: ln(n C_th): the smallest sum of ln p_i of a feasible chain.
        nearest: per agent, the smallest route E[BER] to any of the given agents (the
            state's routes), from their route rows when the second argument is True
            (rows the reduced graph reads next, so they are computed once); None: the
            link term is not conditioned on the kept sets.
    """

    cfg: ModelConfig
    chain_types: tuple[int, ...]
    candidates: tuple[np.ndarray, ...]
    factors: tuple[np.ndarray, ...]
    ber_in: tuple[np.ndarray, ...]
    ber_out: tuple[np.ndarray, ...]
    ranks: tuple[np.ndarray, ...]
    lat: tuple[np.ndarray, ...]
    logp: tuple[np.ndarray, ...]
    fronts: tuple[np.ndarray, ...]
    logp_min: float
    nearest: Callable[[np.ndarray, bool], np.ndarray] | None = field(default=None, compare=False)

    @property
    def steps(self) -> int:
        """n, the chain's length."""
        return len(self.candidates)

    def _score(self, j: int, s: np.ndarray, ber_in: np.ndarray | None = None) -> np.ndarray:
        """Position ``j``'s scores under ``s``; with ``ber_in``, the candidates' route
        E[BER] from their predecessor instead of the optimistic one."""
        f, r = self.factors[j], self.ranks[j].copy()
        ber_in = self.ber_in[j] if ber_in is None else ber_in
        b = -np.expm1(np.log1p(-ber_in) + np.log1p(-self.ber_out[j]))
        r[:, 1] = _percentile(-b)
        u = qoe.utilities(f[:, 0], b, f[:, 2], f[:, 3], self.cfg)
        return u @ s + TIE_WEIGHT * (r @ s)

    def scores(self, intent: Sequence[float]) -> list[np.ndarray]:
        """The preference-profile score of every candidate, per position, each position
        on its own (optimistic link terms)."""
        s = np.asarray(intent, dtype=float)
        return [self._score(j, s) for j in range(self.steps)]

    def propose(
        self,
        intent: Sequence[float] | None,
        k: int,
        scores: Sequence[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, ...]:
        """The top-``k`` agents (ids) of each position, best first, containing a feasible
        chain whenever the state has one.

        With the default scorer, positions are kept in chain order and each one's link
        term is the route E[BER] from the nearest agent the previous position kept (one
        multi-source Dijkstra per position, or the kept agents' route rows at every other
        position, which :func:`reduced_state` and :func:`topk_exhaustive` read next), so
        the kept sets can chain up without lossy routes between them.

        Args:
            intent: the request's predicted vector (used when ``scores`` is None).
            k: agents kept per position (all of them when a position has fewer).
            scores: per position, a score for each of :attr:`candidates` (higher is
                better) from another scorer; None: the preference profile of ``intent``.

        Raises:
            ValueError: ``k`` below 1, or scores of the wrong shape.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if scores is not None:
            if len(scores) != self.steps or any(
                np.shape(v) != c.shape for v, c in zip(scores, self.candidates, strict=True)
            ):
                raise ValueError("scores must hold one value per candidate of every position")
            scores = [np.asarray(v, dtype=float) for v in scores]
            picks = [_top(v, k) for v in scores]
        elif intent is None:
            raise ValueError("propose needs an intent or scores")
        else:
            s = np.asarray(intent, dtype=float)
            scores, picks = [], []
            for j, c in enumerate(self.candidates):
                ber_in = None
                if j > 0 and self.nearest is not None and len(picks[-1]) and len(c):
                    kept = self.candidates[j - 1][picks[-1]]
                    ber_in = self.nearest(kept, (j - 1) % 2 == 1)[c]
                scores.append(self._score(j, s, ber_in))
                picks.append(_top(scores[-1], k))
        if any(len(c) == 0 for c in self.candidates):
            return tuple(c[p] for c, p in zip(self.candidates, picks, strict=True))
        kept = [(self.lat[j][p], self.logp[j][p]) for j, p in enumerate(picks)]
        l_max = float(self.cfg.l_max)
        if feasible_chain([a for a, _ in kept], [b for _, b in kept], l_max, self.logp_min) is None:
            witness = feasible_chain(
                [self.lat[j][f] for j, f in enumerate(self.fronts)],
                [self.logp[j][f] for j, f in enumerate(self.fronts)],
                l_max,
                self.logp_min,
                [scores[j][f] for j, f in enumerate(self.fronts)],
            )
            if witness is not None:
                for j, w in enumerate(witness):
                    index = int(self.fronts[j][w])
                    if index not in picks[j]:
                        picks[j] = picks[j].copy()
                        picks[j][-1] = index  # the lowest-scored pick makes room
        return tuple(c[p] for c, p in zip(self.candidates, picks, strict=True))


def _top(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, largest first (ties: lower index first)."""
    if len(score) <= k:
        return np.argsort(-score, kind="stable")
    part = np.argpartition(-score, k - 1)[:k]
    return part[np.lexsort((part, -score[part]))]


def _nearest(s: BatchState, targets: np.ndarray, rows: bool = False) -> np.ndarray:
    """Per agent, the smallest route E[BER] to any of ``targets`` (N,); with ``rows``, from
    the targets' route rows (computed and kept in the state's route table)."""
    if isinstance(s.route, RouteTable):
        if rows and len(targets):
            rows = s.route.rows_for(targets.tolist())
            return np.min([rows[int(t)] for t in targets], axis=0)
        return s.route.nearest(targets)
    if len(targets) == 0:
        return np.full(s.n_agents, 0.5)
    return s.route[0][targets].min(axis=0)  # routes are symmetric: rows of the targets


def _percentile(values: np.ndarray) -> np.ndarray:
    """Rank of each value in [0, 1] (1: the largest)."""
    if len(values) < 2:
        return np.ones(len(values))
    return np.argsort(np.argsort(values, kind="stable"), kind="stable") / (len(values) - 1)


def pareto_front(cost: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Indices of the points no other point dominates (cost no higher and gain no lower,
    one of them strictly), by increasing cost; of equal points, the first."""
    order = np.lexsort((-gain, cost))
    g = gain[order]
    best_before = np.maximum.accumulate(np.concatenate([[-np.inf], g[:-1]]))
    return order[g > best_before]


def feasible_chain(
    lat: Sequence[np.ndarray],
    logp: Sequence[np.ndarray],
    l_max: float,
    logp_min: float,
    value: Sequence[np.ndarray] | None = None,
) -> tuple[int, ...] | None:
    """A chain, one index per position into its arrays, with sum L_i <= ``l_max`` and sum
    ln p_i >= ``logp_min``; None when there is none (exact).

    The search keeps, position by position, the Pareto front of the partial sums (L low,
    ln p high): a chain through a dominated partial sum can be rebuilt through the one
    that dominates it. Among the feasible complete chains left, it returns the one of
    largest summed ``value`` (default: the first).
    """
    if any(len(a) == 0 for a in lat):
        return None
    front = pareto_front(lat[0], logp[0])
    sum_lat, sum_logp = lat[0][front], logp[0][front]
    val = np.zeros(len(front)) if value is None else np.asarray(value[0], dtype=float)[front]
    path = front[:, None]
    for j in range(1, len(lat)):
        f = pareto_front(lat[j], logp[j])
        cand_lat = (sum_lat[:, None] + lat[j][f][None, :]).ravel()
        cand_logp = (sum_logp[:, None] + logp[j][f][None, :]).ravel()
        row, col = np.divmod(np.arange(len(cand_lat)), len(f))
        ok = cand_lat <= l_max
        if j == len(lat) - 1:
            ok &= cand_logp >= logp_min
            keep = np.flatnonzero(ok)
        else:
            keep = np.flatnonzero(ok)
            keep = keep[pareto_front(cand_lat[keep], cand_logp[keep])]
        if len(keep) == 0:
            return None
        extra = 0.0 if value is None else np.asarray(value[j], dtype=float)[f][col[keep]]
        val = val[row[keep]] + extra
        path = np.concatenate([path[row[keep]], f[col[keep]][:, None]], axis=1)
        sum_lat, sum_logp = cand_lat[keep], cand_logp[keep]
    if len(lat) == 1:
        ok = np.flatnonzero((sum_lat <= l_max) & (sum_logp >= logp_min))
        if len(ok) == 0:
            return None
        return (int(path[ok[np.argmax(val[ok])], 0]),)
    return tuple(int(i) for i in path[int(np.argmax(val))])


def profile_state(s: BatchState) -> StateProfile:
    """The proposer's per-state profile of one served state (module docstring): one
    multi-source Dijkstra per position for the link terms."""
    if s.batch != 1:
        raise ValueError("the proposer profiles one network state")
    cfg = s.cfg
    n = len(s.chain_types)
    cands = tuple(np.flatnonzero(s.usable[0, k]) for k in range(n))
    logp, lat, lnc, pover = s.logp[0], s.lat[0], s.lnc[0], s.pover[0]
    best_logp, min_lat = s.best_logp[0], s.min_lat[0]
    best_lnc, min_pover = s.best_lnc[0], s.min_pover[0]
    complete = all(len(c) for c in cands)
    factors, ber_ins, ber_outs, ranks = [], [], [], []
    for k, c in enumerate(cands):
        last = k == n - 1
        ber_in = _nearest(s, cands[k - 1])[c] if k > 0 and complete else np.zeros(len(c))
        near_out = np.zeros(len(c)) if last else s.min_next_ber[0, k, c]
        strong = [] if last else shortlist_ids(logp, lat, lnc, pover, cands[k + 1], K_CAND)
        ber_ins.append(ber_in)
        ber_outs.append(_nearest(s, strong)[c] if len(strong) and complete else near_out)
        if not complete:
            factors.append(np.zeros((len(c), 4)))
            ranks.append(np.zeros((len(c), 4)))
            continue
        others = np.arange(n) != k
        f = np.empty((len(c), 4))
        f[:, 0] = np.exp(logp[c] + best_logp[others].sum()) / n
        f[:, 1] = -np.expm1(np.log1p(-ber_in) + np.log1p(-near_out))
        f[:, 2] = lat[c] + min_lat[others].sum()
        f[:, 3] = 1.0 - np.exp(lnc[c] + best_lnc[others].sum()) * (
            1.0 - np.maximum(pover[c], min_pover[others].max(initial=0.0))
        )
        factors.append(f)
        # The link column is recomputed per request (StateProfile._score).
        ranks.append(np.stack([_percentile(x) for x in (f[:, 0], -f[:, 1], -f[:, 2], -f[:, 3])], 1))
    return StateProfile(
        cfg=cfg,
        chain_types=tuple(s.chain_types),
        candidates=cands,
        factors=tuple(factors),
        ber_in=tuple(ber_ins),
        ber_out=tuple(ber_outs),
        ranks=tuple(ranks),
        lat=tuple(lat[c] for c in cands),
        logp=tuple(logp[c] for c in cands),
        fronts=tuple(pareto_front(lat[c], logp[c]) for c in cands),
        logp_min=float(np.log(n * cfg.c_th)),
        nearest=lambda targets, rows=False: _nearest(s, targets, rows),
    )


def _route_rows(s: BatchState, sets: Sequence[np.ndarray]) -> None:
    """Compute the route rows the reduced graph reads: those of every other position's
    set, which cover each consecutive pair (links are undirected)."""
    if isinstance(s.route, RouteTable):
        s.route.compute(np.concatenate([sets[k] for k in range(1, len(sets), 2)] or [[]]))


def reduced_state(s: BatchState, sets: Sequence[np.ndarray]) -> BatchState:
    """The served state ``s`` with each position's choice restricted to ``sets`` (the
    reduced graph): usable masks, the optimistic completions and each candidate's
    lookahead BER (to the next position's set) are recomputed over the sets; per-agent
    terms, routes and the GCN operator are ``s``'s (the encoder still sees the whole
    network).
    """
    if s.batch != 1:
        raise ValueError("a reduced state is built for one network state")
    n = len(s.chain_types)
    if len(sets) != n:
        raise ValueError(f"{len(sets)} candidate sets for {n} positions")
    sets = [np.asarray(a, dtype=np.int64) for a in sets]
    usable = np.zeros_like(s.usable)
    for k, a in enumerate(sets):
        usable[0, k, a] = True
    if not np.all(s.usable[usable]):
        raise ValueError("a reduced set holds an agent the state cannot use at that position")
    _route_rows(s, sets)
    min_next = s.min_next_ber.copy()
    for k in range(n - 1):
        if len(sets[k]) and len(sets[k + 1]):
            min_next[0, k, sets[k]] = s.route_pairs(sets[k], sets[k + 1]).min(axis=1)
        else:
            min_next[0, k, sets[k]] = 0.5

    def best(arr: np.ndarray, fn, fill: float) -> np.ndarray:
        return np.array([[fn(arr[0, a], initial=fill) for a in sets]])

    return dataclasses.replace(
        s,
        usable=usable,
        best_logp=best(s.logp, np.max, -np.inf),
        min_lat=best(s.lat, np.min, np.inf),
        best_lnc=best(s.lnc, np.max, -np.inf),
        min_pover=best(s.pover, np.min, np.inf),
        min_next_ber=min_next,
    )


def reduced_prepared(p: Prepared, sets: Sequence[np.ndarray]) -> Prepared:
    """The prepared state ``p`` restricted to ``sets`` (:func:`reduced_state`), for
    :meth:`~xapp_composer.runtime.PolicyRuntime.compose`: the encoder's output is ``p``'s
    and the chain is composed step by step on the sets (no tabulated decision)."""
    state = reduced_state(p.state, sets)
    return Prepared(state, StatePlan(state), p.node_h, p.h_graph, p.n_agents)


def topk_exhaustive(
    net: Network,
    s: BatchState,
    sets: Sequence[np.ndarray],
    intent: Sequence[float],
) -> tuple[tuple[int, ...], float] | None:
    """The exact best chain over the reduced graph (every chain of ``sets``) and its
    predicted Q*_s under ``intent`` (MODEL.md, `weighted`), or None when none is
    feasible. ``s`` is the served state of ``net`` (its route rows are used and kept).

    Raises:
        OptimumUnavailable: the sets span more than
            :data:`agentnet.optimum.MAX_CHAINS` chains.
    """
    _route_rows(s, sets)
    space = build_search_space(net, s.chain_types, candidates=sets, route_ber=s.route_pairs)
    if space.feasible_count == 0:
        return None
    q = space.subjective(np.asarray(intent, dtype=float), "weighted", net.cfg)
    best = int(np.argmax(np.where(space.feasible, q, -np.inf)))
    return space.chain_at(best), float(q.reshape(-1)[best])


def exact_by_bound(
    net: Network, profile: StateProfile, intent: Sequence[float]
) -> tuple[tuple[int, ...], float] | None:
    """The exact optimum over the whole graph (every chain of usable agents) and its
    Q*_s under ``intent``, or None when no chain is feasible: an evaluation reference
    where the full search grid is too large to hold.

    Branch and bound on the first position: the profile's optimistic chain of a
    first agent (its factors with every later position at its best and the smallest
    route E[BER] to the next position) is at least as good on every factor as any chain
    through it, so its s . u bounds their Q*_s (the utilities rise with each factor).
    First agents are searched exactly (every chain through them, in blocks that fit
    :data:`agentnet.optimum.MAX_CHAINS`) in decreasing bound, until the bound falls to
    the best chain found.

    Raises:
        OptimumUnavailable: the chains through one first agent exceed
            :data:`agentnet.optimum.MAX_CHAINS`.
    """
    s = np.asarray(intent, dtype=float)
    if any(len(c) == 0 for c in profile.candidates):
        return None
    rest = int(np.prod([len(c) for c in profile.candidates[1:]], dtype=np.float64))
    if rest > MAX_CHAINS:
        raise OptimumUnavailable(
            f"{rest:,} chains through each first agent exceed the limit of {MAX_CHAINS:,}"
        )
    f = profile.factors[0]
    bound = qoe.utilities(f[:, 0], f[:, 1], f[:, 2], f[:, 3], profile.cfg) @ s
    order = np.argsort(-bound, kind="stable")
    block = max(1, MAX_CHAINS // max(rest, 1))
    best, best_q = None, -np.inf
    for start in range(0, len(order), block):
        idx = order[start : start + block]
        if bound[idx[0]] <= best_q:
            break
        first = profile.candidates[0][idx]
        space = build_search_space(
            net, profile.chain_types, candidates=[first, *profile.candidates[1:]]
        )
        if space.feasible_count == 0:
            continue
        q = np.where(space.feasible, space.subjective(s, "weighted", net.cfg), -np.inf)
        i = int(np.argmax(q))
        if q.reshape(-1)[i] > best_q:
            best_q, best = float(q.reshape(-1)[i]), space.chain_at(i)
    return None if best is None else (best, best_q)


# ---- text-embedding scorer ------------------------------------------------------------------
def agent_descriptors(net: Network, profile: StateProfile) -> list[list[str]]:
    """A one-line text descriptor of every candidate, per position: tier and the four
    factors in words (capability, latency, reliability, link quality), for a text
    encoder."""

    def level(x: np.ndarray, words: tuple[str, str, str]) -> list[str]:
        r = _percentile(x)
        return [words[0] if v < 1 / 3 else words[1] if v < 2 / 3 else words[2] for v in r]

    out = []
    for c, f in zip(profile.candidates, profile.factors, strict=True):
        cap = level(net.p_success[c], ("low capability", "capable", "highly capable, accurate"))
        speed = level(-net.agent_latency()[c], ("slow", "moderate latency", "fast, real-time"))
        rel = level(-net.outage_rate[c], ("outage-prone", "fairly reliable", "very reliable"))
        link = level(-f[:, 1], ("lossy links", "average links", "clean, exact links"))
        tier = ["cloud" if net.cloud[a] else "edge" for a in c]
        out.append(
            [
                f"{t} agent: {a}, {b}, {r}, {lk}"
                for t, a, b, r, lk in zip(tier, cap, speed, rel, link, strict=True)
            ]
        )
    return out


class EmbeddingScorer:
    """Scores candidates by the cosine similarity of the request's text embedding to their
    descriptors' (:func:`agent_descriptors`), for :meth:`StateProfile.propose`.

    Args:
        embed: a sentence encoder, texts -> (len(texts), D) vectors (the rApp's MiniLM,
            an OpenAI-compatible embeddings endpoint, ...).
    """

    def __init__(self, embed: Callable[[list[str]], np.ndarray]):
        self.embed = embed
        self._cache: dict[str, np.ndarray] = {}

    def _vectors(self, texts: list[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self._cache})
        if missing:
            for t, v in zip(missing, np.asarray(self.embed(missing), dtype=float), strict=True):
                self._cache[t] = v / max(float(np.linalg.norm(v)), 1e-12)
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 1))

    def scores(self, descriptors: list[list[str]], request: str) -> list[np.ndarray]:
        """Per position, each candidate's similarity to ``request``. Descriptors repeat
        (they are words over a few levels), so each distinct one is embedded once."""
        q = self._vectors([request])[0]
        return [self._vectors(d) @ q if d else np.zeros(0) for d in descriptors]


__all__ = [
    "EmbeddingScorer",
    "OptimumUnavailable",
    "StateProfile",
    "agent_descriptors",
    "exact_by_bound",
    "feasible_chain",
    "pareto_front",
    "profile_state",
    "reduced_prepared",
    "reduced_state",
    "topk_exhaustive",
]
