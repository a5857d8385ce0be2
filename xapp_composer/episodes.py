"""Batched episodes for SRL training and evaluation: networks, requests and rewards.

The Gymnasium env (:mod:`sim_ric.env`) is the reference contract; this module runs B
episodes at once on stacked arrays (:class:`~xapp_composer.features.BatchState`) so that
training sees hundreds of thousands of episodes within the time budget. Its rewards are
tested against :func:`agentnet.chain.evaluate_chain` (same equations, same numbers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import pdtrc

from agentnet import qoe
from agentnet.config import DEFAULT, ModelConfig, elam_fee
from agentnet.intents import APPS, LabelledIntent
from agentnet.network import Network, generate_network
from xapp_composer.features import BatchState, batch_state, text_features
from xapp_composer.steps import Prefix


# ---- requests --------------------------------------------------------------------------------
@dataclass
class RequestSet:
    """Requests with their true vectors and each E-LAM's (cached) prediction.

    Attributes:
        true_s: (M, 4) labels (rewards only).
        app: (M,) application index.
        text: (M, TEXT_DIM) cheap text features.
        preds: (M, K, 4) predicted vector of each E-LAM.
        elam_ids: the K E-LAM ids.
        fees: (K,) F(kappa).
        prompts: the M prompts.
    """

    true_s: np.ndarray
    app: np.ndarray
    text: np.ndarray
    preds: np.ndarray
    elam_ids: list[str]
    fees: np.ndarray
    prompts: list[str]

    def __len__(self) -> int:
        return len(self.true_s)

    @classmethod
    def from_intents(
        cls,
        intents: Sequence[LabelledIntent],
        predictions: Mapping[str, np.ndarray],
        n_params: Mapping[str, float],
        cfg: ModelConfig = DEFAULT,
    ) -> RequestSet:
        """Build from labelled intents and per-E-LAM predictions (M, 4) in the same order."""
        ids = list(predictions)
        preds = np.stack([np.asarray(predictions[k], dtype=float) for k in ids], axis=1)
        if preds.shape != (len(intents), len(ids), 4):
            raise ValueError(f"predictions shape {preds.shape} does not match the intents")
        return cls(
            true_s=np.array([i.s for i in intents], dtype=float),
            app=np.array([APPS.index(i.app) for i in intents]),
            text=np.stack([text_features(i.prompt) for i in intents]),
            preds=preds,
            elam_ids=ids,
            fees=np.array([elam_fee(n_params[k], cfg) for k in ids]),
            prompts=[i.prompt for i in intents],
        )

    def subset(self, idx: np.ndarray) -> RequestSet:
        """The requests at ``idx``."""
        return RequestSet(
            self.true_s[idx],
            self.app[idx],
            self.text[idx],
            self.preds[idx],
            list(self.elam_ids),
            self.fees,
            [self.prompts[i] for i in idx],
        )


def synthetic_predictions(true_s: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Truth plus Gaussian noise, clipped and renormalised (a stand-in E-LAM)."""
    p = np.clip(true_s + rng.normal(0.0, noise, true_s.shape), 1e-3, None)
    return p / p.sum(axis=-1, keepdims=True)


# ---- networks --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Conditions:
    """How conditions vary between training episodes."""

    arrival_rate: tuple[float, float] = (0.6, 1.4)
    crash_prob: float = 0.03
    shadowing_jitter_db: float = 1.0


def make_network(
    seed: int, cfg: ModelConfig, n_agents: int | None, cond: Conditions | None
) -> Network:
    """A generated network, with randomised conditions when ``cond`` is given."""
    net = generate_network(seed, cfg, n_agents=n_agents)
    if cond is not None:
        rng = np.random.default_rng([seed, 7])
        net.set_arrival_rate(float(rng.uniform(*cond.arrival_rate)))
        net.available = rng.random(net.n_agents) >= cond.crash_prob
        if cond.shadowing_jitter_db > 0:
            net.set_shadowing(
                net.shadowing_db + rng.normal(0, cond.shadowing_jitter_db, net.n_links)
            )
    return net


class NetworkPool:
    """A pool of training networks, refreshed a few at a time.

    Args:
        size: networks kept.
        rng: source of network seeds (drawn above ``seed_floor`` so training never sees
            the evaluation seeds).
    """

    def __init__(
        self,
        size: int,
        rng: np.random.Generator,
        cfg: ModelConfig = DEFAULT,
        n_agents: int | None = None,
        cond: Conditions | None = Conditions(),
        seed_floor: int = 1_000_000,
    ):
        self.rng, self.cfg, self.n_agents, self.cond = rng, cfg, n_agents, cond
        self.seed_floor = seed_floor
        self.state = batch_state([self._new() for _ in range(size)])

    def _new(self) -> Network:
        seed = int(self.rng.integers(self.seed_floor, 2**31 - 1))
        return make_network(seed, self.cfg, self.n_agents, self.cond)

    def refresh(self, count: int) -> None:
        """Replace ``count`` random networks by new ones."""
        if count <= 0:
            return
        fresh = batch_state([self._new() for _ in range(count)])
        idx = self.rng.choice(self.state.batch, size=count, replace=False)
        for name, value in fresh.__dict__.items():
            if isinstance(value, np.ndarray):
                getattr(self.state, name)[idx] = value

    def sample(self, batch: int) -> BatchState:
        """B states drawn with replacement."""
        return self.state.take(self.rng.integers(self.state.batch, size=batch))


# ---- rewards (eqs. 34, 35) ------------------------------------------------------------------------
def _minmax(values: np.ndarray, valid: np.ndarray, chosen: np.ndarray, higher: bool) -> np.ndarray:
    b = np.arange(len(chosen))
    lo = np.where(valid, values, np.inf).min(axis=1)
    hi = np.where(valid, values, -np.inf).max(axis=1)
    v = values[b, chosen]
    span = hi - lo
    flat = ~(span > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.clip((v - lo) / np.where(flat, 1.0, span), 0.0, 1.0)
    x = x if higher else 1.0 - x
    return np.where(flat, np.where(np.isfinite(v), 1.0, 0.0), np.where(np.isfinite(v), x, 0.0))


def step_rewards(
    s: BatchState, prefix: Prefix, agent: np.ndarray, true_s: np.ndarray, delta: float
) -> np.ndarray:
    """r_step of eq. 34 for appending ``agent`` (B,) to each prefix, under the TRUE vector.

    Min-max over the available agents of the step's type (MODEL.md; unstable agents are
    left out of the latency min-max and get I(L) = 0).
    """
    n = len(s.chain_types)
    b = np.arange(s.batch)
    k = np.minimum(prefix.step, n - 1)
    cset = s.step_set[b, k, :]
    hop = np.where((prefix.last >= 0)[:, None], s.route[b, np.maximum(prefix.last, 0), :], 0.0)
    ind = np.stack(
        [
            _minmax(s.p, cset, agent, True),
            _minmax(hop, cset, agent, False),
            _minmax(s.lat, cset & np.isfinite(s.lat), agent, False),
            _minmax(s.outage, cset, agent, False),
        ],
        axis=1,
    )
    ok = s.step_set[b, k, agent]
    return np.where(ok, delta, -delta) + np.einsum("bk,bk->b", ind, true_s)


def chain_outcome(s: BatchState, prefix: Prefix) -> dict[str, np.ndarray]:
    """Factors (eqs. 2-14), feasibility and utilities of complete chains."""
    cfg = s.cfg
    n = len(s.chain_types)
    C = np.exp(prefix.logp) / n
    B = -np.expm1(prefix.keep)
    L = prefix.lat
    P = 1.0 - np.exp(prefix.lnc) * (1.0 - pdtrc(np.floor(np.minimum(prefix.mu, 1e9)), s.lam))
    with np.errstate(invalid="ignore"):
        feasible = np.isfinite(L) & (cfg.c_th <= C) & (cfg.l_max >= L)
    Q = qoe.objective_qoe(C, B, L, P, cfg.c_th)
    u = qoe.utilities(C, B, L, P, cfg)
    return {"C": C, "B": B, "L": L, "P_outage": P, "Q": Q, "feasible": feasible, "u": u}


def episode_scores(outcome: dict, true_s: np.ndarray, fee: np.ndarray) -> np.ndarray:
    """r_episode = 10 Q*_s - F(kappa) under the TRUE vector (eq. 35, MODEL.md `weighted`)."""
    q = np.where(outcome["feasible"], np.einsum("bk,bk->b", outcome["u"], true_s), -1.0)
    return 10.0 * q - fee
