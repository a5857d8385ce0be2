"""The scores every method is compared by (numpy only: ``xapp-guard eval`` runs the
exported detectors under onnxruntime, without torch)."""

from __future__ import annotations

import numpy as np

from xapp_guard.scenarios import CLASSES


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = len(CLASSES)) -> dict:
    """Accuracy, macro-F1 (over the classes present in ``y_true``) and per-class scores."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    per_class: dict[str, dict[str, float]] = {}
    f1s = []
    for c in range(n_classes):
        tp = int(np.sum((y_pred == c) & (y_true == c)))
        fp = int(np.sum((y_pred == c) & (y_true != c)))
        fn = int(np.sum((y_pred != c) & (y_true == c)))
        support = tp + fn
        if support == 0:
            continue
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / support
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[CLASSES[c]] = {"precision": round(precision, 4), "recall": round(recall, 4),
                                 "f1": round(f1, 4), "support": support}  # fmt: skip
        f1s.append(f1)
    return {
        "accuracy": round(float(np.mean(y_true == y_pred)) if len(y_true) else 0.0, 4),
        "macro_f1": round(float(np.mean(f1s)) if f1s else 0.0, 4),
        "per_class": per_class,
    }
