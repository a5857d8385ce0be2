"""Tune the scalars of the ``minilm`` zero-shot mapping on the project's TRAIN split.

The factor descriptions in ``data/minilm_zeroshot.json`` are written by hand from the
INTENTS.md rubric; this script fits only the few scalars that turn similarities into a
vector (scale, waive scale, application-prior weight, four biases, pooling) by minimising
the MSE on the labelled intents whose ``split`` is ``train``, then the Dirichlet
concentration c0 by maximum likelihood on the same data. It reports the held-out split
too but never fits on it, and never reads ``dev_intents.jsonl``.

Usage: ``python -m rapp_intent.elam.minilm_tune [--write]``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from agentnet.intents import LabelledIntent, project_intents
from rapp_intent.elam.encoder_torch import TorchEncoder
from rapp_intent.elam.minilm import (
    POOLINGS,
    ZEROSHOT_PATH,
    MiniLMELam,
    ZeroShotConfig,
    prepare_targets,
)


def _mse(model: MiniLMELam, rows: Sequence[LabelledIntent]) -> float:
    pred = model.predict_mean([r.prompt for r in rows], [r.app for r in rows])
    return float(((pred - np.array([r.s for r in rows])) ** 2).mean())


def fit(
    model: MiniLMELam, rows: Sequence[LabelledIntent], steps: int = 400
) -> tuple[ZeroShotConfig, float]:
    """Fit the zero-shot scalars on ``rows`` for each pooling; return the best config."""
    prompts = [r.prompt for r in rows]
    target = torch.tensor([r.s for r in rows], dtype=torch.float32)
    emb, idx = model.inputs(prompts, [r.app for r in rows])
    best: tuple[float, ZeroShotConfig] | None = None
    for pooling in POOLINGS:
        model.zeroshot = replace(model.zeroshot, pooling=pooling)
        with torch.no_grad():
            raise_sim, waive_sim = model.similarity_features(emb)
        raise_c = raise_sim - raise_sim.mean(-1, keepdim=True)
        waive_c = waive_sim - waive_sim.mean(-1, keepdim=True)
        log_prior = model._log_prior[idx]
        # Parameters: log scale, log waive scale, prior weight, biases (sum-zero by centring).
        params = torch.tensor([np.log(20.0), np.log(5.0), 0.0, 0.0, 0.0, 0.0, 0.0])
        params.requires_grad_(True)
        opt = torch.optim.Adam([params], lr=0.05)
        for _ in range(steps):
            opt.zero_grad()
            bias = params[3:] - params[3:].mean()
            z = params[0].exp() * raise_c - params[1].exp() * waive_c
            z = z + params[2] * log_prior + bias
            loss = ((torch.softmax(z, -1) - target) ** 2).mean()
            loss.backward()
            opt.step()
        p = params.detach()
        bias = (p[3:] - p[3:].mean()).tolist()
        cfg = replace(
            model.zeroshot,
            scale=round(float(p[0].exp()), 4),
            waive_scale=round(float(p[1].exp()), 4),
            prior_weight=round(float(p[2]), 4),
            bias=[round(b, 4) for b in bias],
        )
        model.zeroshot = cfg
        mse = _mse(model, rows)
        if best is None or mse < best[0]:
            best = (mse, cfg)
    assert best is not None
    model.zeroshot = best[1]
    return best[1], best[0]


def fit_concentration(model: MiniLMELam, rows: Sequence[LabelledIntent]) -> float:
    """Maximum-likelihood c0 of the raw Dirichlet on ``rows`` (grid over log c0)."""
    prompts = [r.prompt for r in rows]
    apps = [r.app for r in rows]
    targets = prepare_targets([r.s for r in rows])
    with torch.no_grad():
        mean = model.distribution(prompts, apps).mean
    grid = np.exp(np.linspace(np.log(2.0), np.log(500.0), 200))
    ll = [float(torch.distributions.Dirichlet(c * mean).log_prob(targets).mean()) for c in grid]
    return round(float(grid[int(np.argmax(ll))]), 3)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ZEROSHOT_PATH)
    parser.add_argument("--write", action="store_true", help="write the tuned config back")
    args = parser.parse_args(argv)

    train, heldout = project_intents("train"), project_intents("heldout")
    model = MiniLMELam(TorchEncoder(), ZeroShotConfig.load(args.config))
    even = float(((np.array([r.s for r in heldout]) - 0.25) ** 2).mean())
    before = {"train_mse": _mse(model, train), "heldout_mse": _mse(model, heldout)}
    cfg, train_mse = fit(model, train)
    model.zeroshot = cfg = replace(cfg, concentration=fit_concentration(model, train))
    after = {"train_mse": train_mse, "heldout_mse": _mse(model, heldout)}
    cfg.tuned_on = {
        "data": "agentnet/data/intents/*.jsonl, split=train",
        "n_train": len(train),
        "train_mse": round(after["train_mse"], 6),
        "heldout_mse": round(after["heldout_mse"], 6),
        "heldout_even_mse": round(even, 6),
    }
    print(
        json.dumps(
            {
                "before": before,
                "after": after,
                "heldout_even_mse": even,
                **{
                    k: getattr(cfg, k)
                    for k in (
                        "scale",
                        "waive_scale",
                        "prior_weight",
                        "bias",
                        "concentration",
                        "pooling",
                    )
                },
            },
            indent=2,
        )
    )
    if args.write:
        cfg.save(args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
