"""IoKD for the ``minilm`` E-LAM with a frozen encoder: weighted DPO on the Dirichlet head.

The policy pi_theta(s | p) is the E-LAM's Dirichlet over the simplex
(:class:`rapp_intent.elam.minilm.MiniLMELam`); its learnable part is the
:class:`~rapp_intent.elam.minilm.DirichletHead`, trained on the pairs of
:mod:`rapp_intent.iokd.minilm_pairs` with eq. 31 and each pair's beta (eq. 32). The
embeddings are cached (``<cache_dir>/iokd/``), so an epoch touches only the head.

A validation subset of the training data (whole groups: a labelled sample with the
synthetic samples made from it) picks the number of epochs; the head is then refitted on
all the training data for that many epochs, as an ensemble of heads merged into one
(:func:`merge_heads`). The held-out split and the dev set are only evaluated, after
training, for the model card. :mod:`rapp_intent.iokd.distill_minilm_encoder` trains LoRA
adapters of the encoder with the head (the shipped configuration).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from rapp_intent.elam.minilm import DirichletHead, MiniLMELam, app_index
from rapp_intent.iokd.config import MinilmDistillConfig
from rapp_intent.iokd.data import Sample
from rapp_intent.iokd.early_stopping import EarlyStopping
from rapp_intent.iokd.minilm_pairs import PairTensors, embeddings, pair_loss, prepare


class _InputDropout(torch.nn.Module):
    """The head with dropout on its embedding input (training only)."""

    def __init__(self, head: DirichletHead, p: float):
        super().__init__()
        self.head, self.p = head, p

    def forward(
        self, embedding: torch.Tensor, app_idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.p > 0:
            embedding = torch.nn.functional.dropout(embedding, self.p, training=True)
        return self.head(embedding, app_idx)


def train_head(
    elam: MiniLMELam,
    pairs: PairTensors,
    config: MinilmDistillConfig,
    epochs: int,
    val: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    progress: bool = False,
    desc: str = "distil minilm",
) -> tuple[DirichletHead, dict[str, Any]]:
    """Train a fresh head on ``pairs`` (eq. 31 with the configured beta).

    Args:
        elam: the raw E-LAM (zero-shot logits, concentration c0).
        pairs: training pairs.
        config: hyper-parameters.
        epochs: epochs to run (early stopping may end sooner when ``val`` is given).
        val: (embedding, app_idx, target) of validation samples; picks the best epoch.
        progress: tqdm bar over epochs.
        desc: bar label.

    Returns:
        The trained head (the best epoch's when ``val`` is given) and the history.
    """
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    head = DirichletHead(hidden=config.hidden)
    trained = _InputDropout(head, config.embed_dropout)
    average = copy.deepcopy(head) if config.ema > 0 else head
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: dict[str, Any] = {"loss": [], "accuracy": [], "val_mse": []}
    stop = EarlyStopping(config.patience)
    bar = tqdm(range(epochs), desc=desc, disable=not progress, unit="epoch")
    for epoch in bar:
        head.train()
        order = torch.randperm(len(pairs), generator=gen)
        losses, accs = [], []
        for start in range(0, len(order), config.batch_size):
            b = order[start : start + config.batch_size]
            dist = elam.distribution_from(pairs.embedding[b], pairs.app_idx[b], trained)
            out = pair_loss(dist, pairs, b, config)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            if config.ema > 0:
                with torch.no_grad():
                    for p_avg, p in zip(average.parameters(), head.parameters(), strict=True):
                        p_avg.lerp_(p, 1.0 - config.ema)
            losses.append(float(out.loss.detach()))
            accs.append(float(out.accuracy))
        history["loss"].append(float(np.mean(losses)))
        history["accuracy"].append(float(np.mean(accs)))
        if val is not None:
            average.eval()
            with torch.no_grad():
                mean = elam.distribution_from(val[0], val[1], average).mean
            mse = float(((mean - val[2]) ** 2).mean())
            history["val_mse"].append(mse)
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", val_mse=f"{mse:.5f}")
            if stop.update(epoch + 1, mse, lambda: copy.deepcopy(average.state_dict())):
                break
        else:
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}")
    if stop.snapshot is not None:
        average.load_state_dict(stop.snapshot)
        history["best_epoch"], history["best_val_mse"] = stop.best_epoch, stop.best
    history["epochs_run"] = len(history["loss"])
    return average.eval(), history


def merge_heads(heads: Sequence[DirichletHead]) -> DirichletHead:
    """One head whose outputs are the mean of the given heads' outputs, exactly.

    A :class:`DirichletHead` is ``W2 gelu(W1 x + b1) + b2``: stacking the hidden units of
    K heads and scaling the output layer by 1/K gives ``mean_k(W2_k gelu(W1_k x + b1_k) +
    b2_k)``, i.e. the average of their logit offsets and log-concentrations. The result
    loads in the rApp like any head (its card records the wider hidden size).
    """
    if not heads:
        raise ValueError("no heads to merge")
    if len(heads) == 1:
        return heads[0]
    first = heads[0]
    if any((h.embed_dim, h.n_apps) != (first.embed_dim, first.n_apps) for h in heads):
        raise ValueError("heads differ in input size")
    merged = DirichletHead(
        embed_dim=first.embed_dim, hidden=sum(h.hidden for h in heads), n_apps=first.n_apps
    )
    k = len(heads)
    with torch.no_grad():
        merged.net[0].weight.copy_(torch.cat([h.net[0].weight for h in heads], dim=0))
        merged.net[0].bias.copy_(torch.cat([h.net[0].bias for h in heads]))
        merged.net[2].weight.copy_(torch.cat([h.net[2].weight for h in heads], dim=1) / k)
        merged.net[2].bias.copy_(torch.stack([h.net[2].bias for h in heads]).mean(0))
    return merged.eval()


def distill_minilm(
    elam: MiniLMELam,
    samples: Sequence[Sample],
    config: MinilmDistillConfig | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> tuple[DirichletHead, dict[str, Any]]:
    """Distil D_IoKD into a Dirichlet head for ``elam`` (which must be the raw E-LAM).

    Args:
        elam: the raw ``minilm`` E-LAM (its head is not modified).
        samples: D_IoKD (one or more applications, with contrastive vectors).
        config: hyper-parameters.
        cache_dir: embedding cache root (None: no disk cache).
        progress: tqdm bars.

    Returns:
        The distilled head and a training summary (for the model card).
    """
    config = config or MinilmDistillConfig()
    start = time.perf_counter()
    prep = prepare(elam, samples, config, cache_dir)
    pairs, summary = prep.pairs, prep.summary
    epochs = config.epochs
    if prep.val.any():
        val = [prep.samples[i] for i in np.flatnonzero(prep.val)]
        in_train = torch.from_numpy(prep.train)[pairs.sample]
        emb = embeddings(elam, [s.prompt for s in val], cache_dir)
        app = torch.tensor([app_index(s.app) for s in val])
        target = torch.tensor([s.s for s in val], dtype=torch.float32)
        with torch.no_grad():
            raw_mean = elam.distribution_from(emb, app, DirichletHead(hidden=config.hidden)).mean
        summary["val_mse_raw"] = float(((raw_mean - target) ** 2).mean())
        head, hist = train_head(
            elam,
            pairs.subset(in_train),
            config,
            config.epochs,
            (emb, app, target),
            progress,
            "minilm: choose epochs",
        )
        epochs = hist["best_epoch"]
        summary.update(
            {
                "val_samples": len(val),
                "val_mse": hist["best_val_mse"],
                "best_epoch": epochs,
                "val_curve": [round(x, 6) for x in hist["val_mse"]],
            }
        )
    else:
        head, hist = train_head(elam, pairs, config, epochs, None, progress)
    if (config.refit and prep.val.any()) or config.ensemble > 1:
        members = []
        for j in range(config.ensemble):
            member_config = replace(config, seed=config.seed + j)
            desc = "minilm: refit" + (f" {j + 1}/{config.ensemble}" if config.ensemble > 1 else "")
            member, hist = train_head(elam, pairs, member_config, epochs, None, progress, desc)
            members.append(member)
        head = merge_heads(members)
        summary["ensemble"] = config.ensemble
    summary.update(
        {
            "epochs": epochs,
            "final_loss": hist["loss"][-1],
            "final_pair_accuracy": hist["accuracy"][-1],
            "train_seconds": round(time.perf_counter() - start, 1),
            "config": asdict(config),
        }
    )
    return head, summary
