"""SRL training on Ray: rollout workers are Ray actors feeding the one learner.

``xapp-composer train --ray auto|ADDRESS --workers N`` (:class:`RayRollouts`): each worker
(:class:`RolloutWorker`, a Ray actor with one CPU and one torch thread) keeps its share
of the pool of emulator networks and its own random stream. In an iteration every worker
runs its share of the episodes and keeps them, tensors included, where they were made;
only the per-episode results come back (numpy, for the training curve).

The PPO update (:mod:`xapp_composer.ppo`) is then sharded as in DD-PPO and RLlib's
multiple learners, because the update, not the rollout, is most of an iteration (on
this machine 0.25 s against 0.07 s for 256 episodes): for each minibatch step the learner
sends its parameters (one flat float32 array, ``ray.put`` once), each worker returns the
gradient of its shard of the minibatch (one flat array), and the learner takes the
row-count-weighted mean, clips it and takes the Adam step. Shards normalise advantages
with the whole minibatch's pooled moments, so a step equals the single-process step on
the union of the shards; every gradient is taken at the learner's current weights, so
there is no policy lag. The next iteration's rollouts start as soon as the last step's
weights are sent, and run while the learner writes its curve and validates. Rolling out
during the update instead (IMPALA-style, with one iteration of lag left to PPO's ratio
clipping) would gain nothing: the workers are the ones computing the update.

``auto`` joins the Ray cluster this process can see (``RAY_ADDRESS``, or one started on
this machine) and otherwise starts a local one; an address (``ray://host:10001`` or
``host:6379``) joins that cluster, as the KubeRay RayJob in ``deploy/ray/`` does. Ray is
an optional dependency (the ``ray`` extra); without ``--ray`` training stays the
single-process loop of :mod:`xapp_composer.train`.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from xapp_composer.agent import Trajectory, run_episodes
from xapp_composer.configs import TrainConfig
from xapp_composer.episodes import NetworkPool, RequestSet
from xapp_composer.policy import GCNActorCritic, PolicyConfig
from xapp_composer.ppo import STATS, advantages, minibatch_loss, minibatches, moments, pooled


def rollout(
    cfg: TrainConfig,
    policy: GCNActorCritic,
    pool: NetworkPool,
    requests: RequestSet,
    rng: np.random.Generator,
    episodes: int,
    refresh: int | None = None,
) -> Trajectory:
    """One iteration's episodes on ``pool``'s networks (the single-process loop's and
    every Ray worker's), after replacing ``refresh`` of them (default
    ``cfg.pool_refresh``)."""
    pool.refresh(cfg.pool_refresh if refresh is None else refresh)
    s = pool.sample(episodes)
    req = requests.subset(rng.integers(len(requests), size=episodes))
    return run_episodes(
        policy, s, req, mode=cfg.mode, rng=rng, keep_tensors=True,
        step_reward_coef=cfg.step_reward_coef,
    )  # fmt: skip


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


def rollout_sizes(
    cfg: TrainConfig,
    policy: GCNActorCritic,
    pools: list[NetworkPool],
    requests: RequestSet,
    rng: np.random.Generator,
    episodes: int,
) -> list[Trajectory]:
    """One iteration's episodes split evenly over ``pools`` (one per training size): one
    trajectory per pool, since the networks of a batch share N."""
    shares = np.array_split(np.arange(episodes), len(pools))
    return [
        rollout(cfg, policy, pool, requests, rng, len(share))
        for pool, share in zip(pools, shares, strict=True)
        if len(share)
    ]


def flat_parameters(policy: GCNActorCritic) -> np.ndarray:
    """Every parameter of ``policy`` in one float32 array (what crosses the wire)."""
    return torch.nn.utils.parameters_to_vector(policy.parameters()).detach().numpy()


def steps_per_epoch(cfg: TrainConfig) -> int:
    """Minibatch steps per PPO epoch, as the single-process update takes them."""
    return max(1, cfg.batch_episodes // cfg.minibatch_episodes)


class RolloutWorker:
    """Episodes on a worker's own networks, and the gradients of its shard of each
    minibatch.

    The workers share the training pool out between them: each holds ``pool_size`` of the
    run's networks and replaces ``refresh`` per iteration on average (the run's
    ``pool_refresh`` divided by the workers, rounded at random), so the run's pool and its
    turnover are those of the single-process loop however many workers there are.

    Args:
        cfg: the training configuration.
        requests: the training requests.
        seed: the worker's seed (its networks, sampling and minibatch shards).
        pool_size: this worker's networks.
        refresh: networks this worker replaces per iteration, on average.
    """

    def __init__(
        self, cfg: TrainConfig, requests: RequestSet, seed: int, pool_size: int, refresh: float
    ):
        torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.requests = requests
        self.rng = np.random.default_rng(seed)
        self.refresh = refresh
        self.pool = NetworkPool(pool_size, self.rng, n_agents=cfg.n_agents)
        self.policy = GCNActorCritic(
            PolicyConfig(n_elams=len(requests.elam_ids), hidden=cfg.hidden)
        )
        self.traj: Trajectory | None = None
        self.adv = self.ret = torch.zeros(0)
        self.plan: list[np.ndarray] = []

    def ready(self) -> bool:
        """True once the worker is built (its networks generated)."""
        return True

    def _load(self, params: np.ndarray) -> None:
        torch.nn.utils.vector_to_parameters(torch.tensor(params), self.policy.parameters())

    def collect(self, params: np.ndarray, episodes: int) -> tuple[Trajectory, np.ndarray]:
        """Run ``episodes`` episodes with ``params`` and keep them for the update.

        Returns:
            The episodes' results (no tensors), and per gradient step of the iteration
            (``epochs`` x :func:`steps_per_epoch`) the :func:`~xapp_composer.ppo.moments`
            of this worker's shard of the advantages, shape (steps, 3).
        """
        self._load(params)
        whole, part = divmod(self.refresh, 1.0)
        refresh = int(whole) + int(self.rng.random() < part)
        self.traj = rollout(
            self.cfg, self.policy, self.pool, self.requests, self.rng, episodes, refresh
        )
        self.adv, self.ret = advantages(self.traj, self.cfg)
        count = steps_per_epoch(self.cfg)
        self.plan = [
            mb for _ in range(self.cfg.epochs) for mb in minibatches(self.rng, episodes, count)
        ]
        return merged([self.traj]), np.stack([moments(self.adv[:, mb]) for mb in self.plan])

    def gradient(
        self, params: np.ndarray, step: int, norm: tuple[float, float], ent_coef: float
    ) -> tuple[np.ndarray, list[bool], dict[str, float]]:
        """The loss gradient of this worker's shard of minibatch step ``step`` at ``params``.

        Args:
            params: the learner's current parameters (:func:`flat_parameters`).
            step: index into the iteration's plan (epoch-major).
            norm: the whole minibatch's advantage mean and standard deviation.
            ent_coef: the entropy bonus now.

        Returns:
            The flat gradient, which parameters received one, and the shard's stats.
        """
        if self.traj is None or not 0 <= step < len(self.plan):
            raise ValueError(f"gradient step {step}: no such step in this iteration's plan")
        self._load(params)
        self.policy.zero_grad(set_to_none=True)
        loss, stats = minibatch_loss(
            self.policy, self.traj, self.adv, self.ret, self.plan[step], self.cfg, ent_coef, norm
        )
        loss.backward()
        params_ = list(self.policy.parameters())
        grad = torch.cat([
            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params_
        ])  # fmt: skip
        return grad.numpy(), [p.grad is not None for p in params_], stats


def apply_gradient(
    policy: GCNActorCritic,
    opt: torch.optim.Optimizer,
    grad: np.ndarray,
    present: list[bool],
    max_grad_norm: float,
) -> None:
    """Set ``policy``'s gradients from a flat array (``None`` where no shard had one, as
    ``backward`` leaves them), clip their norm and take the optimiser step."""
    offset = 0
    for p, has in zip(policy.parameters(), present, strict=True):
        n = p.numel()
        p.grad = torch.from_numpy(grad[offset : offset + n].copy()).view_as(p) if has else None
        offset += n
    torch.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
    opt.step()


def combine(
    results: list[tuple[np.ndarray, list[bool], dict[str, float]]], weights: np.ndarray
) -> tuple[np.ndarray, list[bool], dict[str, float]]:
    """Shard gradients and stats (:meth:`RolloutWorker.gradient`) as the minibatch's: the
    mean weighted by each shard's share of the minibatch's rows."""
    w = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    grad = sum(wi * g.astype(np.float64) for wi, (g, _, _) in zip(w, results, strict=True))
    present = [any(col) for col in zip(*(p for _, p, _ in results), strict=True)]
    stats = {
        k: float(sum(wi * s[k] for wi, (_, _, s) in zip(w, results, strict=True))) for k in STATS
    }
    return np.asarray(grad, dtype=np.float32), present, stats


class RayRollouts:
    """``workers`` :class:`RolloutWorker` actors on a Ray cluster.

    Args:
        cfg: the training configuration (``cfg.ray``: ``auto`` or a cluster address;
            ``cfg.workers``: how many actors).
        requests: the training requests (shipped to every worker once).

    Raises:
        ValueError: several training sizes (``--agents-mix``), which train in one process.
        RuntimeError: Ray is not installed (the ``ray`` extra).
    """

    def __init__(self, cfg: TrainConfig, requests: RequestSet):
        if len(cfg.sizes) > 1:
            raise ValueError(
                f"--agents-mix {','.join(map(str, cfg.sizes))} trains in one process: "
                "drop --ray, or train one size"
            )
        try:
            import ray
        except ImportError:
            raise RuntimeError(
                "--ray needs Ray: pip install 'lameta-ric[ray]' (or drop --ray)"
            ) from None
        self.ray = ray
        self.cfg = cfg
        self.started = not ray.is_initialized()
        if self.started:
            opts: dict[str, Any] = {"runtime_env": worker_env(), "log_to_driver": False}
            if cfg.ray == "auto":
                try:
                    ray.init(address="auto", **opts)
                except ConnectionError:  # no cluster to join: one on this machine
                    start_local_ray(max(cfg.workers, os.cpu_count() or 1))
            else:
                ray.init(address=cfg.ray, **opts)
        actor = ray.remote(num_cpus=1)(RolloutWorker)
        shared = ray.put(requests)
        worker_cfg = replace(cfg, init=None)
        pools = [len(p) for p in np.array_split(np.arange(cfg.pool_size), cfg.workers)]
        self.workers = [
            actor.remote(worker_cfg, shared, cfg.seed * 1000 + 1 + i, max(1, pools[i]),
                         cfg.pool_refresh / cfg.workers)
            for i in range(cfg.workers)
        ]  # fmt: skip
        splits = np.array_split(np.arange(cfg.batch_episodes), cfg.workers)
        self.shares = [len(s) for s in splits]
        self.pending: list | None = None
        # Where the learner's time goes: waiting for episodes (beyond the overlap with its
        # bookkeeping), waiting for shard gradients (their compute, transfer and the slowest
        # shard), and its own optimiser steps.
        self.seconds = dict.fromkeys(("rollouts", "gradients", "steps"), 0.0)
        # Built (networks generated) before training starts, as the in-process pool is.
        ray.get([w.ready.remote() for w in self.workers])

    def _start(self, params) -> None:
        """Start the iteration's rollouts with ``params`` (a Ray reference)."""
        pairs = zip(self.workers, self.shares, strict=True)
        self.pending = [(w, w.collect.remote(params, n)) for w, n in pairs if n > 0]

    def iteration(
        self, policy: GCNActorCritic, opt: torch.optim.Optimizer, ent_coef: float
    ) -> tuple[Trajectory, dict[str, float]]:
        """One PPO iteration: the episodes on the workers, then the sharded update of
        ``policy`` with ``opt``.

        Returns:
            The iteration's episodes (no tensors) and the update's mean stats.
        """
        if self.pending is None:
            self._start(self.ray.put(flat_parameters(policy)))
        busy = [w for w, _ in self.pending]
        t0 = time.perf_counter()
        out = self.ray.get([ref for _, ref in self.pending])
        self.seconds["rollouts"] += time.perf_counter() - t0
        self.pending = None
        parts = [t for t, _ in out]
        shard_moments = np.stack([m for _, m in out])  # (workers, steps, 3)
        stats: dict[str, list[float]] = {k: [] for k in STATS}
        for step in range(shard_moments.shape[1]):
            m = shard_moments[:, step]
            norm = pooled(m.sum(axis=0))
            params = self.ray.put(flat_parameters(policy))
            active = [i for i in range(len(busy)) if m[i, 0] > 0]
            calls = [busy[i].gradient.remote(params, step, norm, ent_coef) for i in active]
            t0 = time.perf_counter()
            results = self.ray.get(calls)
            t1 = time.perf_counter()
            grad, present, step_stats = combine(results, m[active, 0])
            apply_gradient(policy, opt, grad, present, self.cfg.max_grad_norm)
            self.seconds["gradients"] += t1 - t0
            self.seconds["steps"] += time.perf_counter() - t1
            for k, v in step_stats.items():
                stats[k].append(v)
        self._start(self.ray.put(flat_parameters(policy)))
        return merged(parts), {k: float(np.mean(v)) for k, v in stats.items()}

    def close(self) -> None:
        """Stop the actors (and the local Ray this process started)."""
        for w in self.workers:
            self.ray.kill(w)
        if self.started:
            self.ray.shutdown()


def start_local_ray(cpus: int) -> None:
    """Start Ray on this machine for training: no dashboard, and workers at the learner's
    priority (Ray starts workers at niceness 15, which on a shared machine hands their
    CPU to any other process, although here they do the training's work)."""
    import ray

    ray.init(
        num_cpus=cpus, include_dashboard=False, log_to_driver=False, runtime_env=worker_env(),
        _system_config={"worker_niceness": 0},
    )  # fmt: skip


def worker_env() -> dict:
    """Ray's ``runtime_env`` for workers on this machine: they import this checkout's
    packages."""
    import xapp_composer

    root = os.path.dirname(os.path.dirname(os.path.abspath(xapp_composer.__file__)))
    roots = [root, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(roots)}}


def merged(trajs: list[Trajectory]) -> Trajectory:
    """The per-episode results of trajectories as one, without their tensors (for the
    training curve and the trip back from a worker)."""
    return Trajectory(
        chains=np.concatenate([t.chains for t in trajs]),
        elam=np.concatenate([t.elam for t in trajs]),
        intent_seen=np.concatenate([t.intent_seen for t in trajs]),
        outcome={k: np.concatenate([t.outcome[k] for t in trajs]) for k in trajs[0].outcome},
        score=np.concatenate([t.score for t in trajs]),
        rewards=np.concatenate([t.rewards for t in trajs], axis=1),
    )
