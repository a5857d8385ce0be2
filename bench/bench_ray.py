"""Episodes per second of SRL training: in one process, and with 1 and 2 Ray workers
(``xapp-composer train --ray auto --workers N``), on this machine, with where the time goes.

Each run trains the same configuration for ``--iterations`` iterations of ``--batch``
episodes (no validation inside the loop but the first iteration's) and reports the loop's
episodes per second after the first iteration, from its training curve (the best of
``--repeats`` interleaved runs, all listed, as other load on the machine only slows a run);
``speedup_2_over_1`` is the 2-worker rate over the 1-worker rate. Every process (the one
process, the learner and each worker) runs ``--threads`` torch threads (``threads``), as
``xapp-composer train`` does. Synthetic E-LAM predictions (no rApp needed); the
per-episode work is the same as with the rApp's.

Where the time goes, in seconds per iteration: ``in_process_phases_s`` times the two
phases of a single-process iteration (the rollout, and the PPO update that a Ray run
shards over its workers), and ``in_process_half_phases_s`` the same for half the batch
(and half the pool turnover), which is each of two workers' share:
``ceiling_speedup_2_over_1``, the whole batch's time over the half's, is what two workers
would reach with no cost of their own and a free core each. ``ray_<n>_phases_s`` splits a
Ray run: the learner waiting for the episodes (beyond the overlap with its bookkeeping)
and for the update, and each worker's own time (mean over workers) in its episodes,
its shards' gradients, the all-reduces (transfer and the wait for the slower worker)
and its optimiser steps. ``projected_speedup_2_over_1`` takes half the single-process
compute plus the measured 1-worker Ray overhead per iteration: an upper estimate for a
free core per worker, since a half batch does not take half the time (the ceiling above
is the tighter bound).

Prints one JSON object. Usage: ``python bench/bench_ray.py [--iterations 20] [--batch 256] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from xapp_composer.configs import DEFAULT_ELAMS, TrainConfig
from xapp_composer.data import training_sets
from xapp_composer.episodes import NetworkPool, RequestSet
from xapp_composer.policy import GCNActorCritic, PolicyConfig
from xapp_composer.ppo import advantages, optimizer, ppo_update
from xapp_composer.rollouts import rollout, start_local_ray
from xapp_composer.train import train


def rate(run: Path, name: str) -> tuple[float, float]:
    """Episodes per second of a run's loop after its first iteration (warm-up), and its
    seconds per iteration."""
    rows = list(csv.DictReader((run / f"{name}.curve.csv").open()))
    first, last = rows[0], rows[-1]
    episodes = float(last["episodes"]) - float(first["episodes"])
    seconds = float(last["seconds"]) - float(first["seconds"])
    return episodes / seconds, seconds / (len(rows) - 1)


def phases(
    cfg: TrainConfig, requests: RequestSet, iterations: int, share: int = 1
) -> dict[str, float]:
    """Mean seconds per single-process iteration in its rollout and in its PPO update, on
    ``1 / share`` of the batch, of each minibatch, of the pool and of its turnover (one of
    ``share`` workers' part: as many steps, on its shards)."""
    cfg = replace(cfg, batch_episodes=cfg.batch_episodes // share,
                  minibatch_episodes=cfg.minibatch_episodes // share,
                  pool_size=cfg.pool_size // share, pool_refresh=cfg.pool_refresh // share)  # fmt: skip
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    pool = NetworkPool(cfg.pool_size, rng, n_agents=cfg.n_agents)
    policy = GCNActorCritic(PolicyConfig(n_elams=len(requests.elam_ids), hidden=cfg.hidden))
    opt = optimizer(policy, cfg)
    spent = {"rollout": 0.0, "update": 0.0}
    for _ in range(iterations):
        t0 = time.perf_counter()
        traj = rollout(cfg, policy, pool, requests, rng, cfg.batch_episodes)
        t1 = time.perf_counter()
        ppo_update(policy, opt, traj, *advantages(traj, cfg), cfg, cfg.ent_coef, rng)
        spent["rollout"] += t1 - t0
        spent["update"] += time.perf_counter() - t1
    return {k: round(v / iterations, 4) for k, v in spent.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256, help="episodes per iteration")
    ap.add_argument("--minibatch", type=int, default=128, help="episodes per minibatch")
    ap.add_argument("--repeats", type=int, default=2, help="runs per configuration (best kept)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = ap.parse_args(argv)
    import ray  # one local Ray for every run: its start-up is not part of a rate

    start_local_ray(2)
    tr, val = training_sets(list(DEFAULT_ELAMS), "synthetic", seed=0)
    out: dict = {"iterations": args.iterations, "batch_episodes": args.batch,
                 "minibatch_episodes": args.minibatch,
                 "repeats": args.repeats, "threads": args.threads}  # fmt: skip
    runs: dict[str, list[tuple[float, float, dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):  # interleaved, so a burst of other load hits all alike
            for label, ray_address, workers in (("in_process", "", 1), ("ray_1", "auto", 1),
                                                ("ray_2", "auto", 2)):  # fmt: skip
                cfg = TrainConfig(
                    name=label, max_iterations=args.iterations, batch_episodes=args.batch,
                    minibatch_episodes=args.minibatch,
                    eval_every=10**9, minutes=60, ray=ray_address, workers=workers,
                    threads=args.threads,
                )  # fmt: skip
                _, summary = train(cfg, tr, val, Path(tmp), progress=False)
                runs.setdefault(label, []).append((*rate(Path(tmp), label), summary))
        cfg = TrainConfig(batch_episodes=args.batch, minibatch_episodes=args.minibatch,
                          threads=args.threads)  # fmt: skip
        out["in_process_phases_s"] = phases(cfg, tr, max(2, args.iterations // 2))
        out["in_process_half_phases_s"] = phases(cfg, tr, max(2, args.iterations // 2), share=2)
    ray.shutdown()
    per_iteration = {}
    for label, results in runs.items():
        eps, per_iteration[label], summary = max(results, key=lambda r: r[0])
        out[f"{label}_episodes_per_s"] = round(eps, 1)
        out[f"{label}_episodes_per_s_runs"] = [round(r[0], 1) for r in results]
        if "ray_seconds" in summary:
            out[f"{label}_phases_s"] = {
                k: round(v / args.iterations, 4) for k, v in summary["ray_seconds"].items()
            }
    out["speedup_2_over_1"] = round(out["ray_2_episodes_per_s"] / out["ray_1_episodes_per_s"], 2)
    compute = sum(out["in_process_phases_s"].values())
    half = sum(out["in_process_half_phases_s"].values())
    out["ceiling_speedup_2_over_1"] = round(compute / half, 2)
    overhead = max(0.0, per_iteration["ray_1"] - compute)
    out["ray_1_overhead_s"] = round(overhead, 4)
    out["projected_speedup_2_over_1"] = round(per_iteration["ray_1"] / (compute / 2 + overhead), 2)
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
