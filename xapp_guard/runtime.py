"""The exported detector under onnxruntime (no torch): what ``xapp-guard run`` loads.

:class:`Detector` checks the file against its card (sha256, classes, features) and
scores sequences of windows; :meth:`Detector.alerts` applies the card's alert rule: a
window is an alert when the probability that it is benign falls below the threshold,
and the alert names the most likely attack class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servicekit.integrity import sha256_file
from xapp_guard.features import NAMES
from xapp_guard.scenarios import CLASSES


class DetectorError(RuntimeError):
    """The model file or its card is missing, altered or for other features."""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Verdict:
    """A scored window: class probabilities, the alert decision and the likeliest attack."""

    probs: np.ndarray
    alert: bool
    attack: str
    score: float


class Detector:
    """An exported :class:`~xapp_guard.model.GuardCNN` with its card.

    Args:
        path: the ``.onnx`` file (its ``.card.json`` beside it).
        threshold: alert when P(benign) is below this (default: the card's).
        threads: onnxruntime intra-op threads.
    """

    def __init__(self, path: str | Path, threshold: float | None = None, threads: int = 1):
        import onnxruntime as ort

        self.path = Path(path)
        card_path = self.path.with_suffix(".card.json")
        if not self.path.is_file() or not card_path.is_file():
            raise DetectorError(f"{self.path} and its {card_path.name} are both needed")
        self.card = json.loads(card_path.read_text())
        digest = sha256_file(self.path)
        if digest != self.card.get("sha256"):
            raise DetectorError(f"{self.path.name}: sha256 {digest[:12]} is not the card's")
        if tuple(self.card.get("features", ())) != NAMES:
            raise DetectorError(f"{self.path.name} was trained on other features")
        if tuple(self.card.get("classes", ())) != CLASSES:
            raise DetectorError(f"{self.path.name} has other classes")
        self.length = int(self.card["length"])
        self.threshold = float(
            threshold if threshold is not None else self.card.get("alert", {}).get("threshold", 0.5)
        )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.path), opts, providers=["CPUExecutionProvider"]
        )

    def probs(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of sequences ``(n, L, F)`` (batched)."""
        if x.ndim != 3 or x.shape[1:] != (self.length, len(NAMES)):
            raise ValueError(f"expected (n, {self.length}, {len(NAMES)}), got {x.shape}")
        out = []
        for i in range(0, len(x), 1024):
            logits = self.session.run(["logits"], {"x": x[i : i + 1024].astype(np.float32)})[0]
            out.append(softmax(logits))
        return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)

    def verdicts(self, x: np.ndarray) -> list[Verdict]:
        """Alert decisions of sequences ``(n, L, F)``."""
        out = []
        for p in self.probs(x):
            attack = int(np.argmax(p[1:])) + 1
            out.append(Verdict(p, bool(p[0] < self.threshold), CLASSES[attack], float(1 - p[0])))
        return out
