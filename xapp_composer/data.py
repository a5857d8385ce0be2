"""Request sets for SRL training, validation and evaluation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agentnet.intents import APPS, LabelledIntent, project_intents
from xapp_composer.configs import PredictionSource
from xapp_composer.episodes import RequestSet, synthetic_predictions
from xapp_composer.predictions import (
    ELAM_PARAMS,
    rapp_predictions,
    residual_predictions,
)

SYNTHETIC_NOISE = {"minilm": 0.07, "smollm2": 0.09}
"""Std of the stand-in E-LAM error when no rApp model is used (tests, quick runs)."""


def _filter(intents: Sequence[LabelledIntent], app: str | None) -> list[LabelledIntent]:
    if app is None:
        return list(intents)
    if app not in APPS:
        raise ValueError(f"unknown application {app!r}; expected one of {APPS}")
    return [i for i in intents if i.app == app]


def predictions_for(
    intents: Sequence[LabelledIntent],
    elam_ids: Sequence[str],
    source: PredictionSource,
    rng: np.random.Generator,
    *,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Each E-LAM's vector for each prompt: the rApp's models, or a noisy stand-in."""
    if source == "rapp":
        preds, params, _ = rapp_predictions(elam_ids, intents, progress=progress)
        return preds, params
    s = np.array([i.s for i in intents])
    preds = {e: synthetic_predictions(s, SYNTHETIC_NOISE.get(e, 0.08), rng) for e in elam_ids}
    return preds, {e: ELAM_PARAMS.get(e, 1e8) for e in elam_ids}


def training_sets(
    elam_ids: Sequence[str],
    source: PredictionSource,
    *,
    app: str | None = None,
    draws: int = 8,
    seed: int = 0,
    progress: bool = False,
) -> tuple[RequestSet, RequestSet]:
    """(training requests, validation requests) from the project's labelled intents.

    Training: the train split (of ``app`` if given), each intent repeated ``draws`` times
    with predictions drawn from each E-LAM's held-out errors (:mod:`xapp_composer.predictions`).
    Validation: the held-out split with the E-LAMs' real predictions. dev_intents.jsonl
    is never used here.
    """
    rng = np.random.default_rng(seed)
    train = _filter(project_intents("train"), app)
    heldout_all = project_intents("heldout")
    heldout = _filter(heldout_all, app)
    hp, params = predictions_for(heldout_all, elam_ids, source, rng, progress=progress)
    train_preds = {e: residual_predictions(train, heldout_all, hp[e], draws, rng) for e in elam_ids}
    train_rep = [t for t in train for _ in range(draws)]
    keep = np.array([h.app == app for h in heldout_all]) if app else np.ones(len(heldout_all), bool)
    val_preds = {e: hp[e][keep] for e in elam_ids}
    return (
        RequestSet.from_intents(train_rep, train_preds, params),
        RequestSet.from_intents(heldout, val_preds, params),
    )


def evaluation_requests(
    intents: Sequence[LabelledIntent],
    elam_ids: Sequence[str],
    source: PredictionSource,
    *,
    seed: int = 0,
    progress: bool = False,
) -> RequestSet:
    """Requests to evaluate on, with each E-LAM's prediction for each prompt."""
    rng = np.random.default_rng(seed)
    preds, params = predictions_for(intents, elam_ids, source, rng, progress=progress)
    return RequestSet.from_intents(list(intents), preds, params)
