"""Early stopping on a validation score, shared by the distillation loops."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class EarlyStopping:
    """Keeps the best epoch by a validation score (lower is better) and says when to stop.

    Attributes:
        patience: epochs without a better score before training stops.
        min_delta: how much lower a score must be to count as better.
        best: the best score so far.
        best_epoch: its epoch (1-based; 0 before any).
        snapshot: what :meth:`update` took at the best epoch (e.g. the weights).
    """

    patience: int
    min_delta: float = 1e-7
    best: float = math.inf
    best_epoch: int = 0
    snapshot: Any = None

    def update(self, epoch: int, score: float, snapshot: Callable[[], Any]) -> bool:
        """Record ``score`` of ``epoch`` (1-based), snapshotting a new best; True: stop now."""
        if score < self.best - self.min_delta:
            self.best, self.best_epoch, self.snapshot = score, epoch, snapshot()
        return epoch - self.best_epoch >= self.patience
