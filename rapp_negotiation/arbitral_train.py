"""Training of the arbitral classifier (``rapp-negotiation train-arbitral``).

1. Compose the project's labelled messages (:func:`rapp_negotiation.arbitral_data.build`)
   and write them to ``models/negotiation/data/arbitral_train.jsonl`` (train and
   validation splits, by phrase family).
2. Embed them with MiniLM and fit an L2-regularised logistic regression on the train
   split (L-BFGS on the mean log-loss), once per penalty of ``l2_grid``.
3. Keep the penalty whose message scores (the maximum over a message and its sentences,
   :meth:`~rapp_negotiation.arbitral.ToxicityClassifier.scores`) have the best ROC AUC on
   the validation split, and the decision threshold that maximises F1 there.
4. Evaluate on the hand-written held-out set
   (``models/negotiation/data/arbitral_heldout.jsonl``), never used in steps 1-3.
5. Write ``classifier.json`` and ``card.json`` (data, configuration, metrics, sha256).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from rapp_negotiation.arbitral import (
    CARD_FILE,
    CLASSIFIER_DIR,
    MODELS_DIR,
    WEIGHTS_FILE,
    ToxicityClassifier,
)
from rapp_negotiation.arbitral_data import build
from rapp_negotiation.embedding import MODEL, MiniLM
from servicekit.integrity import sha256_file

DATA_DIR = MODELS_DIR / "data"
HELDOUT_PATH = DATA_DIR / "arbitral_heldout.jsonl"


@dataclass(frozen=True)
class TrainConfig:
    """Configuration of ``rapp-negotiation train-arbitral``."""

    examples: int = field(default=1600, metadata={"help": "messages composed", "ge": 100})
    seed: int = field(default=0, metadata={"help": "composition seed", "ge": 0})
    l2_grid: tuple[float, ...] = field(
        default=(1e-2, 1e-3, 1e-4), metadata={"help": "L2 penalties tried (validation picks)"}
    )
    out: Path = field(default=CLASSIFIER_DIR, metadata={"help": "output folder"})
    data_out: Path = field(
        default=DATA_DIR / "arbitral_train.jsonl", metadata={"help": "composed messages"}
    )
    heldout: Path = field(default=HELDOUT_PATH, metadata={"help": "held-out set (JSON Lines)"})


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Weights and bias minimising mean log-loss + l2/2 |w|² (L-BFGS)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    d = x.shape[1]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d], theta[d]
        z = x @ w + b
        # log(1 + e^z) - y z, computed stably.
        ll = np.logaddexp(0.0, z) - y * z
        p = 1.0 / (1.0 + np.exp(-z))
        g = p - y
        grad = np.concatenate([x.T @ g / len(y) + l2 * w, [g.mean()]])
        return float(ll.mean() + 0.5 * l2 * w @ w), grad

    res = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                   options={"maxiter": 2000})  # fmt: skip
    if not res.success:
        raise RuntimeError(f"logistic regression did not converge: {res.message}")
    return res.x[:d], float(res.x[d])


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    from scipy.stats import rankdata

    y = np.asarray(y)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """Accuracy, precision, recall, F1, ROC AUC and the confusion counts."""
    y = np.asarray(y).astype(int)
    pred = (np.asarray(p) >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": len(y),
        "accuracy": round((tp + tn) / len(y), 4),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "roc_auc": round(roc_auc(y, p), 4),
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold maximising F1 (ties: the one closest to 0.5)."""
    candidates = np.unique(np.concatenate([np.asarray(p), [0.5]]))
    best = max(candidates, key=lambda t: (metrics(y, p, t)["f1"], -abs(t - 0.5)))
    return float(best)


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON Lines file."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip()]  # fmt: skip


def train(cfg: TrainConfig, encoder: MiniLM | None = None) -> dict:
    """Train, evaluate and write the classifier and its card (module docstring)."""
    encoder = encoder or MiniLM()
    examples = build(cfg.examples, cfg.seed)
    cfg.data_out.parent.mkdir(parents=True, exist_ok=True)
    with cfg.data_out.open("w", encoding="utf-8") as fh:
        for e in examples:
            fh.write(json.dumps(asdict(e), ensure_ascii=False) + "\n")
    texts = [e.text for e in examples]
    y = np.array([e.malicious for e in examples])
    is_train = np.array([e.split == "train" for e in examples])
    x = encoder.encode(texts)
    val_texts = [t for t, keep in zip(texts, ~is_train, strict=True) if keep]
    cached = _CachedEncoder(encoder)
    selection = []
    for l2 in cfg.l2_grid:
        w, b = fit_logistic(x[is_train], y[is_train], l2)
        clf = ToxicityClassifier(w, b, 0.5, cached)
        p_val = np.asarray(clf.scores(val_texts))
        selection.append((roc_auc(y[~is_train], p_val), l2, clf, p_val))
    _, l2, clf, p_val = max(selection, key=lambda s: s[0])
    clf.threshold = best_threshold(y[~is_train], p_val)
    train_texts = [t for t, keep in zip(texts, is_train, strict=True) if keep]
    p_train = np.asarray(clf.scores(train_texts))
    clf.encoder = encoder
    held = read_jsonl(cfg.heldout)
    y_held = np.array([int(r["malicious"]) for r in held])
    p_held = np.asarray(clf.scores([r["text"] for r in held]))
    weights_path = clf.save(cfg.out)
    card = {
        "what": "Arbitral classifier of rapp_negotiation: flags malicious or toxic "
        "negotiation messages (maestro Fig. 2, arbitral unit).",
        "model": {
            "features": MODEL,
            "head": "logistic regression (L2), decision threshold picked on validation F1",
            "scoring": "maximum of p(malicious) over the message and each of its sentences",
            "l2": l2,
            "l2_selection": {str(s[1]): round(s[0], 5) for s in selection},
            "threshold": round(clf.threshold, 6),
        },
        "data": {
            "composed": {
                "file": _rel(cfg.data_out),
                "sha256": sha256_file(cfg.data_out),
                "generator": "rapp_negotiation.arbitral_data.build",
                "train": int(is_train.sum()),
                "validation": int((~is_train).sum()),
                "malicious_share": round(float(y.mean()), 3),
                "split": "by phrase family: validation phrases never appear in training",
            },
            "heldout": {
                "file": _rel(cfg.heldout),
                "sha256": sha256_file(cfg.heldout),
                "n": len(held),
                "about": "hand-written free text, no template shared with the training "
                "banks; never used for training, penalty or threshold selection (how often "
                "it has been read while the banks were written: models/negotiation/README.md)",
            },
        },
        "training": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in asdict(cfg).items()
            if k not in ("out", "data_out", "heldout")
        },
        "metrics": {
            "train": metrics(y[is_train], p_train, clf.threshold),
            "validation": metrics(y[~is_train], p_val, clf.threshold),
            "heldout": metrics(y_held, p_held, clf.threshold),
        },
        "heldout_errors": [
            {"text": r["text"], "malicious": int(r["malicious"]), "score": round(float(s), 4)}
            for r, s in zip(held, p_held, strict=True)
            if int(s >= clf.threshold) != int(r["malicious"])
        ],
        "artefacts": {WEIGHTS_FILE: {"sha256": sha256_file(weights_path)}},
        "command": "rapp-negotiation train-arbitral",
    }
    (Path(cfg.out) / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


class _CachedEncoder:
    """Memoises embeddings while the penalties are compared (same texts, several fits)."""

    def __init__(self, inner: MiniLM):
        self.inner = inner
        self.memo: dict[str, np.ndarray] = {}

    def encode(self, texts):
        missing = list(dict.fromkeys(t for t in texts if t not in self.memo))
        if missing:
            for t, e in zip(missing, self.inner.encode(missing), strict=True):
                self.memo[t] = e
        return np.stack([self.memo[t] for t in texts]) if texts else np.zeros((0, 384))


def _rel(path: Path) -> str:
    root = MODELS_DIR.parent.parent
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)
