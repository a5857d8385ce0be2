"""Agentic-network generation (MODEL.md "Network", "Per-agent quantities", "Per-link quantity").

A :class:`Network` holds per-agent arrays (one entry per agent) and per-link arrays (one
entry per undirected edge of G). It is mutable only through the few methods the dynamics
use (shadowing, arrival rate, crashes), which keep the derived caches consistent.

Route BER between two agents (the BER_j of eq. 3) is the BER of the route that loses
least. It is computed per source on demand with Dijkstra and cached per source; for small
networks all rows are computed in one call. An N x N matrix is never built beyond
``DENSE_ROUTE_LIMIT`` agents.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree
from scipy.special import erfc

from agentnet.config import ALPHA1, ALPHA2, DEFAULT, ETA, L0, ZETA, ModelConfig

DENSE_ROUTE_LIMIT = 2048
"""Up to this many agents, route BER rows of all sources are computed in one Dijkstra call."""

ROUTE_CACHE_ROWS = 4096
"""Per-source route rows kept (LRU) for larger networks."""


# --------------------------------------------------------------------------------------
# Per-agent equations
# --------------------------------------------------------------------------------------
def optimal_params_tokens(compute: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compute-optimal parameter and token counts (eq. 1b, 1c).

    Args:
        compute: compute budgets C_i in FLOPs, any shape.

    Returns:
        ``(N_OP, D_OP)`` of the same shape.
    """
    s = ALPHA1 + ALPHA2
    c6 = np.asarray(compute, dtype=float) / 6.0
    n_op = (ALPHA1 * ZETA / (ALPHA2 * ETA)) ** (1.0 / s) * c6 ** (ALPHA2 / s)
    d_op = (ALPHA2 * ETA / (ALPHA1 * ZETA)) ** (1.0 / s) * c6 ** (ALPHA1 / s)
    return n_op, d_op


def pretraining_loss(n_op: np.ndarray, d_op: np.ndarray) -> np.ndarray:
    """Pre-training loss L_pre (eq. 1a) with L_0 = 0."""
    return L0 + ZETA / np.power(n_op, ALPHA1) + ETA / np.power(d_op, ALPHA2)


def success_probability(compute: np.ndarray) -> np.ndarray:
    """p_i = exp(-L_pre,i) of an agent with compute budget C_i (eqs. 1, 2)."""
    n_op, d_op = optimal_params_tokens(compute)
    return np.exp(-pretraining_loss(n_op, d_op))


def service_rate(n_params: np.ndarray, speed: np.ndarray, cfg: ModelConfig = DEFAULT) -> np.ndarray:
    """mu_i = 1 / E[S_i] with E[S_i] = t0 (N_OP / 1e9)^gamma / h_i (MODEL.md)."""
    mean_service = cfg.t0 * np.power(np.asarray(n_params) / 1e9, cfg.gamma) / np.asarray(speed)
    return 1.0 / mean_service


def link_ber_from_snr_db(snr_db: np.ndarray) -> np.ndarray:
    """E[BER] of BPSK over AWGN: 0.5 * erfc(sqrt(snr)), snr linear (MODEL.md)."""
    return 0.5 * erfc(np.sqrt(np.power(10.0, np.asarray(snr_db) / 10.0)))


def link_snr_db(
    length: np.ndarray, ref_length: float, shadowing_db: np.ndarray, cfg: ModelConfig = DEFAULT
) -> np.ndarray:
    """Log-distance SNR of a link, clipped (MODEL.md): 7 - 30 log10(d / d_ref) + shadowing."""
    d = np.maximum(np.asarray(length, dtype=float), 1e-12)
    snr = cfg.snr_at_ref_db - cfg.path_loss_slope_db * np.log10(d / ref_length) + shadowing_db
    return np.clip(snr, *cfg.snr_clip_db)


# --------------------------------------------------------------------------------------
# Topology
# --------------------------------------------------------------------------------------
def knn_edges(points: np.ndarray, k: int) -> np.ndarray:
    """Undirected edges joining each point to its k nearest neighbours, as sorted (u < v) pairs."""
    n = len(points)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    kk = min(k, n - 1)
    _, idx = cKDTree(points).query(points, k=kk + 1)
    u = np.repeat(np.arange(n), kk)
    v = idx[:, 1:].reshape(-1)
    pairs = np.stack([np.minimum(u, v), np.maximum(u, v)], axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0)


def connecting_edges(points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The fewest, shortest extra edges that make the graph connected (MODEL.md).

    This is the minimum spanning tree of the component graph (component distance = the
    shortest point-to-point distance between components), found with Boruvka rounds:
    each component's shortest outgoing edge is always in that tree.
    """
    n = len(points)
    adj = csr_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    n_comp, labels = connected_components(adj, directed=False)
    extra: list[tuple[int, int]] = []
    while n_comp > 1:
        candidates: set[tuple[float, int, int]] = set()
        for c in range(n_comp):
            inside = np.flatnonzero(labels == c)
            outside = np.flatnonzero(labels != c)
            dist, j = cKDTree(points[outside]).query(points[inside])
            best = int(np.argmin(dist))
            p, q = int(inside[best]), int(outside[j[best]])
            candidates.add((float(dist[best]), min(p, q), max(p, q)))
        parent = list(range(n_comp))

        def find(a: int, parent: list[int] = parent) -> int:
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        for _, p, q in sorted(candidates):
            a, b = find(labels[p]), find(labels[q])
            if a != b:
                parent[a] = b
                extra.append((p, q))
        all_edges = np.concatenate([edges, np.asarray(extra, dtype=np.int64).reshape(-1, 2)])
        adj = csr_matrix(
            (np.ones(len(all_edges)), (all_edges[:, 0], all_edges[:, 1])), shape=(n, n)
        )
        n_comp, labels = connected_components(adj, directed=False)
    return np.asarray(extra, dtype=np.int64).reshape(-1, 2)


# --------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------
@dataclass
class Network:
    """One agentic network: agents, the graph G and its link qualities.

    Per-agent arrays have shape (N,), per-link arrays shape (E,). Agent ids are 0-based
    indices; service types are 1-based.
    """

    cfg: ModelConfig
    seed: int
    types: np.ndarray
    cloud: np.ndarray
    x: np.ndarray
    y: np.ndarray
    compute: np.ndarray
    speed: np.ndarray
    n_params: np.ndarray
    p_success: np.ndarray
    mu: np.ndarray
    cv: np.ndarray
    observations: np.ndarray
    failures: np.ndarray
    available: np.ndarray
    edges: np.ndarray
    length: np.ndarray
    ref_length: float
    shadowing_db: np.ndarray
    arrival_rate: float
    link_ber: np.ndarray = field(init=False)
    _routes: OrderedDict[int, np.ndarray] = field(init=False, repr=False)
    _dense: np.ndarray | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._routes = OrderedDict()
        self._dense = None
        self._update_link_ber()

    # ---- sizes and derived per-agent quantities ------------------------------------
    @property
    def n_agents(self) -> int:
        """N."""
        return len(self.types)

    @property
    def n_links(self) -> int:
        """|E|."""
        return len(self.edges)

    @property
    def outage_rate(self) -> np.ndarray:
        """|F_i| / |O_i| (eq. 9)."""
        return self.failures / self.observations

    def utilization(self, arrival_rate: float | None = None) -> np.ndarray:
        """rho_i = lambda / mu_i (eq. 4)."""
        lam = self.arrival_rate if arrival_rate is None else arrival_rate
        return lam / self.mu

    def agent_latency(self, arrival_rate: float | None = None) -> np.ndarray:
        """L_i of eq. 7 per agent; +inf where rho_i >= 1."""
        from agentnet.qoe import agent_latency

        lam = self.arrival_rate if arrival_rate is None else arrival_rate
        return agent_latency(lam, self.mu, self.cv)

    def tiers(self) -> list[str]:
        """ "cloud" or "edge" per agent."""
        return ["cloud" if c else "edge" for c in self.cloud]

    def agents_of_type(self, service_type: int, *, usable: bool = False) -> np.ndarray:
        """Ids of the agents of a type; with ``usable``, only available ones with rho_i < 1."""
        mask = self.types == service_type
        if usable:
            mask &= self.available & (self.utilization() < 1.0)
        return np.flatnonzero(mask)

    # ---- links and routes -----------------------------------------------------------
    def _update_link_ber(self) -> None:
        snr = link_snr_db(self.length, self.ref_length, self.shadowing_db, self.cfg)
        self.link_ber = link_ber_from_snr_db(snr)
        self._routes.clear()
        self._dense = None

    def set_shadowing(self, shadowing_db: np.ndarray) -> None:
        """Replace the per-link shadowing (dB) and recompute E[BER] (dynamics)."""
        shadowing_db = np.asarray(shadowing_db, dtype=float)
        if shadowing_db.shape != self.length.shape:
            raise ValueError(f"shadowing shape {shadowing_db.shape} != {self.length.shape}")
        self.shadowing_db = shadowing_db
        self._update_link_ber()

    def set_link_ber(self, link_ber: np.ndarray) -> None:
        """Set observed per-link E[BER] directly (a network rebuilt from a state message)."""
        link_ber = np.asarray(link_ber, dtype=float)
        if link_ber.shape != (self.n_links,):
            raise ValueError(f"link_ber shape {link_ber.shape} != ({self.n_links},)")
        if np.any(~np.isfinite(link_ber)) or np.any(link_ber < 0) or np.any(link_ber >= 1):
            raise ValueError("link E[BER] must lie in [0, 1)")
        self.link_ber = link_ber
        self._routes.clear()
        self._dense = None

    def cost_graph(self) -> csr_matrix:
        """The links as a sparse (N, N) matrix of route costs -ln(1 - E[BER]), one entry per
        link (read as undirected)."""
        # -ln(1 - BER) per edge: the route minimising the sum minimises 1 - prod(1 - BER).
        # Floored at the smallest normal float so that scipy keeps near-perfect links.
        w = np.maximum(-np.log1p(-self.link_ber), np.finfo(float).tiny)
        n = self.n_agents
        return csr_matrix((w, (self.edges[:, 0], self.edges[:, 1])), shape=(n, n))

    def route_ber_from(self, source: int) -> np.ndarray:
        """Route E[BER] from ``source`` to every agent, shape (N,) (MODEL.md)."""
        if self._dense is not None or (
            self.n_agents <= DENSE_ROUTE_LIMIT and source not in self._routes
        ):
            return self._dense_routes()[source]
        row = self._routes.get(source)
        if row is None:
            dist = dijkstra(self.cost_graph(), directed=False, indices=source)
            row = -np.expm1(-dist)
            self._routes[source] = row
            if len(self._routes) > ROUTE_CACHE_ROWS:
                self._routes.popitem(last=False)
        else:
            self._routes.move_to_end(source)
        return row

    def route_ber(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Route E[BER] matrix between ``sources`` (rows) and ``targets`` (columns)."""
        sources = np.asarray(sources, dtype=np.int64)
        targets = np.asarray(targets, dtype=np.int64)
        unique = np.unique(sources)
        # All pairs in one call when most rows are wanted anyway; else only the sources.
        if self._dense is not None or (
            self.n_agents <= DENSE_ROUTE_LIMIT and 2 * len(unique) >= self.n_agents
        ):
            return self._dense_routes()[np.ix_(sources, targets)]
        missing = [int(s) for s in unique if int(s) not in self._routes]
        if missing:
            dist = dijkstra(self.cost_graph(), directed=False, indices=missing)
            for s, d in zip(missing, np.atleast_2d(dist), strict=True):
                self._routes[s] = -np.expm1(-d)
        rows = np.stack([self.route_ber_from(int(s)) for s in sources]) if len(sources) else None
        if rows is None:
            return np.zeros((0, len(targets)))
        return rows[:, targets]

    def _dense_routes(self) -> np.ndarray:
        if self._dense is None:
            dist = dijkstra(self.cost_graph(), directed=False)
            self._dense = -np.expm1(-dist)
        return self._dense

    # ---- dynamics hooks ---------------------------------------------------------------
    def set_arrival_rate(self, arrival_rate: float) -> None:
        """Set lambda (req/s per chain)."""
        if not np.isfinite(arrival_rate) or arrival_rate <= 0:
            raise ValueError(f"arrival rate must be positive and finite, got {arrival_rate}")
        self.arrival_rate = float(arrival_rate)

    def copy(self) -> Network:
        """A deep copy (arrays copied, caches rebuilt lazily)."""
        return Network(
            cfg=self.cfg,
            seed=self.seed,
            types=self.types.copy(),
            cloud=self.cloud.copy(),
            x=self.x.copy(),
            y=self.y.copy(),
            compute=self.compute.copy(),
            speed=self.speed.copy(),
            n_params=self.n_params.copy(),
            p_success=self.p_success.copy(),
            mu=self.mu.copy(),
            cv=self.cv.copy(),
            observations=self.observations.copy(),
            failures=self.failures.copy(),
            available=self.available.copy(),
            edges=self.edges.copy(),
            length=self.length.copy(),
            ref_length=self.ref_length,
            shadowing_db=self.shadowing_db.copy(),
            arrival_rate=self.arrival_rate,
        )

    # ---- serialisation --------------------------------------------------------------
    def to_dict(self) -> dict:
        """The JSON rendering of ``sim-ric export-network``."""
        agents = [
            {
                "id": i,
                "type": int(self.types[i]),
                "tier": "cloud" if self.cloud[i] else "edge",
                "x": float(self.x[i]),
                "y": float(self.y[i]),
                "compute_flops": float(self.compute[i]),
                "n_params": float(self.n_params[i]),
                "p_success": float(self.p_success[i]),
                "mu": float(self.mu[i]),
                "cv": float(self.cv[i]),
                "observations": float(self.observations[i]),
                "failures": float(self.failures[i]),
                "available": bool(self.available[i]),
            }
            for i in range(self.n_agents)
        ]
        links = [
            {"u": int(u), "v": int(v), "ber": float(b)}
            for (u, v), b in zip(self.edges, self.link_ber, strict=True)
        ]
        return {
            "seed": self.seed,
            "agents": agents,
            "links": links,
            "arrival_rate": self.arrival_rate,
            "c_th": self.cfg.c_th,
            "l_max": self.cfg.l_max,
        }


def generate_network(seed: int, cfg: ModelConfig = DEFAULT, n_agents: int | None = None) -> Network:
    """Generate a network exactly as MODEL.md describes, reproducibly from ``seed``.

    Draw order (fixed, so a seed always gives the same network): tier, angle, radius,
    compute budget, hardware speed, outage rate, coefficient of variation, link
    shadowing.

    Args:
        seed: seed of the numpy Generator.
        cfg: model configuration.
        n_agents: overrides ``cfg.n_agents``.

    Returns:
        The network.
    """
    n = cfg.n_agents if n_agents is None else int(n_agents)
    if n < len(cfg.chain_types) or n < cfg.n_types:
        raise ValueError(f"need at least {max(cfg.n_types, len(cfg.chain_types))} agents, got {n}")
    rng = np.random.default_rng(seed)
    types = np.arange(n) % cfg.n_types + 1
    cloud = rng.random(n) < cfg.cloud.p
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    radius = np.where(cloud, rng.uniform(*cfg.cloud.radius, n), rng.uniform(*cfg.edge.radius, n))
    x = 0.5 + radius * np.cos(angle)
    y = 0.5 + radius * np.sin(angle)

    def per_tier(draw_cloud: np.ndarray, draw_edge: np.ndarray) -> np.ndarray:
        return np.where(cloud, draw_cloud, draw_edge)

    log_c = per_tier(
        rng.uniform(*np.log10(cfg.cloud.compute), n), rng.uniform(*np.log10(cfg.edge.compute), n)
    )
    compute = np.power(10.0, log_c)
    speed = per_tier(rng.uniform(*cfg.cloud.speed, n), rng.uniform(*cfg.edge.speed, n))
    outage = per_tier(rng.beta(*cfg.cloud.outage_beta, n), rng.beta(*cfg.edge.outage_beta, n))
    cv = rng.uniform(*cfg.cv_range, n)

    n_params, _ = optimal_params_tokens(compute)
    p_success = success_probability(compute)
    mu = service_rate(n_params, speed, cfg)
    observations = np.full(n, cfg.observations)
    # |F_i| keeps the drawn rate exactly (an expected count, not rounded): rounding would
    # zero the outage of a fifth of the cloud agents and change the table's distribution.
    failures = outage * observations

    points = np.stack([x, y], axis=1)
    edges = knn_edges(points, cfg.k_neighbours)
    extra = connecting_edges(points, edges)
    if len(extra):
        edges = np.unique(np.concatenate([edges, np.sort(extra, axis=1)]), axis=0)
    length = np.linalg.norm(points[edges[:, 0]] - points[edges[:, 1]], axis=1)
    ref_length = float(np.median(length)) if len(length) else 1.0
    shadowing = rng.normal(0.0, cfg.shadowing_db, len(edges))
    return Network(
        cfg=cfg,
        seed=int(seed),
        types=types,
        cloud=cloud,
        x=x,
        y=y,
        compute=compute,
        speed=speed,
        n_params=n_params,
        p_success=p_success,
        mu=mu,
        cv=cv,
        observations=observations,
        failures=failures,
        available=np.ones(n, dtype=bool),
        edges=edges,
        length=length,
        ref_length=ref_length,
        shadowing_db=shadowing,
        arrival_rate=cfg.arrival_rate,
    )
