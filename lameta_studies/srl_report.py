"""The paper's SRL figures as tables and plots (Figs. 9-11) and the generalisation study.

- Fig. 9: per-factor training curves (C, B, L, P_outage) per application, from the
  curves written by training.
- Fig. 10: policy selection by intent similarity: each user is served by the policy of
  the application nearest to its predicted vector (angular distance, eq. 24, to each
  application's mean training vector); how often is that policy the better one?
- Fig. 11: in-context learning (eqs. 44-46) against 20% outlier translations: a stream of
  requests per application where one translation in five is replaced by a
  misinterpretation (another application's vector); the SRL policy decides on the raw
  translations, or on the translations calibrated by the rApp's memory.
- Generalisation: the same policies on networks of N = 50 and N = 200 agents.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from agentnet.chain import evaluate_chain
from agentnet.intents import APPS
from rapp_intent.elam.base import MemoryContext, MemoryRecord, Translation
from rapp_intent.memory import CalibrationConfig, apply_memory
from xapp_composer import evaluate as E
from xapp_composer.episodes import RequestSet
from xapp_composer.runtime import PolicyRuntime
from xapp_composer.scoring import EvalSet


def angular(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dis of eq. 24 between rows of a and a vector b."""
    cos = (a @ b) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b))
    return np.arccos(np.clip(cos, -1.0, 1.0)) / math.pi


# ---- Fig. 9 ----------------------------------------------------------------------------------
def fig9(curves: dict[str, Path], png: Path) -> dict:
    """Per-factor training curves per policy; returns the final values per policy."""
    import matplotlib  # deferred: only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    final = {}
    for name, path in curves.items():
        rows = list(csv.DictReader(path.open()))
        ep = np.array([float(r["episodes"]) for r in rows])
        window = max(1, len(rows) // 30)
        out = {}
        for ax, key in zip(axes, ("C", "B", "L", "P_outage"), strict=True):
            y = np.array([float(r[key]) if r[key] not in ("", "nan") else np.nan for r in rows])
            smooth = np.convolve(
                np.nan_to_num(y, nan=np.nanmean(y)), np.ones(window) / window, "valid"
            )
            ax.plot(ep[window - 1 :], smooth, label=name, lw=1)
            out[key] = float(np.nanmean(y[-window:]))
        final[name] = out
    for ax, title in zip(
        axes, ("capability C", "information loss B", "latency L (s)", "outage P"), strict=True
    ):
        ax.set_title(title)
        ax.set_xlabel("episodes")
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return final


# ---- Fig. 10 ---------------------------------------------------------------------------------
def fig10(
    ev: EvalSet,
    pairs: np.ndarray,
    per_app: dict[str, PolicyRuntime],
    app_means: dict[str, np.ndarray],
    elam: str,
) -> dict:
    """Share of users for whom the nearest application's policy is the better one."""
    fee_of = dict(zip(ev.requests.elam_ids, ev.requests.fees.tolist(), strict=True))
    scores = {}
    for app, rt in per_app.items():
        res = E.score_decisions(ev, pairs, *E.run_policy(ev, pairs, lambda a, rt=rt: rt), fee_of)
        scores[app] = res.normalized
    apps = list(per_app)
    table = np.stack([scores[a] for a in apps], axis=1)  # (P, A)
    k = ev.requests.elam_ids.index(elam)
    pred = ev.requests.preds[ev.req_idx[pairs], k]
    dist = np.stack([angular(pred, app_means[a]) for a in apps], axis=1)
    nearest = dist.argmin(axis=1)
    own = np.array([apps.index(APPS[int(ev.requests.app[r])]) for r in ev.req_idx[pairs]])
    rows = np.arange(len(pairs))
    best = table.max(axis=1)
    near_score = table[rows, nearest]
    others = (table.sum(axis=1) - near_score) / max(1, len(apps) - 1)
    return {
        "users": len(pairs),
        "nearest_is_best_share": float(np.mean(near_score >= best - 1e-9)),
        "nearest_beats_mean_of_others_share": float(np.mean(near_score >= others)),
        "nearest_is_own_app_share": float(np.mean(nearest == own)),
        "normalized_score_nearest_policy": float(near_score.mean()),
        "normalized_score_own_app_policy": float(table[rows, own].mean()),
        "normalized_score_best_policy": float(best.mean()),
        "normalized_score_mean_policy": float(table.mean()),
    }


# ---- Fig. 11 ---------------------------------------------------------------------------------
def fig11(
    ev: EvalSet,
    runtime_for: Callable[[str], PolicyRuntime],
    elam: str,
    outlier_share: float = 0.2,
    k_recent: int = 8,
    seed: int = 0,
) -> dict:
    """SRL with and without the rApp's in-context calibration under outlier translations.

    For each network, the requests of each application arrive as a stream (shuffled);
    one translation in five is replaced by another application's translation (a
    misinterpretation; the user's true vector is unchanged). The memory holds the last
    ``k_recent`` served vectors of the application (ReportOutcome records).
    """
    rng = np.random.default_rng(seed)
    cfg = CalibrationConfig()
    k = ev.requests.elam_ids.index(elam)
    req = ev.requests
    results: dict[str, list[float]] = {"clean": [], "outliers_no_icl": [], "outliers_icl": []}
    outlier_flags: list[bool] = []
    fee = float(req.fees[k])
    for j, net in enumerate(ev.nets):
        for app in APPS:
            ids = [i for i in range(len(req)) if APPS[int(req.app[i])] == app]
            if not ids:
                continue
            order = rng.permutation(ids)
            others = [i for i in range(len(req)) if APPS[int(req.app[i])] != app]
            memory: list[np.ndarray] = []
            rt = runtime_for(app)
            prep = rt.prepare(net)
            for i in order:
                clean = req.preds[i, k]
                is_out = rng.random() < outlier_share
                seen = req.preds[int(rng.choice(others)), k] if is_out else clean
                ctx = MemoryContext(
                    app=app,
                    records=tuple(
                        MemoryRecord(prompt="", vector=tuple(v), reward=0.0, app=app)
                        for v in memory[-k_recent:][::-1]
                    ),
                )
                served = apply_memory(Translation(vector=tuple(float(x) for x in seen)), ctx, cfg)
                memory.append(np.asarray(served.vector))
                for key, vec in (
                    ("clean", clean),
                    ("outliers_no_icl", seen),
                    ("outliers_icl", np.asarray(served.vector)),
                ):
                    chain = rt.compose(prep, vec, k, app, req.prompts[i])
                    results[key].append((j, int(i), chain))
                outlier_flags.append(is_out)
    out: dict = {"outlier_share": outlier_share, "k_recent": k_recent}
    opt_cache: dict[tuple[int, int], tuple[float, float]] = {}
    for key, decisions in results.items():
        norms = []
        for j, i, chain in decisions:
            score = evaluate_chain(ev.nets[j], chain, req.true_s[i], fee=fee).r_episode
            if (j, i) not in opt_cache:
                q = ev.utilities[j] @ req.true_s[i]
                opt_cache[(j, i)] = (10 * q.max() - req.fees.min(), 10 * q.mean() - req.fees.mean())
            opt, rnd = opt_cache[(j, i)]
            norms.append((score - rnd) / (opt - rnd) if opt > rnd else 1.0)
        norms = np.array(norms)
        flags = np.array(outlier_flags)
        out[key] = {
            "normalized_score": float(norms.mean()),
            "on_outliers": float(norms[flags].mean()) if flags.any() else None,
            "on_regular": float(norms[~flags].mean()),
        }
    out["requests"] = len(outlier_flags)
    out["outliers"] = int(np.sum(outlier_flags))
    return out


def generalisation(
    requests: RequestSet,
    seeds: Sequence[int],
    sizes: Sequence[int],
    runtimes: dict[str, Callable[[str], PolicyRuntime]],
    elam: str,
) -> dict:
    """Normalised scores of policies (and Greedy) on networks of other sizes."""
    out = {}
    for n in sizes:
        ev = EvalSet.build(seeds, requests, n_agents=n)
        pairs = np.arange(len(ev))
        fee_of = dict(zip(requests.elam_ids, requests.fees.tolist(), strict=True))
        row = {}
        for name, rt_for in runtimes.items():
            row[name] = E.score_decisions(
                ev, pairs, *E.run_policy(ev, pairs, rt_for), fee_of
            ).summary(requests.elam_ids)["normalized_score"]
        row["greedy"] = E.score_decisions(
            ev, pairs, *E.run_greedy(ev, pairs, elam), fee_of
        ).summary(requests.elam_ids)["normalized_score"]
        out[f"N={n}"] = row
    return out


def write_json(path: Path, data: dict) -> None:
    """Pretty JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
