"""Route E[BER] on the serving path, per source and on demand: never an N x N array.

A decision needs the route E[BER] (MODEL.md: the route that minimises
1 - prod(1 - E[BER_e])) only between the candidates of consecutive steps, and, per
candidate, the smallest route E[BER] to any usable agent of the next step (the one-hop
lookahead of :mod:`xapp_composer.features`). :class:`RouteTable` computes the first from
one Dijkstra per source of a few sources (links are undirected, so the candidates of
every other step cover every consecutive pair) and the second from one multi-source
Dijkstra per step; rows are full-length (N,) vectors kept per source, reused by the next
state when its links did not change. The rows kept are bounded (:data:`ROW_BUDGET_BYTES`,
at least :data:`MIN_ROWS`): requests that reach agents outside the prepared candidates
(the proposer's sets) add rows, and the least recently computed ones make room.

Above :data:`MERGE_FROM` agents the Dijkstra runs on the graph whose near-perfect links
(E[BER] below :data:`MERGE_BER`) are contracted: a route's cost is the sum of its links'
-ln(1 - E[BER]), so merging them changes a route E[BER] by at most its number of merged
links times :data:`MERGE_BER` (below 1e-9 absolute on 100,000 agents), while a quarter to
a third of the links of a large network vanish and each Dijkstra runs several times
faster. Up to :data:`MERGE_FROM` agents the routes are exact.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

from agentnet.network import Network

MERGE_FROM = 4096
"""Networks with more agents than this route on the contracted graph."""
MERGE_BER = 1e-12
"""Links with a smaller E[BER] are contracted on large networks."""
ROW_BUDGET_BYTES = 1 << 30
"""Memory the kept route rows may take (8 bytes per agent per row)."""
MIN_ROWS = 512
"""Rows kept whatever the budget (a state's preparation needs about 130)."""


class RouteTable:
    """Route E[BER] rows of one network state, computed per source on demand.

    Args:
        net: the network.
        merge: contract near-perfect links (default: above :data:`MERGE_FROM` agents).
        max_rows: rows kept (default: :data:`ROW_BUDGET_BYTES` worth, at least
            :data:`MIN_ROWS`).
    """

    def __init__(self, net: Network, merge: bool | None = None, max_rows: int | None = None):
        self.n = net.n_agents
        budget = max(MIN_ROWS, ROW_BUDGET_BYTES // (8 * max(self.n, 1)))
        self.max_rows = budget if max_rows is None else max_rows
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {self.max_rows}")
        self.edges = net.edges
        self.link_ber = net.link_ber
        self.merge = self.n > MERGE_FROM if merge is None else merge
        if self.merge:
            near = net.link_ber < MERGE_BER
            e = net.edges
            glue = csr_matrix(
                (np.ones(int(near.sum())), (e[near, 0], e[near, 1])), shape=(self.n, self.n)
            )
            count, self.node = connected_components(glue, directed=False)
            u, v = self.node[e[~near, 0]], self.node[e[~near, 1]]
            w = np.maximum(-np.log1p(-net.link_ber[~near]), np.finfo(float).tiny)
            keep = u != v
            # Parallel links between two contracted nodes: the cheapest one routes.
            order = np.lexsort((w[keep], np.maximum(u, v)[keep], np.minimum(u, v)[keep]))
            a = np.minimum(u, v)[keep][order]
            b = np.maximum(u, v)[keep][order]
            first = np.ones(len(a), dtype=bool)
            first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
            self.graph = csr_matrix(
                (w[keep][order][first], (a[first], b[first])), shape=(count, count)
            )
        else:
            self.node = np.arange(self.n)
            self.graph = net.cost_graph()
        self.rows: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # deciders of several threads share the table

    def _dist(self, nodes: np.ndarray, *, min_only: bool = False) -> np.ndarray:
        d = dijkstra(self.graph, directed=False, indices=nodes, min_only=min_only)
        return np.atleast_2d(d)[:, self.node] if not min_only else d[self.node]

    def compute(self, sources: Iterable[int]) -> None:
        """Compute the rows of ``sources`` not computed yet."""
        self.rows_for(sources)

    def rows_for(self, sources: Iterable[int]) -> dict[int, np.ndarray]:
        """The rows of ``sources`` (computed when missing). The mapping returned holds
        them even if the bound evicts them from the table meanwhile."""
        wanted = {int(s) for s in sources}
        with self._lock:
            have = {s: self.rows[s] for s in wanted if s in self.rows}
            for s in have:
                self.rows.move_to_end(s)
        missing = np.array(sorted(wanted - have.keys()), dtype=np.int64)
        if len(missing):
            dist = self._dist(self.node[missing])
            new = {s: -np.expm1(-d) for s, d in zip(missing.tolist(), dist, strict=True)}
            have.update(new)
            with self._lock:
                self.rows.update(new)
                while len(self.rows) > self.max_rows:
                    self.rows.popitem(last=False)
        return have

    def between(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Route E[BER] (len(src), len(dst)). Uses the rows of ``dst`` (transposed) when
        they are all known and some of ``src``'s are not; else computes ``src``'s rows."""
        src = np.asarray(src, dtype=np.int64).reshape(-1)
        dst = np.asarray(dst, dtype=np.int64).reshape(-1)
        with self._lock:  # decided on the keys as they are; no copy of the key set
            use_dst = any(int(s) not in self.rows for s in src) and all(
                int(t) in self.rows for t in dst
            )
        if use_dst:
            rows = self.rows_for(dst.tolist())
            return np.stack([rows[int(t)][src] for t in dst], axis=1).reshape(len(src), len(dst))
        if len(src) == 0:
            return np.zeros((0, len(dst)))
        rows = self.rows_for(src.tolist())
        return np.stack([rows[int(s)][dst] for s in src])

    def hops(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Route E[BER] (R,) from ``src[i]`` to ``dst[i]``, each pair read as
        :meth:`between` reads one pair: from the source's row when it is known, else from
        the destination's row when that one is known, else from the source's row,
        computed (pairs in order, so a row computed for one pair serves the later ones).
        One pass over the pairs and one gather, rather than a call per pair."""
        src = np.asarray(src, dtype=np.int64).reshape(-1)
        dst = np.asarray(dst, dtype=np.int64).reshape(-1)
        if len(src) == 0:
            return np.zeros(0)
        ends = np.unique(np.concatenate([src, dst])).tolist()
        with self._lock:
            known = {e for e in ends if e in self.rows}
        sides = []
        for a, c in zip(src.tolist(), dst.tolist(), strict=True):
            sides.append(a in known or c not in known)
            if sides[-1]:
                known.add(a)
        from_src = np.array(sides, dtype=bool)
        keys = np.where(from_src, src, dst)
        other = np.where(from_src, dst, src)
        uniq, inverse = np.unique(keys, return_inverse=True)
        rows = self.rows_for(uniq.tolist())
        return np.stack([rows[k] for k in uniq.tolist()])[inverse, other]

    def nearest(self, targets: np.ndarray) -> np.ndarray:
        """Per agent, the smallest route E[BER] to any of ``targets`` (N,); 0.5 for every
        agent when there is no target (the lookahead's value for "no next agent")."""
        targets = np.asarray(targets, dtype=np.int64)
        if len(targets) == 0:
            return np.full(self.n, 0.5)
        d = self._dist(np.unique(self.node[targets]), min_only=True)
        out = -np.expm1(-d)
        return np.where(np.isfinite(d), out, 0.5)

    @classmethod
    def for_network(cls, net: Network, previous: RouteTable | None = None) -> RouteTable:
        """``previous`` itself when it routed the same links (same edges and E[BER]: its
        rows do not depend on the agents), else a new table."""
        if (
            previous is not None
            and previous.n == net.n_agents
            and np.array_equal(previous.edges, net.edges)
            and np.array_equal(previous.link_ber, net.link_ber)
        ):
            return previous
        return cls(net)
