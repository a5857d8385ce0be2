"""SRL training: PPO with GAE on the GCN actor-critic (paper sec. V, eqs. 34-43).

One readable loop (CleanRL style). Each iteration samples B (network, request) pairs from
a pool of varied training networks and the project's training intents, runs the episodes
(E-LAM choice, then one agent per step) with rewards under the TRUE vector, computes GAE
and takes a few clipped-surrogate epochs over episode minibatches. Every ``eval_every``
iterations the greedy policy is scored on fixed validation networks and held-out intents;
the best checkpoint is kept. The PPO math is :mod:`xapp_composer.ppo`; with ``--ray`` the
rollouts and the minibatch gradients run on Ray workers (:mod:`xapp_composer.rollouts`).

With ``--agents-mix`` the networks come in several sizes, one pool per size: each
iteration's episodes are split evenly over the pools and each part takes its own update
(the networks of a batch share N), and validation averages the sizes. A policy trained
at one size trusts its optimistic lookahead (the best of each factor over the remaining
steps' agents) as much as that size warrants; on larger networks those best values lie
further apart, so it picks first agents whose good completions are out of reach. Several
sizes train in one process (not with ``--ray``).
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from xapp_composer.agent import run_episodes
from xapp_composer.configs import IntentMode, TrainConfig
from xapp_composer.episodes import RequestSet
from xapp_composer.policy import GCNActorCritic, PolicyConfig
from xapp_composer.ppo import advantages, optimizer, ppo_update
from xapp_composer.rollouts import RayRollouts, merged, rollout_sizes, training_pools
from xapp_composer.scoring import EvalSet

VALIDATION_SEEDS = tuple(range(900_001, 900_017))
"""Networks for model selection during training (never the evaluation seeds 101, ...)."""
VALIDATION_PAIRS = 32
"""Requests drawn per validation network."""
MIN_VALIDATION_NETWORKS = 4
"""Validation networks of the largest training sizes (smaller sizes use more, up to
every one of :data:`VALIDATION_SEEDS`)."""


def validation_sets(
    sizes: list[int], requests: RequestSet, rng: np.random.Generator
) -> dict[int, EvalSet]:
    """Validation pairs per training size: all of :data:`VALIDATION_SEEDS` at the smallest
    size, proportionally fewer networks (at least :data:`MIN_VALIDATION_NETWORKS`) at
    larger ones, whose states and exact optima cost more."""
    out = {}
    for n in sizes:
        count = round(len(VALIDATION_SEEDS) * sizes[0] / n)
        seeds = VALIDATION_SEEDS[: max(MIN_VALIDATION_NETWORKS, count)]
        out[n] = EvalSet.build(seeds, requests, n_agents=n, per_network=VALIDATION_PAIRS, rng=rng)
    return out


def validate_sizes(
    policy: GCNActorCritic, sets: dict[int, EvalSet], mode: IntentMode
) -> dict[str, float]:
    """:func:`validate` on the validation pairs of every size: each metric averaged over
    the sizes (so each size counts the same), plus the normalised score of each size
    (``val_normalized_score@<N>``) when there are several."""
    per = {n: validate(policy, ev, mode) for n, ev in sets.items()}
    out = {k: float(np.mean([v[k] for v in per.values()])) for k in next(iter(per.values()))}
    if len(per) > 1:
        out.update({f"val_normalized_score@{n}": v["val_normalized_score"] for n, v in per.items()})
    return out


def validate(policy: GCNActorCritic, evalset: EvalSet, mode: IntentMode) -> dict[str, float]:
    """Greedy policy on the validation pairs: mean normalised score and factors."""
    policy.eval()
    traj = run_episodes(
        policy, evalset.pair_state(), evalset.pair_requests(), mode=mode, greedy=True
    )
    policy.train()
    norm = evalset.normalized(traj.score)
    share = traj.elam[traj.elam >= 0]
    return {
        "val_normalized_score": float(norm.mean()),
        "val_feasible": float(traj.outcome["feasible"].mean()),
        "val_elam0_share": float((share == 0).mean()) if len(share) else math.nan,
    }


def train(
    cfg: TrainConfig,
    requests: RequestSet,
    val_requests: RequestSet,
    out_dir: Path,
    *,
    progress: bool = True,
) -> tuple[GCNActorCritic, dict]:
    """Train one policy; write ``<name>.pt``, ``<name>.curve.csv`` and ``<name>.train.json``.

    Returns:
        The best policy (by validation score) and a summary dict.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    pcfg = PolicyConfig(n_elams=len(requests.elam_ids), hidden=cfg.hidden)
    policy = GCNActorCritic(pcfg)
    if cfg.init:
        ckpt = torch.load(cfg.init, map_location="cpu", weights_only=True)
        if ckpt["policy"] != pcfg.to_dict():
            raise ValueError(
                f"--init {cfg.init}: its policy shape {ckpt['policy']} differs from "
                f"this run's {pcfg.to_dict()}"
            )
        if list(ckpt["summary"]["elam_ids"]) != list(requests.elam_ids):
            raise ValueError(
                f"--init {cfg.init}: trained for E-LAMs {ckpt['summary']['elam_ids']}, "
                f"this run picks among {requests.elam_ids}"
            )
        policy.load_state_dict(ckpt["state_dict"])
    opt = optimizer(policy, cfg)
    workers = RayRollouts(cfg, requests, policy) if cfg.ray else None
    pools = None if workers else training_pools(cfg, rng)
    val = validation_sets(cfg.sizes, val_requests, rng)
    curve_path = out_dir / f"{cfg.name}.curve.csv"
    fields = [
        "iteration",
        "episodes",
        "seconds",
        "return",
        "r_episode",
        "Q",
        "C",
        "B",
        "L",
        "P_outage",
        "feasible",
        "elam0_share",
        "pg",
        "vf",
        "ent",
        "kl",
        "clipfrac",
        "val_normalized_score",
        "val_feasible",
        "val_elam0_share",
    ]
    if len(cfg.sizes) > 1:
        fields += [f"val_normalized_score@{n}" for n in cfg.sizes]
    best = {"val_normalized_score": -math.inf, "iteration": -1}
    best_state = None
    if cfg.init:
        # A warm start competes as iteration 0: fine-tuning never ships worse weights
        # (on the validation pairs) than the ones it started from.
        best = {**validate_sizes(policy, val, cfg.mode), "iteration": 0}
        best_state = {k: t.detach().clone() for k, t in policy.state_dict().items()}
    start = time.monotonic()
    budget = cfg.minutes * 60.0
    bar = tqdm(total=int(budget), disable=not progress, unit="s", desc=cfg.name)
    try:
        with curve_path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            it = 0
            while it < cfg.max_iterations and time.monotonic() - start < budget:
                # Schedules follow the budget that binds: wall-clock or iterations.
                frac = min(1.0, max((time.monotonic() - start) / budget, it / cfg.max_iterations))
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * (1.0 - 0.9 * frac)
                ent_coef = cfg.ent_coef * (1.0 - frac)
                if workers is None:
                    # ---- rollout, advantages (eq. 42) and update (eq. 43), per size ------
                    parts = rollout_sizes(cfg, policy, pools, requests, rng, cfg.batch_episodes)
                    part_stats = [
                        ppo_update(policy, opt, part, *advantages(part, cfg), cfg, ent_coef, rng)
                        for part in parts
                    ]
                    stats = {k: float(np.mean([p[k] for p in part_stats])) for k in part_stats[0]}
                    traj = merged(parts)
                else:
                    # ---- the same on Ray workers, which compute the gradients too ---------
                    traj, stats = workers.iteration(policy, opt, ent_coef)
                it += 1
                o = traj.outcome
                feas = o["feasible"]
                row = {
                    "iteration": it,
                    "episodes": it * cfg.batch_episodes,
                    "seconds": round(time.monotonic() - start, 1),
                    "return": float(traj.rewards.sum(axis=0).mean()),
                    "r_episode": float(traj.score.mean()),
                    "Q": float(np.nanmean(np.where(feas, o["Q"], np.nan))),
                    "C": float(np.mean(o["C"])),
                    "B": float(np.mean(o["B"])),
                    "L": float(np.nanmean(np.where(feas, o["L"], np.nan))),
                    "P_outage": float(np.nanmean(np.where(feas, o["P_outage"], np.nan))),
                    "feasible": float(feas.mean()),
                    "elam0_share": float((traj.elam == 0).mean())
                    if cfg.mode == "predicted"
                    else "",
                    **{k: round(v, 5) for k, v in stats.items()},
                }
                if it % cfg.eval_every == 0 or it == 1:
                    v = validate_sizes(policy, val, cfg.mode)
                    row.update({k: round(x, 5) for k, x in v.items()})
                    if v["val_normalized_score"] > best["val_normalized_score"]:
                        best = {**v, "iteration": it}
                        best_state = {k: t.detach().clone() for k, t in policy.state_dict().items()}
                    bar.set_postfix(
                        val=f"{v['val_normalized_score']:.3f}",
                        best=f"{best['val_normalized_score']:.3f}",
                    )
                writer.writerow(row)
                fh.flush()
                bar.n = int(time.monotonic() - start)
                bar.refresh()
    finally:
        if workers is not None:
            try:
                ray_seconds = {k: round(v, 2) for k, v in workers.phase_seconds().items()}
            finally:
                workers.close()
    bar.close()
    # A last validation, so the final weights compete too.
    v = validate_sizes(policy, val, cfg.mode)
    if v["val_normalized_score"] > best["val_normalized_score"]:
        best = {**v, "iteration": it}
        best_state = {k: t.detach().clone() for k, t in policy.state_dict().items()}
    if best_state is not None:
        policy.load_state_dict(best_state)
    summary = {
        "config": cfg.to_dict(),
        "policy": pcfg.to_dict(),
        "iterations": it,
        "episodes": it * cfg.batch_episodes,
        "seconds": round(time.monotonic() - start, 1),
        "rollout_workers": cfg.workers if cfg.ray else 0,
        **({"ray_seconds": ray_seconds} if workers is not None else {}),
        "best": best,
        "elam_ids": requests.elam_ids,
        "fees": requests.fees.tolist(),
        "train_requests": len(requests),
    }
    torch.save(
        {"state_dict": policy.state_dict(), "policy": pcfg.to_dict(), "summary": summary},
        out_dir / f"{cfg.name}.pt",
    )
    (out_dir / f"{cfg.name}.train.json").write_text(json.dumps(summary, indent=2))
    return policy, summary


def plot_curve(csv_path: Path, png_path: Path, title: str) -> None:
    """Training curve: validation score, return, and the factors C, B, L, P (paper Fig. 9)."""
    import matplotlib  # deferred: only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(csv_path.open()))
    ep = np.array([float(r["episodes"]) for r in rows])

    def col(name: str) -> np.ndarray:
        return np.array([float(r[name]) if r[name] not in ("", "nan") else np.nan for r in rows])

    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    val = col("val_normalized_score")
    ok = np.isfinite(val)
    axes[0, 0].plot(ep[ok], val[ok], marker=".")
    axes[0, 0].set_title("validation normalised score")
    axes[0, 1].plot(ep, col("r_episode"), lw=0.8)
    axes[0, 1].set_title("episode bonus 10 Q*_s - F (true s)")
    for ax, key, label in [
        (axes[0, 2], "C", "capability C"),
        (axes[1, 0], "B", "information loss B"),
        (axes[1, 1], "L", "latency L (s)"),
        (axes[1, 2], "P_outage", "outage P"),
    ]:
        ax.plot(ep, col(key), lw=0.8)
        ax.set_title(label)
    for ax in axes.ravel():
        ax.set_xlabel("episodes")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
