"""Score E-LAMs on labelled intents: MSE, MAE and failure rate, overall and per application.

Definitions (MODEL.md, evaluation protocol):

- error of one request: the mean over the 4 components of the squared (MSE) or absolute
  (MAE) difference between the predicted and the labelled vector;
- MSE / MAE: the mean of that error over the requests that got a valid vector;
- failure_rate: the share of requests for which the model gave no valid vector (failures
  are excluded from MSE and MAE, and counted here);
- n: the number of requests.

The E-LAM is scored alone: each prompt with its application as context, without the
in-context memory (which depends on the service's history).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from agentnet.intents import APPS, EVEN, LabelledIntent
from rapp_intent.elam.base import ELam, MemoryContext, Vector


def score(predictions: Sequence[Vector | None], intents: Sequence[LabelledIntent]) -> dict:
    """MSE, MAE, failure rate and n of predictions (None = failure) against labels."""
    if len(predictions) != len(intents):
        raise ValueError(f"{len(predictions)} predictions for {len(intents)} intents")
    sq, ab, failures = [], [], 0
    for pred, intent in zip(predictions, intents, strict=True):
        if pred is None:
            failures += 1
            continue
        diffs = [p - t for p, t in zip(pred, intent.s, strict=True)]
        sq.append(sum(d * d for d in diffs) / 4)
        ab.append(sum(abs(d) for d in diffs) / 4)
    n = len(intents)
    return {
        "mse": sum(sq) / len(sq) if sq else math.nan,
        "mae": sum(ab) / len(ab) if ab else math.nan,
        "failure_rate": failures / n if n else math.nan,
        "n": n,
    }


def report(predictions: Sequence[Vector | None], intents: Sequence[LabelledIntent]) -> dict:
    """``{"overall": score, "per_app": {app: score}}`` (apps in INTENTS.md order)."""
    per_app: dict[str, Any] = {}
    apps = [a for a in APPS if any(i.app == a for i in intents)]
    apps += sorted({i.app for i in intents} - set(apps))
    for app in apps:
        idx = [k for k, i in enumerate(intents) if i.app == app]
        per_app[app] = score([predictions[k] for k in idx], [intents[k] for k in idx])
    return {"overall": score(predictions, intents), "per_app": per_app}


def predict(
    elam: ELam, intents: Sequence[LabelledIntent], batch_size: int = 64
) -> list[Vector | None]:
    """The E-LAM's vectors (None on failure), each prompt with its application."""
    out: list[Vector | None] = []
    for start in range(0, len(intents), batch_size):
        chunk = intents[start : start + batch_size]
        results = elam.translate(
            [i.prompt for i in chunk], [MemoryContext(app=i.app) for i in chunk]
        )
        out += [r.vector for r in results]
    return out


def evaluate(elams: Sequence[ELam], intents: Sequence[LabelledIntent]) -> dict[str, dict]:
    """Reports of each E-LAM and of the even baseline [0.25] * 4, keyed by model id."""
    out = {e.id: report(predict(e, intents), intents) for e in elams}
    out["even"] = report([EVEN] * len(intents), intents)
    return out
