"""SRL training on Ray: rollout workers are Ray actors that also compute the update.

``xapp-composer train --ray auto|ADDRESS --workers N`` (:class:`RayRollouts`): each worker
(:class:`RolloutWorker`, a Ray actor with one CPU and ``--threads`` torch threads, 1 by
default as in one process) keeps its share of the pool of emulator networks and its own
random stream. In an iteration every worker runs its share of the episodes and keeps
them, tensors included, where they were made; only the per-episode results come back
(numpy, for the training curve).

The PPO update (:mod:`xapp_composer.ppo`) is sharded over the workers as in DD-PPO and
RLlib's multiple learners, because the update, not the rollout, is most of an iteration
(on this machine 0.21 s against 0.06 s for 256 episodes). Every worker holds a replica of
the policy and its Adam optimiser; for each minibatch step it computes the gradient of
its shard of the minibatch and the workers all-reduce them (``torch.distributed`` over
gloo, the process group PyTorch's DDP and Ray Train use), weighted by each shard's rows;
every replica then clips and takes the same step, so the replicas stay equal. Shards
normalise advantages with the whole minibatch's pooled moments (one all-reduce per
iteration), so a step equals the single-process step on the union of the shards, and
every gradient is taken at the weights the episodes were sampled with: there is no
policy lag. The learner (this process) sends each iteration's learning rate and entropy
bonus, receives the episodes' results and the new weights (from rank 0, once per
iteration) and keeps the curve, the validation and the checkpoint; the next iteration's
rollouts run while it writes its curve and validates. Rolling out during the update
instead (IMPALA-style, with one iteration of lag left to PPO's ratio clipping) would gain
nothing: the workers are the ones computing the update.

``auto`` joins the Ray cluster this process can see (``RAY_ADDRESS``, or one ``ray
start`` started on this machine; not another process's own local Ray) and otherwise
starts a local one; an address (``ray://host:10001`` or
``host:6379``) joins that cluster, as the KubeRay RayJob in ``deploy/ray/`` does. Ray is
an optional dependency (the ``ray`` extra); without ``--ray`` training stays the
single-process loop of :mod:`xapp_composer.train`.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from xapp_composer.agent import Trajectory, run_episodes
from xapp_composer.configs import TrainConfig
from xapp_composer.episodes import NetworkPool, RequestSet
from xapp_composer.policy import GCNActorCritic, PolicyConfig
from xapp_composer.ppo import (
    STATS,
    advantages,
    minibatch_loss,
    minibatches,
    moments,
    optimizer,
    pooled,
)


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


def load_parameters(policy: GCNActorCritic, params: np.ndarray) -> None:
    """Set ``policy``'s parameters from a :func:`flat_parameters` array."""
    torch.nn.utils.vector_to_parameters(torch.from_numpy(params.copy()), policy.parameters())


def steps_per_epoch(cfg: TrainConfig) -> int:
    """Minibatch steps per PPO epoch, as the single-process update takes them."""
    return max(1, cfg.batch_episodes // cfg.minibatch_episodes)


def flat_gradient(policy: GCNActorCritic, loss: torch.Tensor) -> tuple[np.ndarray, list[bool]]:
    """The gradient of ``loss`` (a shard's :func:`~xapp_composer.ppo.minibatch_loss`) at
    ``policy``'s weights as one flat array (zeros where a parameter received none), and
    which parameters received one."""
    policy.zero_grad(set_to_none=True)
    loss.backward()
    params = list(policy.parameters())
    grad = torch.cat([
        (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params
    ])  # fmt: skip
    return grad.numpy().copy(), [p.grad is not None for p in params]


def shard_buffer(
    grad: np.ndarray, present: list[bool], stats: dict[str, float], weight: float
) -> np.ndarray:
    """A shard's gradient and stats times its ``weight`` (its share of the minibatch's
    rows), and which parameters received a gradient, in one float64 array: the sum of
    the shards' buffers (an all-reduce) is the minibatch's (:func:`from_buffer`)."""
    return np.concatenate([
        weight * grad.astype(np.float64),
        np.asarray(present, dtype=np.float64),
        weight * np.array([stats[k] for k in STATS], dtype=np.float64),
    ])  # fmt: skip


def from_buffer(buf: np.ndarray, tensors: int) -> tuple[np.ndarray, list[bool], dict[str, float]]:
    """The minibatch's gradient, which parameters (of ``tensors``) received one from some
    shard, and its stats, from the sum of the shards' :func:`shard_buffer` arrays."""
    size = len(buf) - tensors - len(STATS)
    grad = buf[:size].astype(np.float32)
    present = [bool(x > 0) for x in buf[size : size + tensors]]
    stats = {k: float(v) for k, v in zip(STATS, buf[size + tensors :], strict=True)}
    return grad, present, stats


def combine(
    results: list[tuple[np.ndarray, list[bool], dict[str, float]]], weights: np.ndarray
) -> tuple[np.ndarray, list[bool], dict[str, float]]:
    """Shard gradients and stats (:func:`flat_gradient`) as the minibatch's: the mean
    weighted by each shard's share of the minibatch's rows, as the workers' all-reduce of
    :func:`shard_buffer` arrays computes it."""
    w = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    total = np.sum([shard_buffer(*r, wi) for r, wi in zip(results, w, strict=True)], axis=0)
    return from_buffer(total, len(results[0][1]))


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


WORKER_PHASES = ("collect", "gradient", "allreduce", "step")
"""Where a worker's time goes: its episodes and their advantages, its shards' gradients,
the all-reduces (their transfer and the wait for the slower worker), and its optimiser
steps."""

COLLECTIVE_TIMEOUT = timedelta(minutes=10)
"""How long a worker waits in an all-reduce for the others before giving up (a worker
that died leaves the others waiting there)."""


class RolloutWorker:
    """Episodes on a worker's own networks, and the update of its replica of the policy.

    Every worker holds a replica of the policy and of its Adam optimiser, started from the
    same weights. For each minibatch step it computes the gradient of its shard of the
    minibatch and all-reduces it with the other workers' (``torch.distributed``, gloo);
    every replica then takes the same clipped step on the same averaged gradient, so the
    replicas stay equal and no weights cross the wire within an iteration.

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
        params: the initial weights (:func:`flat_parameters` of the learner's policy).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        requests: RequestSet,
        seed: int,
        pool_size: int,
        refresh: float,
        params: np.ndarray,
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
        load_parameters(self.policy, params)
        self.opt = optimizer(self.policy, cfg)
        self.steps = cfg.epochs * steps_per_epoch(cfg)
        self.traj: Trajectory | None = None
        self.adv = self.ret = torch.zeros(0)
        self.plan: list[np.ndarray] = []
        self.shard_moments = np.zeros((self.steps, 3))
        self.rank = 0
        self.seconds = dict.fromkeys(WORKER_PHASES, 0.0)

    def rendezvous(self) -> str:
        """A ``tcp://`` address on this worker's node for the workers' process group."""
        import socket

        import ray

        host = ray.util.get_node_ip_address()
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        return f"tcp://{host}:{port}"

    def join(self, url: str, rank: int, world: int) -> None:
        """Join the workers' gloo process group at ``url`` as ``rank`` of ``world``."""
        dist.init_process_group(
            "gloo", init_method=url, rank=rank, world_size=world, timeout=COLLECTIVE_TIMEOUT
        )
        self.rank = rank

    def parameters(self) -> np.ndarray:
        """This replica's weights (:func:`flat_parameters`)."""
        return flat_parameters(self.policy)

    def collect(self, episodes: int) -> Trajectory | None:
        """Run ``episodes`` episodes with this replica's weights and keep them for the update.

        Returns:
            The episodes' results (no tensors); ``None`` for no episodes.
        """
        t0 = time.perf_counter()
        whole, part = divmod(self.refresh, 1.0)
        refresh = int(whole) + int(self.rng.random() < part)
        if episodes == 0:
            self.pool.refresh(refresh)
            self.traj, self.plan = None, []
            self.shard_moments = np.zeros((self.steps, 3))
            return None
        self.traj = rollout(
            self.cfg, self.policy, self.pool, self.requests, self.rng, episodes, refresh
        )
        self.adv, self.ret = advantages(self.traj, self.cfg)
        count = steps_per_epoch(self.cfg)
        self.plan = [
            mb for _ in range(self.cfg.epochs) for mb in minibatches(self.rng, episodes, count)
        ]
        self.shard_moments = np.stack([moments(self.adv[:, mb]) for mb in self.plan])
        self.seconds["collect"] += time.perf_counter() - t0
        return merged([self.traj])

    def update(self, ent_coef: float, lr: float) -> tuple[dict[str, float], np.ndarray | None]:
        """The PPO epochs over the collected episodes, sharded across the workers: each
        minibatch step all-reduces the shards' :func:`shard_buffer` arrays, then every
        replica takes the step.

        Args:
            ent_coef: the entropy bonus now.
            lr: the learning rate now.

        Returns:
            The update's mean stats, and the new weights from rank 0 (``None`` from the
            others, whose replicas equal it).
        """
        for group in self.opt.param_groups:
            group["lr"] = lr
        tensors = len(list(self.policy.parameters()))
        size = sum(p.numel() for p in self.policy.parameters())
        t0 = time.perf_counter()
        total = torch.from_numpy(self.shard_moments.copy())
        dist.all_reduce(total)  # every step's pooled advantage moments and row count
        total = total.numpy()
        self.seconds["allreduce"] += time.perf_counter() - t0
        stats: dict[str, list[float]] = {k: [] for k in STATS}
        for step in range(self.steps):
            t0 = time.perf_counter()
            rows = self.shard_moments[step, 0]
            if rows > 0:
                loss, shard_stats = minibatch_loss(
                    self.policy, self.traj, self.adv, self.ret, self.plan[step], self.cfg,
                    ent_coef, pooled(total[step]),
                )  # fmt: skip
                grad, present = flat_gradient(self.policy, loss)
                buf = torch.from_numpy(
                    shard_buffer(grad, present, shard_stats, rows / total[step, 0])
                )
            else:
                buf = torch.zeros(size + tensors + len(STATS), dtype=torch.float64)
            t1 = time.perf_counter()
            dist.all_reduce(buf)
            t2 = time.perf_counter()
            grad, present, step_stats = from_buffer(buf.numpy(), tensors)
            apply_gradient(self.policy, self.opt, grad, present, self.cfg.max_grad_norm)
            self.seconds["gradient"] += t1 - t0
            self.seconds["allreduce"] += t2 - t1
            self.seconds["step"] += time.perf_counter() - t2
            for k, v in step_stats.items():
                stats[k].append(v)
        mean = {k: float(np.mean(v)) for k, v in stats.items()}
        return mean, (flat_parameters(self.policy) if self.rank == 0 else None)

    def phase_seconds(self) -> dict[str, float]:
        """Seconds this worker spent in each of :data:`WORKER_PHASES` so far."""
        return dict(self.seconds)


class RayRollouts:
    """``workers`` :class:`RolloutWorker` actors on a Ray cluster.

    Args:
        cfg: the training configuration (``cfg.ray``: ``auto`` or a cluster address;
            ``cfg.workers``: how many actors).
        requests: the training requests (shipped to every worker once).
        policy: the learner's policy, whose weights the workers' replicas start from.

    Raises:
        ValueError: several training sizes (``--agents-mix``), which train in one process.
        RuntimeError: Ray is not installed (the ``ray`` extra).
    """

    def __init__(self, cfg: TrainConfig, requests: RequestSet, policy: GCNActorCritic):
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
            address = cluster_address() if cfg.ray == "auto" else cfg.ray
            if address is None:  # no cluster to join: one on this machine
                start_local_ray(max(cfg.workers, os.cpu_count() or 1))
            else:
                ray.init(address=address, **opts)
        actor = ray.remote(num_cpus=1)(RolloutWorker)
        shared = ray.put(requests)
        params = ray.put(flat_parameters(policy))
        worker_cfg = replace(cfg, init=None)
        pools = [len(p) for p in np.array_split(np.arange(cfg.pool_size), cfg.workers)]
        self.workers = [
            actor.remote(worker_cfg, shared, cfg.seed * 1000 + 1 + i, max(1, pools[i]),
                         cfg.pool_refresh / cfg.workers, params)
            for i in range(cfg.workers)
        ]  # fmt: skip
        splits = np.array_split(np.arange(cfg.batch_episodes), cfg.workers)
        self.shares = [len(s) for s in splits]
        self.pending: list | None = None
        # Where the learner's time goes: waiting for episodes (beyond the overlap with its
        # bookkeeping) and for the workers' update; the workers' own phases are read at
        # the end (:meth:`phase_seconds`).
        self.seconds = dict.fromkeys(("rollouts", "update"), 0.0)
        # Built (networks generated) and joined before training starts, as the
        # in-process pool is built first.
        url = ray.get(self.workers[0].rendezvous.remote())
        ray.get([w.join.remote(url, i, cfg.workers) for i, w in enumerate(self.workers)])

    def _collect(self) -> None:
        """Start the next iteration's rollouts (each worker with its replica's weights)."""
        self.pending = [w.collect.remote(n) for w, n in zip(self.workers, self.shares, strict=True)]

    def iteration(
        self, policy: GCNActorCritic, opt: torch.optim.Optimizer, ent_coef: float
    ) -> tuple[Trajectory, dict[str, float]]:
        """One PPO iteration: the episodes on the workers, then their sharded update.

        Args:
            policy: the learner's policy; it receives the updated weights.
            opt: the learner's optimiser, whose learning rate (the schedule) the workers'
                replicas use; the replicas take the steps.
            ent_coef: the entropy bonus now.

        Returns:
            The iteration's episodes (no tensors) and the update's mean stats.
        """
        if self.pending is None:
            self._collect()
        lr = opt.param_groups[0]["lr"]
        updates = [w.update.remote(ent_coef, lr) for w in self.workers]
        t0 = time.perf_counter()
        parts = [t for t in self.ray.get(self.pending) if t is not None]
        t1 = time.perf_counter()
        (stats, params), *_ = self.ray.get(updates)
        self.seconds["rollouts"] += t1 - t0
        self.seconds["update"] += time.perf_counter() - t1
        load_parameters(policy, params)
        # The next rollouts run while the caller writes its curve and validates.
        self._collect()
        return merged(parts), stats

    def phase_seconds(self) -> dict[str, float]:
        """The learner's waits (``rollouts``, ``update``) and the workers' phases
        (:data:`WORKER_PHASES`, mean over workers), in seconds so far."""
        per = self.ray.get([w.phase_seconds.remote() for w in self.workers])
        workers = {f"worker_{k}": float(np.mean([p[k] for p in per])) for k in WORKER_PHASES}
        return {**self.seconds, **workers}

    def close(self) -> None:
        """Stop the actors (and the local Ray this process started)."""
        for w in self.workers:
            self.ray.kill(w)
        if self.started:
            self.ray.shutdown()


def cluster_address() -> str | None:
    """The Ray cluster ``--ray auto`` joins: ``RAY_ADDRESS``, else the one ``ray start``
    last started on this machine; ``None`` when there is neither (then it starts its own).

    Ray's own ``address="auto"`` also joins any Ray it finds running on the machine,
    including one that another process started for itself (as :func:`start_local_ray`
    does): there this run's actors wait for CPUs the other run holds, and they die when
    that process ends. This is Ray's lookup for ``ray.init()`` without an address.
    """
    from ray._private.services import get_ray_address_from_environment

    return get_ray_address_from_environment(None, None)


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
