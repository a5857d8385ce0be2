"""Training the detector, and the scores every method is compared by.

:func:`fit` trains a :class:`~xapp_guard.model.GuardCNN` on sequences with per-sample
weights (a synthetic sample can count less than a real one), classes balanced by
inverse frequency, AdamW, and keeps the epoch with the best validation macro-F1 (the
validation split is real recorded data, never the test recording), scored by
:func:`~xapp_guard.scoring.scores`.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from xapp_guard.config import TrainConfig
from xapp_guard.model import GuardCNN, ModelConfig
from xapp_guard.scenarios import CLASSES
from xapp_guard.scoring import scores


def predict(model: GuardCNN, x: np.ndarray) -> np.ndarray:
    """Class probabilities ``(n, C)`` under torch (training-time evaluation)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), 2048):
            out.append(torch.softmax(model(torch.from_numpy(x[i : i + 2048])), 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def fit(
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    cfg: TrainConfig,
    weight: np.ndarray | None = None,
    scale_from: np.ndarray | None = None,
) -> tuple[GuardCNN, dict[str, Any]]:
    """Train a detector.

    Args:
        x: training sequences ``(n, L, F)``; y: their classes.
        x_val: validation sequences; y_val: their classes (the epoch is chosen on them).
        cfg: the training configuration.
        weight: per-sample weight (default 1).
        scale_from: the sequences the input scaling is fitted on (default ``x``; the real
            training data, so that synthetic samples cannot shift it).

    Returns:
        The model at its best validation epoch, and the history (epoch, loss, val F1).
    """
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    model = GuardCNN(ModelConfig(length=cfg.length, hidden=cfg.hidden))
    model.set_scaling(scale_from if scale_from is not None else x)
    w = np.ones(len(x), np.float32) if weight is None else weight.astype(np.float32)
    counts = np.bincount(y, weights=w, minlength=len(CLASSES))
    class_w = np.where(counts > 0, counts.sum() / (len(CLASSES) * np.maximum(counts, 1e-9)), 0)
    w = w * class_w[y].astype(np.float32)
    w = w / w.mean()
    xt, yt, wt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    best: tuple[float, int, dict] = (-1.0, -1, {})
    history = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = rng.permutation(len(x))
        total = 0.0
        for i in range(0, len(order), cfg.batch):
            idx = torch.from_numpy(order[i : i + cfg.batch])
            loss = (loss_fn(model(xt[idx]), yt[idx]) * wt[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            f1 = scores(y_val, predict(model, x_val).argmax(1))["macro_f1"]
            history.append({"epoch": epoch, "loss": round(total / len(x), 5), "val_macro_f1": f1})
            if f1 > best[0]:
                best = (f1, epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    model.eval()
    return model, {"best_epoch": best[1], "val_macro_f1": best[0], "history": history}
