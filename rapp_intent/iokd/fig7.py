"""The paper's Fig. 7 as data: MSE of IoKD-distilled ``minilm`` against training size.

The labelled training samples are cut to nested subsets, stratified by application and
seeded, each with and without the synthetic samples made from them; each point trains a
fresh head on the frozen encoder (seconds each, so the study runs in minutes: 8 encoder
trainings of several minutes each would not fit the report's budget, so its curve is the
head-only one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agentnet.intents import APPS
from rapp_intent.elam.encoder_torch import TorchEncoder
from rapp_intent.elam.minilm import MiniLMELam
from rapp_intent.evaluate import predict, report
from rapp_intent.iokd.config import MinilmDistillConfig
from rapp_intent.iokd.data import Sample
from rapp_intent.iokd.dataset import load_dataset
from rapp_intent.iokd.distill_minilm import distill_minilm

FRACTIONS = (0.125, 0.25, 0.5, 1.0)
"""Shares of the labelled training samples, one point each (with and without synthetic)."""


def subset(samples: Sequence[Sample], fraction: float, seed: int = 0) -> list[Sample]:
    """Nested, app-stratified subset of the labelled samples and their synthetic children."""
    labelled = [s for s in samples if s.origin == "labelled"]
    chosen: set[str] = set()
    for app in APPS:
        ids = sorted(s.id for s in labelled if s.app == app)
        order = np.random.default_rng([seed, APPS.index(app)]).permutation(len(ids))
        chosen |= {ids[i] for i in order[: max(1, round(fraction * len(ids)))]}
    return [s for s in samples if s.id in chosen or s.source_id in chosen]


def fig7(
    data_dir: Path,
    sets: dict[str, list[Sample]],
    cache_dir: Path,
    *,
    ensemble: int = 1,
    progress: bool = False,
) -> dict[str, Any]:
    """MSE of IoKD-distilled ``minilm`` against the number of labelled training samples.

    Args:
        data_dir: the IoKD dataset.
        sets: the evaluation sets by name.
        cache_dir: embedding cache root.
        ensemble: heads per point (1: a single head; the shipped head may average more).
        progress: a progress bar over the points.
    """
    data = load_dataset(APPS, data_dir)
    raw = MiniLMELam(TorchEncoder())
    study = replace(MinilmDistillConfig(), ensemble=ensemble, encoder_lora_r=0)
    points = []
    runs = [(f, aug) for f in FRACTIONS for aug in (False, True)]
    for fraction, aug in tqdm(runs, desc="Fig. 7", disable=not progress, unit="run"):
        chosen = subset(data, fraction)
        if not aug:
            chosen = [s for s in chosen if s.origin != "synthetic"]
        head, _ = distill_minilm(raw, chosen, study, Path(cache_dir), progress=False)
        trained = MiniLMELam(raw.encoder)
        trained.head = head
        point = {
            "fraction": fraction,
            "augmented": aug,
            "labelled": sum(s.origin == "labelled" for s in {x.id: x for x in chosen}.values()),
            "synthetic": sum(s.origin == "synthetic" for s in chosen),
        }
        for name, samples in sets.items():
            point[f"{name}_mse"] = report(predict(trained, samples), samples)["overall"]["mse"]
        points.append(point)
    return {
        "points": points,
        "config": asdict(study),
        "note": "minilm heads on the frozen encoder (the shipped artefact also tunes "
        "encoder LoRA adapters), fig7_ensemble heads per point",
    }
