"""``xapp-guard train``: every method on one recording, detectors exported with cards.

Steps: calibrate the stack model on the recording's benign traffic; split the windows
into the recorded ``train`` and ``val`` parts; build each method's added sequences
(:mod:`xapp_guard.evolve`); train ``seeds`` detectors per method (real training data
plus the method's sequences); export each to ONNX after a parity check, with a card
holding its validation scores and alert threshold.

The alert threshold of a detector is chosen on the validation split alone: half the
lowest P(benign) it gives any validation benign window (no validation benign window
would alert; the margin is for benign traffic the split did not show), within
[:data:`MIN_THRESHOLD`, 0.5].

Writes under ``out``: ``detectors/<method>-s<k>.onnx`` (+ cards), ``guard.onnx`` (the
service's default: ``synthetic_evolved`` seed 0), ``synthetic/<method>.npz`` (the added
sequences), ``calibration.json``, ``evolution.json`` and ``evolution.png`` (accepted share
and validation F1 per generation), ``train.json`` (validation scores of every detector).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from llmkit.chat import CachedChat, ChatModel, make_chat
from xapp_guard.augment import noise_augment
from xapp_guard.config import METHODS, EvolveConfig, ExperimentConfig, TrainConfig
from xapp_guard.corpus import Corpus, load, read_events
from xapp_guard.evolve import Loop, Pool
from xapp_guard.export import export_onnx, parity_check, write_card
from xapp_guard.features import N_FEATURES
from xapp_guard.fill import TemplateFiller
from xapp_guard.scenarios import CLASSES
from xapp_guard.scoring import scores
from xapp_guard.synth import GuardLlmSettings
from xapp_guard.traffic import Calibration, StackModel
from xapp_guard.train import predict

log = structlog.get_logger("xapp_guard.experiment")

ROOT = Path(__file__).resolve().parent.parent
MIN_THRESHOLD = 1e-3


def make_writer(settings: GuardLlmSettings, decoding: str, out: Path,
                cache: Path | None = None) -> ChatModel | TemplateFiller:  # fmt: skip
    """The LLM that writes the synthetic data: SmolLM2 filling templates (``constrained``;
    the default for the local backend) or a chat model answering freely (``free``; any
    OpenAI-compatible endpoint), its answers memoised under ``out``."""
    if decoding == "auto":
        decoding = "constrained" if settings.backend == "local" else "free"
    if decoding == "constrained":
        if settings.backend != "local":
            raise ValueError(
                "constrained decoding needs the local backend (GUARD_LLM_BACKEND=local)"
            )
        return TemplateFiller(settings.cache_dir, memo=cache or out / "llm-fill-cache.jsonl",
                              threads=settings.local_threads, seed=settings.seed)  # fmt: skip
    return CachedChat(make_chat(settings), cache or out / "llm-cache.jsonl")


def split(corpus: Corpus, length: int) -> tuple[np.ndarray, ...]:
    """(x, y, xv, yv): the labelled sequences of the ``train`` and ``val`` parts."""
    x = corpus.sequences(length)
    tr = corpus.select(corpus.part == "train")
    va = corpus.select(corpus.part == "val")
    if not len(tr) or not len(va):
        raise ValueError(f"{corpus.labels.get('seed')}: the recording needs train and val parts")
    return x[tr], corpus.y[tr], x[va], corpus.y[va]


def threshold(p_benign_val: np.ndarray) -> float:
    """The alert threshold from validation benign windows' P(benign) (module docstring)."""
    lowest = float(p_benign_val.min()) if len(p_benign_val) else 1.0
    return float(np.clip(0.5 * lowest, MIN_THRESHOLD, 0.5))


def _counts(y: np.ndarray) -> dict[str, int]:
    return {CLASSES[c]: int((y == c).sum()) for c in range(len(CLASSES)) if (y == c).any()}


def added_sets(loop: Loop, cfg: EvolveConfig) -> tuple[dict[str, tuple], list, dict[str, Any]]:
    """Each method's added sequences, the loop's history and the candidates' statistics."""
    budget = cfg.generations * cfg.per_cell
    length, nf = loop.length, N_FEATURES
    stats: dict[str, Any] = {}
    # One round with the whole budget, examples from the recording only, nothing checked.
    syn_cands = []
    for route in cfg.route_list():
        syn_cands += loop.ask(route, Pool(), {}, budget)
    syn = Pool()
    syn.add([c for c in syn_cands if not c.reason])
    stats["synthetic"] = _candidate_stats(syn_cands)
    pool, history = loop.evolve()
    stats["synthetic_evolved"] = {"pool": len(pool.accepted)}
    rnd_cands = loop.random_candidates(budget)
    checks = loop.checks()
    for c in rnd_cands:
        c.reason = checks.check(c)
    rnd = Pool()
    rnd.add([c for c in rnd_cands if not c.reason])
    stats["random_scenarios"] = _candidate_stats(rnd_cands)
    xe, ye = pool.arrays(length, nf)
    per_class = {c: int((ye == c).sum()) for c in range(len(CLASSES))}
    xn, yn = noise_augment(loop.x, loop.y, per_class, np.random.default_rng(cfg.seed))
    sets = {
        "real_only": (np.zeros((0, length, nf), np.float32), np.zeros(0, np.int64)),
        "noise_augmented": (xn, yn),
        "synthetic": syn.arrays(length, nf),
        "synthetic_evolved": (xe, ye),
        "random_scenarios": rnd.arrays(length, nf),
    }
    stats["routes"] = {"synthetic_evolved": _route_counts(pool),
                       "synthetic": _route_counts(syn)}  # fmt: skip
    stats["examples"] = {
        "synthetic_evolved": [{"route": c.route, "class": c.cls, "variant": c.variant,
                               "text": c.text[:400]} for c in pool.accepted[:40]],
        "refused": [{"route": c.route, "class": c.cls, "reason": c.reason, "text": c.text[:200]}
                    for c in syn_cands[:: max(1, len(syn_cands) // 20)]],
    }  # fmt: skip
    return sets, history, stats


def _candidate_stats(cands: list) -> dict[str, Any]:
    from collections import Counter

    ok = [c for c in cands if not c.reason]
    return {
        "candidates": len(cands),
        "usable": len(ok),
        "reasons": dict(Counter(c.reason.split(":", 1)[0] for c in cands if c.reason)),
        "by_route": {r: {"candidates": sum(c.route == r for c in cands),
                         "usable": sum(c.route == r for c in ok)}
                     for r in sorted({c.route for c in cands})},
    }  # fmt: skip


def _route_counts(pool: Pool) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(pool.route))


def plot_history(history: list, path: Path, reference: float | None = None) -> None:
    """Accepted share per route and validation macro-F1 per generation (``reference``: the
    real data alone)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = [h.generation for h in history]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for route in sorted({r for h in history for r in h.by_route}):
        share = [h.by_route.get(route, {}).get("accepted", 0)
                 / max(1, h.by_route.get(route, {}).get("candidates", 0)) for h in history]  # fmt: skip
        ax.plot(gens, share, marker="o", label=f"accepted share ({route})")
    ax.plot(gens, [h.accepted_share for h in history], marker="o", color="k",
            label="accepted share (all)")  # fmt: skip
    ax.set_xlabel("generation")
    ax.set_ylabel("accepted share")
    ax.set_ylim(0, 1)
    ax2 = ax.twinx()
    ax2.plot(gens, [h.val_macro_f1 for h in history], marker="s", ls="--", color="tab:red",
             label="validation macro-F1")  # fmt: skip
    kept = [h.generation for h in history if h.kept]
    ax2.scatter(kept, [h.val_macro_f1 for h in history if h.kept], s=80, facecolors="none",
                edgecolors="tab:red", label="generation kept")  # fmt: skip
    if reference is not None:
        ax2.axhline(reference, ls=":", color="tab:gray", label="validation macro-F1, real only")
    ax2.set_ylabel("validation macro-F1 (mean of the gate's seeds)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="lower left")
    ax.set_xticks(gens)
    ax.set_title("Self-evolution of the synthetic traffic")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(cfg: ExperimentConfig, evolve_cfg: EvolveConfig, train_cfg: TrainConfig,
        chat: ChatModel | None = None, command: str = "") -> dict[str, Any]:  # fmt: skip
    """The whole experiment (module docstring); returns the summary written to train.json."""
    t0 = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = load(cfg.corpus)
    events = read_events(Path(cfg.corpus) / "events.jsonl.gz")
    cal = Calibration.measure(corpus, events)
    cal.save(out / "calibration.json")
    x, y, xv, yv = split(corpus, train_cfg.length)
    if chat is None:
        chat = make_writer(GuardLlmSettings(), evolve_cfg.decoding, out, cfg.llm_cache)
    train_eps = [e for e in corpus.labels["episodes"] if e["part"] == "train"]
    model = StackModel(cal, corpus.labels["network"])
    loop = Loop(x, y, xv, yv, train_eps, model, chat, evolve_cfg, train_cfg)
    sets, history, stats = added_sets(loop, evolve_cfg)
    (out / "synthetic").mkdir(exist_ok=True)
    for method, (xs, ys) in sets.items():
        if method != "real_only":
            np.savez_compressed(out / "synthetic" / f"{method}.npz", x=xs, y=ys)
    (out / "evolution.json").write_text(json.dumps({
        "command": command, "llm": getattr(chat, "name", ""),
        "decoding": "constrained" if isinstance(chat, TemplateFiller) else "free",
        "config": asdict(evolve_cfg), "real_only_val_macro_f1": loop.reference_f1,
        "generations": [asdict(h) for h in history],
        "candidates": stats,
    }, indent=1, default=str))  # fmt: skip
    plot_history(history, out / "evolution.png", loop.reference_f1)
    det_dir = out / "detectors"
    if det_dir.exists():
        shutil.rmtree(det_dir)
    det_dir.mkdir()
    summary: dict[str, Any] = {
        "command": command, "corpus": str(Path(cfg.corpus).relative_to(ROOT))
        if Path(cfg.corpus).is_absolute() and Path(cfg.corpus).is_relative_to(ROOT)
        else str(cfg.corpus), "train_windows": _counts(y), "val_windows": _counts(yv),
        "added": {m: _counts(s[1]) for m, s in sets.items()}, "methods": {},
    }  # fmt: skip
    for method in METHODS:
        xs, ys = sets[method]
        runs = []
        for k in range(cfg.seeds):
            det, info = loop.fit_with(xs, ys, seed=k)
            pv = predict(det, xv)
            val = scores(yv, pv.argmax(1))
            thr = threshold(pv[yv == 0, 0])
            path = det_dir / f"{method}-s{k}.onnx"
            export_onnx(det, path)
            worst = parity_check(det, path, seed=k)
            write_card(path, det, {
                "method": method, "seed": k, "trained_on": summary["corpus"],
                "train": asdict(train_cfg) | {"seed": k}, "best_epoch": info["best_epoch"],
                "validation": val, "alert": {"threshold": thr, "rule": "P(benign) < threshold"},
                "onnx_parity_max_abs_diff": worst, "added_sequences": len(ys),
            })  # fmt: skip
            runs.append({"seed": k, "val_macro_f1": val["macro_f1"],
                         "val_accuracy": val["accuracy"], "threshold": thr})  # fmt: skip
        summary["methods"][method] = {
            "val_macro_f1_mean": round(float(np.mean([r["val_macro_f1"] for r in runs])), 4),
            "runs": runs,
        }
        log.info("method_trained", method=method, val_f1=summary["methods"][method])
    for f in det_dir.glob("synthetic_evolved-s0.*"):
        shutil.copy(f, out / f.name.replace("synthetic_evolved-s0", "guard"))
    card = json.loads((out / "guard.card.json").read_text())
    card["name"], card["file"] = "guard", "guard.onnx"
    (out / "guard.card.json").write_text(json.dumps(card, indent=1))
    summary["seconds"] = round(time.time() - t0, 1)
    (out / "train.json").write_text(json.dumps(summary, indent=1))
    return summary
