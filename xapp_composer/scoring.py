"""Evaluation sets and the normalised score (MODEL.md "Evaluation protocol"), batched.

An :class:`EvalSet` fixes networks (seeded) and requests, pairs them, and knows the exact
optimum and the random floor of every pair from the exhaustive search space of each
network, so any method's decisions can be scored the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agentnet.config import DEFAULT, ModelConfig
from agentnet.network import Network
from agentnet.optimum import build_search_space
from xapp_composer.episodes import Conditions, RequestSet, make_network
from xapp_composer.features import BatchState, batch_state


@dataclass
class EvalSet:
    """Networks x requests, with the optimum of every pair.

    Attributes:
        nets: the networks (one state each).
        state: their stacked policy inputs.
        utilities: per network, (F, 4) utilities of its feasible chains.
        requests: the requests.
        net_idx, req_idx: the evaluated pairs.
    """

    nets: list[Network]
    state: BatchState
    utilities: list[np.ndarray]
    requests: RequestSet
    net_idx: np.ndarray
    req_idx: np.ndarray

    @classmethod
    def build(
        cls,
        seeds: Sequence[int],
        requests: RequestSet,
        *,
        cfg: ModelConfig = DEFAULT,
        n_agents: int | None = None,
        cond: Conditions | None = None,
        per_network: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> EvalSet:
        """Every request on every network, or ``per_network`` requests drawn per network."""
        nets = [make_network(int(sd), cfg, n_agents, cond) for sd in seeds]
        utils = []
        for net in nets:
            space = build_search_space(net)
            utils.append(space.utilities[space.feasible])
        if per_network is None:
            ni, ri = np.meshgrid(np.arange(len(nets)), np.arange(len(requests)), indexing="ij")
            ni, ri = ni.ravel(), ri.ravel()
        else:
            rng = rng or np.random.default_rng(0)
            ni = np.repeat(np.arange(len(nets)), per_network)
            ri = rng.integers(len(requests), size=len(ni))
        return cls(nets, batch_state(nets), utils, requests, ni, ri)

    def __len__(self) -> int:
        return len(self.net_idx)

    def pair_state(self) -> BatchState:
        """Policy inputs of every pair."""
        return self.state.take(self.net_idx)

    def pair_requests(self) -> RequestSet:
        """The request of every pair."""
        return self.requests.subset(self.req_idx)

    def bounds(self, fees: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(optimum, random floor) of r_episode per pair: best chain with the cheapest
        E-LAM, and the mean feasible chain with the mean fee (MODEL.md)."""
        fees = self.requests.fees if fees is None else np.asarray(fees)
        opt = np.zeros(len(self))
        rnd = np.zeros(len(self))
        s = self.requests.true_s
        for j in range(len(self.nets)):
            sel = np.flatnonzero(self.net_idx == j)
            if len(sel) == 0:
                continue
            q = self.utilities[j] @ s[self.req_idx[sel]].T  # (F, pairs)
            opt[sel] = 10.0 * q.max(axis=0) - (fees.min() if len(fees) else 0.0)
            rnd[sel] = 10.0 * q.mean(axis=0) - (fees.mean() if len(fees) else 0.0)
        return opt, rnd

    def normalized(self, score: np.ndarray) -> np.ndarray:
        """Normalised score per pair: (score - random) / (optimum - random)."""
        opt, rnd = self.bounds()
        span = opt - rnd
        safe = np.where(span > 1e-12, span, 1.0)
        return np.where(span > 1e-12, (score - rnd) / safe, (score >= opt - 1e-12).astype(float))
