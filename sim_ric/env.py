"""Gymnasium environment: compose one GenSFC per episode and pick the E-LAM (paper sec. V-B).

+-----------------+----------------------------------------------------------------------+
| Observation     | ``Dict``:                                                            |
|                 | ``nodes`` (N, 8) float32: type, available, p_i, L_i (s; +inf where   |
|                 | rho_i >= 1), |O_i|, |F_i|, mu_i, V_i (eq. 33b plus type, availability)|
|                 | ``adjacency`` (N, N) int8: 1 where G has a link                       |
|                 | ``link_ber`` (N, N) float32: E[BER] of each link, 0 elsewhere (33c)  |
|                 | ``intent`` (4,) float32: the vector the chosen E-LAM predicted       |
|                 | (zeros before the E-LAM is chosen)                                   |
|                 | ``app`` Discrete(4): the request's application                       |
|                 | ``text`` (T,) float32 in [0, 1]: cheap features of the request text  |
|                 | ``elam`` Discrete(K + 1): chosen E-LAM, K = none yet                 |
|                 | ``step`` Discrete(n + 2): 0 = choose the E-LAM, k = choose agent k   |
|                 | ``chain`` MultiDiscrete([N + 1] * n): the chain so far, N = empty    |
+-----------------+----------------------------------------------------------------------+
| Action          | ``Discrete(max(N, K))``: at step 0 the E-LAM index, then an agent id. |
|                 | ``info["action_mask"]`` marks the valid actions: existing E-LAMs at  |
|                 | step 0; available agents of the step's type with rho_i < 1 later.    |
+-----------------+----------------------------------------------------------------------+
| Reward          | step 0: 0 (or -delta for an E-LAM index that does not exist);         |
|                 | agent steps: r_step of eq. 34 under the user's TRUE vector; the last |
|                 | step adds r_episode = 10 Q*_s - F(kappa) (eq. 35, MODEL.md).          |
+-----------------+----------------------------------------------------------------------+
| Episode end     | terminated after the n-th agent; never truncated.                    |
+-----------------+----------------------------------------------------------------------+

The user's true vector never appears in the observation; the policy sees only the vector
its chosen E-LAM predicted. Requests come from a :class:`RequestSampler`; by default
synthetic users around the application profiles with per-E-LAM prediction noise. With
``resample_network`` the topology and parameters change at every reset (seeded from the
env's RNG), and conditions vary (arrival rate, crashed agents).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from agentnet import qoe
from agentnet.chain import evaluate_chain, step_indicators
from agentnet.config import DEFAULT, ModelConfig, elam_fee
from agentnet.intents import APP_PROFILES, APPS
from agentnet.network import Network, generate_network

NODE_FEATURES = (
    "type",
    "available",
    "p_success",
    "latency",
    "observations",
    "failures",
    "mu",
    "cv",
)
TEXT_FEATURES = 8

DEFAULT_ELAMS: dict[str, float] = {"minilm": 22.7e6, "smollm2": 134.5e6}
"""E-LAM parameter counts (fee F(kappa) follows from MODEL.md's rate per 100 M)."""


@dataclass(frozen=True)
class EnvRequest:
    """One request as the env needs it.

    Attributes:
        true_s: the user's true vector (scores rewards; never observed).
        app: application index into :data:`~agentnet.intents.APPS`.
        predictions: (K, 4) vector each E-LAM predicts for this prompt.
        text: (TEXT_FEATURES,) cheap features of the prompt, known before translation.
    """

    true_s: np.ndarray
    app: int
    predictions: np.ndarray
    text: np.ndarray


class RequestSampler(Protocol):
    """Anything that draws requests for the env."""

    def sample(self, rng: np.random.Generator) -> EnvRequest:  # pragma: no cover - protocol
        """Draw one request."""
        ...


class SyntheticRequests:
    """Users around the application profiles; E-LAM predictions = truth + noise.

    Args:
        noise: per E-LAM standard deviation of the prediction error (before
            renormalisation); a larger model is usually more accurate.
        concentration: Dirichlet concentration around the application profile.
    """

    def __init__(self, noise: Sequence[float] = (0.08, 0.05), concentration: float = 30.0):
        self.noise = np.asarray(noise, dtype=float)
        self.concentration = concentration

    def sample(self, rng: np.random.Generator) -> EnvRequest:
        app = int(rng.integers(len(APPS)))
        true_s = rng.dirichlet(np.asarray(APP_PROFILES[APPS[app]]) * self.concentration)
        pred = np.clip(
            true_s + rng.normal(0.0, 1.0, (len(self.noise), 4)) * self.noise[:, None], 0, None
        )
        pred = (pred + 1e-6) / (pred + 1e-6).sum(axis=1, keepdims=True)
        text = np.zeros(TEXT_FEATURES)
        text[app] = 1.0
        return EnvRequest(true_s, app, pred, text)


class AgenticNetworkEnv(gym.Env):
    """Compose one chain per episode (see the module docstring for the table).

    Args:
        cfg: model configuration (N, k, chain types, ...).
        objective: ``"weighted"`` (default) or ``"paper"``.
        elams: E-LAM id -> parameter count; fees follow MODEL.md.
        requests: request sampler (default :class:`SyntheticRequests`).
        resample_network: new topology and parameters at every reset.
        vary_conditions: random arrival rate in ``arrival_rate_range`` and crashed agents
            (each with probability ``crash_prob``) at every reset.
        network_seed: seed of the network when not resampling (default 0).
    """

    metadata = {"render_modes": []}  # noqa: RUF012 - gymnasium's class attribute

    def __init__(
        self,
        cfg: ModelConfig = DEFAULT,
        *,
        objective: qoe.Objective = "weighted",
        elams: Mapping[str, float] | None = None,
        requests: RequestSampler | None = None,
        resample_network: bool = True,
        vary_conditions: bool = True,
        arrival_rate_range: tuple[float, float] = (0.5, 1.5),
        crash_prob: float = 0.03,
        network_seed: int = 0,
    ):
        super().__init__()
        if objective not in qoe.OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}")
        self.cfg = cfg
        self.objective = objective
        self.elams = dict(DEFAULT_ELAMS if elams is None else elams)
        if not self.elams:
            raise ValueError("at least one E-LAM is needed")
        self.elam_ids = list(self.elams)
        self.fees = np.array([elam_fee(p, cfg) for p in self.elams.values()])
        self.requests = requests or SyntheticRequests(noise=[0.08] * len(self.elams))
        self.resample_network = resample_network
        self.vary_conditions = vary_conditions
        self.arrival_rate_range = arrival_rate_range
        self.crash_prob = crash_prob
        self.network_seed = network_seed
        n, steps, k = cfg.n_agents, cfg.n_steps, len(self.elams)
        self.n_actions = max(n, k)
        self.observation_space = spaces.Dict(
            {
                "nodes": spaces.Box(0.0, np.inf, (n, len(NODE_FEATURES)), np.float32),
                "adjacency": spaces.Box(0, 1, (n, n), np.int8),
                "link_ber": spaces.Box(0.0, 0.5, (n, n), np.float32),
                "intent": spaces.Box(0.0, 1.0, (4,), np.float32),
                "app": spaces.Discrete(len(APPS)),
                "text": spaces.Box(0.0, 1.0, (TEXT_FEATURES,), np.float32),
                "elam": spaces.Discrete(k + 1),
                "step": spaces.Discrete(steps + 2),
                "chain": spaces.MultiDiscrete([n + 1] * steps),
            }
        )
        self.action_space = spaces.Discrete(self.n_actions)
        self.net: Network | None = None

    # ---- episode state -----------------------------------------------------------------
    def _new_network(self, options: dict) -> Network:
        if "network" in options:
            return options["network"]
        if "network_seed" in options:
            seed = int(options["network_seed"])
        elif self.resample_network:
            seed = int(self.np_random.integers(2**31 - 1))
        else:
            seed = self.network_seed
        net = generate_network(seed, self.cfg)
        if self.vary_conditions:
            net.set_arrival_rate(float(self.np_random.uniform(*self.arrival_rate_range)))
            crashed = self.np_random.random(net.n_agents) < self.crash_prob
            net.available = ~crashed
        return net

    def _static_obs(self, net: Network) -> None:
        n = net.n_agents
        nodes = np.stack(
            [
                net.types.astype(float),
                net.available.astype(float),
                net.p_success,
                net.agent_latency(),
                net.observations,
                net.failures,
                net.mu,
                net.cv,
            ],
            axis=1,
        ).astype(np.float32)
        adjacency = np.zeros((n, n), dtype=np.int8)
        ber = np.zeros((n, n), dtype=np.float32)
        u, v = net.edges[:, 0], net.edges[:, 1]
        adjacency[u, v] = adjacency[v, u] = 1
        ber[u, v] = ber[v, u] = net.link_ber
        self._nodes, self._adjacency, self._ber = nodes, adjacency, ber

    def _obs(self) -> dict[str, Any]:
        steps = self.cfg.n_steps
        chain = np.full(steps, self.cfg.n_agents, dtype=np.int64)
        chain[: len(self.chain)] = self.chain
        intent = (
            np.zeros(4, np.float32) if self.kappa is None else self.intent_seen.astype(np.float32)
        )
        return {
            # Copies: gymnasium requires fresh data on every call (callers may keep it).
            "nodes": self._nodes.copy(),
            "adjacency": self._adjacency.copy(),
            "link_ber": self._ber.copy(),
            "intent": intent,
            "app": int(self.request.app),
            "text": self.request.text.astype(np.float32),
            "elam": len(self.elams) if self.kappa is None else self.kappa,
            "step": self.t,
            "chain": chain,
        }

    def action_mask(self) -> np.ndarray:
        """Valid actions now: E-LAM indices at step 0, usable agents of the step's type later."""
        mask = np.zeros(self.n_actions, dtype=bool)
        if self.t == 0:
            mask[: len(self.elams)] = True
        elif self.t <= self.cfg.n_steps:
            step_type = self.cfg.chain_types[self.t - 1]
            mask[self.net.agents_of_type(step_type, usable=True)] = True
        return mask

    def _info(self) -> dict[str, Any]:
        return {"action_mask": self.action_mask(), "network_seed": self.net.seed}

    # ---- gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode: new request (and network, if resampling).

        Options:
            ``network``: a :class:`Network` to use as is; ``network_seed``: generate
            this one; ``request``: an :class:`EnvRequest` to serve.
        """
        super().reset(seed=seed)
        options = options or {}
        self.net = self._new_network(options)
        if self.net.n_agents != self.cfg.n_agents:
            raise ValueError(
                f"network has {self.net.n_agents} agents, env expects {self.cfg.n_agents}"
            )
        self._static_obs(self.net)
        self.request = options.get("request") or self.requests.sample(self.np_random)
        self.t = 0
        self.kappa: int | None = None
        self.intent_seen = np.zeros(4)
        self.chain: list[int] = []
        return self._obs(), self._info()

    def step(self, action: int):
        """Apply one action (see the module docstring)."""
        if self.net is None:
            raise RuntimeError("call reset() before step()")
        if self.t > self.cfg.n_steps:
            raise RuntimeError("episode is over; call reset()")
        action = int(action)
        info: dict[str, Any] = {}
        true_s = np.asarray(self.request.true_s, dtype=float)
        if self.t == 0:
            reward = 0.0
            if not 0 <= action < len(self.elams):
                reward, action = -self.cfg.delta, 0
            self.kappa = action
            self.intent_seen = np.asarray(self.request.predictions[action], dtype=float)
            self.t = 1
            terminated = False
        else:
            step_type = self.cfg.chain_types[self.t - 1]
            pred = self.chain[-1] if self.chain else None
            if not 0 <= action < self.net.n_agents:
                raise ValueError(f"agent {action} out of range [0, {self.net.n_agents})")
            ind = step_indicators(self.net, step_type, pred, np.array([action]))[0]
            ok = bool(self.net.types[action] == step_type and self.net.available[action])
            reward = qoe.step_reward(ok, true_s, ind, self.cfg.delta)
            self.chain.append(action)
            self.t += 1
            terminated = self.t > self.cfg.n_steps
            if terminated:
                result = evaluate_chain(
                    self.net,
                    self.chain,
                    true_s,
                    objective=self.objective,
                    fee=float(self.fees[self.kappa]),
                )
                reward += result.r_episode
                info["result"] = result
                info["elam"] = self.elam_ids[self.kappa]
        info.update(self._info())
        return self._obs(), float(reward), terminated, False, info
