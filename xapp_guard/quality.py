"""Quality checks on synthetic samples, against the real training data.

A candidate (:class:`~xapp_guard.synth.Candidate`) is refused, with the first reason
that applies:

1. ``schema``: its answer did not parse or lies outside the bounds (set when it was
   realised, :func:`~xapp_guard.synth.realise`);
2. ``empty``: its scenario produced no window of its class;
3. ``duplicate``: its scenario repeats an example or an earlier candidate's parameters,
   or its sequences are (near-)copies of a real sequence or of an earlier candidate's;
4. ``far``: its sequences lie far from every real sequence of the class: the median
   distance to the ``k``-th nearest real sequence of the class exceeds ``far_factor``
   times the 95th percentile of the real sequences' own such distances;
5. ``classifier``: a detector trained on the real data alone gives its class a mean
   probability below ``min_prob`` (it looks confidently like another class).

Distances are Euclidean in the standardised ``log1p`` space of the detector's input,
over the last :data:`~xapp_guard.synth.K_WINDOWS` windows of each sequence (what both
routes write). :func:`mmd` measures a whole accepted set against the real class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from xapp_guard.synth import K_WINDOWS, Candidate

Probs = Callable[[np.ndarray], np.ndarray]
"""Class probabilities of sequences ``(n, L, F)``."""


@dataclass
class QualityConfig:
    """Thresholds of the checks."""

    k: int = field(default=3, metadata={"help": "neighbours of the distance check"})
    far_factor: float = field(default=1.5, metadata={"help": "distance check's slack"})
    min_prob: float = field(default=0.05, metadata={"help": "classifier filter's threshold"})
    dup_eps: float = field(
        default=0.05, metadata={"help": "distance of a near-copy (a rounded copy is one)"}
    )


class QualityChecks:
    """The checks, fitted on the real training sequences.

    Args:
        x: real training sequences ``(n, L, F)``; y: their classes.
        probs: the real-data detector's class probabilities (the classifier filter).
        cfg: thresholds.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, probs: Probs,
                 cfg: QualityConfig | None = None):  # fmt: skip
        self.cfg = cfg or QualityConfig()
        self.probs = probs
        z = self._log(x)
        self.mu = z.mean(0)
        sd = z.std(0)
        self.sd = np.where(sd > 1e-6, sd, 1.0)
        self.z = (z - self.mu) / self.sd
        self.y = y
        self.radius: dict[int, float] = {}
        for c in np.unique(y):
            zc = self.z[y == c]
            if len(zc) <= self.cfg.k:
                self.radius[int(c)] = np.inf
                continue
            d = _dist(zc, zc)
            np.fill_diagonal(d, np.inf)
            kth = np.sort(d, axis=1)[:, self.cfg.k - 1]
            self.radius[int(c)] = float(np.percentile(kth, 95))
        self._seen: list[np.ndarray] = []
        self._seen_params: set[str] = set()

    @staticmethod
    def _log(x: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(x[:, -K_WINDOWS:, :], 0)).reshape(len(x), -1)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Standardised log features of the last windows, ``(n, K * F)``."""
        return (self._log(x) - self.mu) / self.sd

    def remember_examples(self, params: Sequence[dict]) -> None:
        """Scenario parameters a candidate must not repeat (the prompts' examples)."""
        for p in params:
            self._seen_params.add(_key(p))

    def check(self, c: Candidate) -> str:
        """The reason ``c`` is refused ("" when it passes); remembers accepted ones."""
        if c.reason:
            return c.reason
        cls = self._class(c)
        own = c.own
        if not len(own):
            return "empty: no window of its class"
        if c.scenario is not None:
            key = _key(c.scenario.params | {"class": c.cls})
            if key in self._seen_params:
                return "duplicate: repeats the parameters of an example or earlier candidate"
        e = self.embed(own)
        near_real = _dist(e, self.z).min(axis=1)
        if (near_real < self.cfg.dup_eps).all():
            return "duplicate: copies real sequences"
        if self._seen:
            seen = np.concatenate(self._seen)
            if (_dist(e, seen).min(axis=1) < self.cfg.dup_eps).all():
                return "duplicate: copies an earlier candidate"
        radius = self.radius.get(cls, np.inf)
        zc = self.z[self.y == cls]
        if len(zc) >= self.cfg.k:
            kth = np.sort(_dist(e, zc), axis=1)[:, self.cfg.k - 1]
            if float(np.median(kth)) > self.cfg.far_factor * radius:
                return (
                    f"far: {float(np.median(kth)):.1f} from the real class "
                    f"(its own spread {radius:.1f})"
                )
        p = float(self.probs(own)[:, cls].mean())
        if p < self.cfg.min_prob:
            return f"classifier: P({c.cls}) = {p:.3f} under the real-data detector"
        self._seen.append(e)
        if c.scenario is not None:
            self._seen_params.add(_key(c.scenario.params | {"class": c.cls}))
        return ""

    @staticmethod
    def _class(c: Candidate) -> int:
        from xapp_guard.scenarios import CLASSES

        return CLASSES.index(c.cls)

    def mmd(self, x: np.ndarray, cls: int) -> float:
        """Squared maximum mean discrepancy (RBF kernel, median bandwidth) between
        sequences ``x`` and the real sequences of class ``cls``."""
        a, b = self.embed(x), self.z[self.y == cls]
        if not len(a) or not len(b):
            return float("nan")
        d_ab, d_aa, d_bb = _dist(a, b) ** 2, _dist(a, a) ** 2, _dist(b, b) ** 2
        h = float(np.median(d_ab)) or 1.0
        return float(np.exp(-d_aa / h).mean() + np.exp(-d_bb / h).mean()
                     - 2 * np.exp(-d_ab / h).mean())  # fmt: skip


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def _key(params: dict) -> str:
    import json

    return json.dumps(params, sort_keys=True)
