"""SRL rollouts on Ray: rollout workers are Ray actors feeding the one learner.

``xapp-composer train --ray auto|ADDRESS --workers N`` (:class:`RayRollouts`): each worker
(:class:`RolloutWorker`, a Ray actor with one CPU) keeps its own pools of emulator
networks (one per training size, :func:`training_pools`) and random stream; per
iteration the learner broadcasts its weights once (``ray.put``), every worker runs its
share of the iteration's episodes with them, and the learner takes its PPO update on the
returned trajectories, one after the other (a trajectory's candidate columns are those of
its own networks, so parts are not stacked).
``auto`` joins the Ray cluster this process can see (``RAY_ADDRESS``, or one started on
this machine) and otherwise starts a local one; an address (``ray://host:10001`` or
``host:6379``) joins that cluster, as the KubeRay RayJob in ``deploy/ray/`` does.

Ray is an optional dependency (the ``ray`` extra); without ``--ray`` training stays the
single-process loop of :mod:`xapp_composer.train`.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import torch

from xapp_composer.agent import Trajectory, run_episodes
from xapp_composer.configs import TrainConfig
from xapp_composer.episodes import NetworkPool, RequestSet
from xapp_composer.policy import GCNActorCritic, PolicyConfig


class RolloutWorker:
    """Episodes on a worker's own networks with the learner's current weights.

    Args:
        cfg: the training configuration.
        requests: the training requests.
        seed: the worker's seed (its networks and sampling).
    """

    def __init__(self, cfg: TrainConfig, requests: RequestSet, seed: int):
        torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.requests = requests
        self.rng = np.random.default_rng(seed)
        self.pools = training_pools(cfg, self.rng)
        self.policy = GCNActorCritic(
            PolicyConfig(n_elams=len(requests.elam_ids), hidden=cfg.hidden)
        )

    def ready(self) -> bool:
        """True once the worker is built (its networks generated)."""
        return True

    def rollout(self, weights: dict[str, torch.Tensor], episodes: int) -> list[Trajectory]:
        """``episodes`` episodes with ``weights``, tensors kept for the update."""
        self.policy.load_state_dict(weights)
        return rollout(self.cfg, self.policy, self.pools, self.requests, self.rng, episodes)


def training_pools(cfg: TrainConfig, rng: np.random.Generator) -> list[NetworkPool]:
    """One pool of training networks per size of ``cfg.sizes``.

    The pool of the smallest size keeps ``cfg.pool_size`` networks, larger sizes
    proportionally fewer (at least ``cfg.pool_refresh``), so that every pool holds about
    as many agents: a pool stores dense (N, N) arrays per network.
    """
    sizes = cfg.sizes
    return [
        NetworkPool(max(1, cfg.pool_refresh, round(cfg.pool_size * sizes[0] / n)), rng, n_agents=n)
        for n in sizes
    ]


def rollout(
    cfg: TrainConfig,
    policy: GCNActorCritic,
    pools: list[NetworkPool],
    requests: RequestSet,
    rng: np.random.Generator,
    episodes: int,
) -> list[Trajectory]:
    """One iteration's episodes, split evenly over ``pools`` (the single-process loop's
    and every Ray worker's): one trajectory per pool, since the networks of a batch share
    N."""
    parts = []
    for pool, share in zip(pools, np.array_split(np.arange(episodes), len(pools)), strict=True):
        if len(share) == 0:
            continue
        pool.refresh(cfg.pool_refresh)
        s = pool.sample(len(share))
        req = requests.subset(rng.integers(len(requests), size=len(share)))
        traj = run_episodes(
            policy, s, req, mode=cfg.mode, rng=rng, keep_tensors=True,
            step_reward_coef=cfg.step_reward_coef,
        )  # fmt: skip
        parts.append(traj)
    return parts


class RayRollouts:
    """``workers`` :class:`RolloutWorker` actors on a Ray cluster.

    Args:
        cfg: the training configuration (``cfg.ray``: ``auto`` or a cluster address;
            ``cfg.workers``: how many actors).
        requests: the training requests (shipped to every worker once).

    Raises:
        RuntimeError: Ray is not installed (the ``ray`` extra).
    """

    def __init__(self, cfg: TrainConfig, requests: RequestSet):
        try:
            import ray
        except ImportError:
            raise RuntimeError(
                "--ray needs Ray: pip install 'lameta-ric[ray]' (or drop --ray)"
            ) from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            env = {"env_vars": {"PYTHONPATH": os.pathsep.join(_import_roots())}}
            if cfg.ray == "auto":
                try:
                    ray.init(address="auto", runtime_env=env, log_to_driver=False)
                except ConnectionError:  # no cluster to join: one on this machine
                    cpus = max(cfg.workers, os.cpu_count() or 1)
                    ray.init(num_cpus=cpus, runtime_env=env, log_to_driver=False)
            else:
                ray.init(address=cfg.ray, runtime_env=env, log_to_driver=False)
        actor = ray.remote(num_cpus=1)(RolloutWorker)
        shared = ray.put(requests)
        worker_cfg = replace(cfg, init=None)
        self.workers = [
            actor.remote(worker_cfg, shared, cfg.seed * 1000 + 1 + i) for i in range(cfg.workers)
        ]
        # Built (networks generated) before training starts, as the in-process pool is.
        ray.get([w.ready.remote() for w in self.workers])

    def collect(self, policy: GCNActorCritic, episodes: int) -> list[Trajectory]:
        """The iteration's episodes, split over the workers, run with ``policy``'s weights."""
        weights = self.ray.put({k: v.detach().cpu() for k, v in policy.state_dict().items()})
        shares = [len(p) for p in np.array_split(np.arange(episodes), len(self.workers))]
        pairs = zip(self.workers, shares, strict=True)
        calls = [w.rollout.remote(weights, n) for w, n in pairs if n > 0]
        return [part for parts in self.ray.get(calls) for part in parts]

    def close(self) -> None:
        """Stop the actors (and the local Ray this process started)."""
        for w in self.workers:
            self.ray.kill(w)
        if self.started:
            self.ray.shutdown()


def _import_roots() -> list[str]:
    """Where this checkout's packages import from (for workers on this machine)."""
    import xapp_composer

    root = os.path.dirname(os.path.dirname(os.path.abspath(xapp_composer.__file__)))
    return [root, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]


def merged(trajs: list[Trajectory]) -> Trajectory:
    """The per-episode results of several trajectories as one (no tensors: for the
    training curve)."""
    if len(trajs) == 1:
        return trajs[0]
    return Trajectory(
        chains=np.concatenate([t.chains for t in trajs]),
        elam=np.concatenate([t.elam for t in trajs]),
        intent_seen=np.concatenate([t.intent_seen for t in trajs]),
        outcome={k: np.concatenate([t.outcome[k] for t in trajs]) for k in trajs[0].outcome},
        score=np.concatenate([t.score for t in trajs]),
        rewards=np.concatenate([t.rewards for t in trajs], axis=1),
    )
