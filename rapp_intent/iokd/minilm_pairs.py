"""The training pairs of eq. 31 for the ``minilm`` E-LAM, with everything fixed precomputed.

Each sample of D_IoKD with k contrastive vectors gives k pairs (p, s_p, s_c). The prompt
embeddings, the reference log-densities log pi_ref(s | p) of the raw E-LAM (a fresh head,
whose zero last layer leaves the zero-shot Dirichlet unchanged: the E-LAM before
distillation, as eq. 31 asks) and each pair's beta (eq. 32) never change during training
and are computed once.

Targets are smoothed away from the simplex boundary before any log-density:
s' = (1 - eps) s + eps / 4, then floored by the E-LAM's ``prepare_targets``. A Dirichlet
density at a weight of exactly 0 is infinite or zero, never useful.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rapp_intent.elam.minilm import DirichletHead, MiniLMELam, app_index, prepare_targets
from rapp_intent.iokd.config import MinilmDistillConfig
from rapp_intent.iokd.data import Sample, dedupe
from rapp_intent.iokd.loss import LossOutput, dataset_means, iokd_loss, sample_beta


@dataclass
class PairTensors:
    """The training pairs of eq. 31, with everything that does not change precomputed.

    Attributes:
        embedding: prompt embeddings, (n_pairs, 384).
        app_idx: application indices, (n_pairs,).
        chosen: smoothed s_p, (n_pairs, 4).
        rejected: smoothed s_c, (n_pairs, 4).
        ref_chosen: log pi_ref(s_p | p), (n_pairs,).
        ref_rejected: log pi_ref(s_c | p), (n_pairs,).
        beta: per-pair beta (eq. 32 or constant), (n_pairs,).
        sample: index of the pair's sample, (n_pairs,).
    """

    embedding: torch.Tensor
    app_idx: torch.Tensor
    chosen: torch.Tensor
    rejected: torch.Tensor
    ref_chosen: torch.Tensor
    ref_rejected: torch.Tensor
    beta: torch.Tensor
    sample: torch.Tensor

    def __len__(self) -> int:
        return len(self.beta)

    def subset(self, mask: torch.Tensor) -> PairTensors:
        """The pairs where ``mask`` is true."""
        return PairTensors(**{k: v[mask] for k, v in self.__dict__.items()})


def smooth(targets: np.ndarray | Sequence, eps: float) -> torch.Tensor:
    """Targets pulled off the simplex boundary: (1 - eps) s + eps / 4, then floored."""
    t = torch.as_tensor(np.asarray(targets, dtype=np.float32))
    return prepare_targets((1.0 - eps) * t + eps / t.shape[-1])


def embeddings(elam: MiniLMELam, prompts: Sequence[str], cache_dir: Path | None) -> torch.Tensor:
    """Prompt embeddings, cached on disk by the hash of the prompts and the encoder."""
    key = hashlib.sha256(
        json.dumps(
            [type(elam.encoder).__name__, getattr(elam.encoder, "adapter_sha", ""), list(prompts)]
        ).encode()
    ).hexdigest()[:24]
    path = Path(cache_dir) / "iokd" / f"minilm-emb-{key}.npy" if cache_dir else None
    if path is not None and path.exists():
        arr = np.load(path)
        if arr.shape == (len(prompts), 384):
            return torch.from_numpy(arr)
    arr = elam.embed(list(prompts))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, arr)
        tmp.replace(path)
    return torch.from_numpy(arr)


def build_pairs(
    elam: MiniLMELam,
    samples: Sequence[Sample],
    config: MinilmDistillConfig,
    means: dict[str, np.ndarray],
    cache_dir: Path | None = None,
) -> PairTensors:
    """Expand samples to (p, s_p, s_c) pairs and precompute pi_ref and beta."""
    emb = embeddings(elam, [s.prompt for s in samples], cache_dir)
    idx = torch.tensor([app_index(s.app) for s in samples], dtype=torch.long)
    s_bar = np.array([means[s.target_app or s.app] for s in samples])
    beta = sample_beta(np.array([s.s for s in samples]), s_bar, config.loss)
    rows, rejected = [], []
    for i, s in enumerate(samples):
        for c in s.contrastive:
            rows.append(i)
            rejected.append(c)
    rows_t = torch.tensor(rows, dtype=torch.long)
    chosen = smooth([samples[i].s for i in rows], config.smoothing)
    rej = smooth(rejected, config.smoothing)
    ref_head = DirichletHead(hidden=config.hidden).eval()  # zero output layer: the raw E-LAM
    with torch.no_grad():
        dist = elam.distribution_from(emb[rows_t], idx[rows_t], ref_head)
        ref_chosen, ref_rejected = dist.log_prob(chosen), dist.log_prob(rej)
    return PairTensors(
        embedding=emb[rows_t],
        app_idx=idx[rows_t],
        chosen=chosen,
        rejected=rej,
        ref_chosen=ref_chosen,
        ref_rejected=ref_rejected,
        beta=torch.as_tensor(beta[rows], dtype=torch.float32),
        sample=rows_t,
    )


def validation_groups(
    samples: Sequence[Sample], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, validation) over samples, by group.

    A group is a labelled sample with the synthetic samples made from it; validation
    holds only the labelled member of a chosen group, and its synthetic children are left
    out of training so that no paraphrase of a validation prompt is trained on.
    """
    n = len(samples)
    is_val = np.zeros(n, dtype=bool)
    excluded = np.zeros(n, dtype=bool)
    if fraction > 0:
        labelled = sorted({s.id for s in samples if s.origin == "labelled"})
        rng = np.random.default_rng(seed)
        k = max(1, round(fraction * len(labelled)))
        val_ids = set(rng.choice(labelled, size=k, replace=False).tolist())
        for i, s in enumerate(samples):
            if s.id in val_ids:
                is_val[i] = True
            elif s.source_id in val_ids:
                excluded[i] = True
    return ~(is_val | excluded), is_val


def pair_loss(
    dist: torch.distributions.Dirichlet,
    pairs: PairTensors,
    idx: torch.Tensor | Sequence[int],
    config: MinilmDistillConfig,
) -> LossOutput:
    """Eq. 31 (+ auxiliary NLL) of the pairs ``idx``, ``dist`` being pi_theta of each."""
    return iokd_loss(
        dist.log_prob(pairs.chosen[idx]),
        dist.log_prob(pairs.rejected[idx]),
        pairs.ref_chosen[idx],
        pairs.ref_rejected[idx],
        pairs.beta[idx],
        nll_weight=config.loss.nll_weight,
    )


@dataclass
class Prepared:
    """What both minilm trainings start from.

    Attributes:
        samples: the deduplicated training samples.
        pairs: their pairs.
        train: boolean mask over ``samples`` of the training part.
        val: boolean mask over ``samples`` of the validation part.
        summary: the first entries of the training summary (counts, beta statistics).
    """

    samples: list[Sample]
    pairs: PairTensors
    train: np.ndarray
    val: np.ndarray
    summary: dict[str, Any]


def prepare(
    elam: MiniLMELam,
    samples: Sequence[Sample],
    config: MinilmDistillConfig,
    cache_dir: Path | None,
) -> Prepared:
    """Deduplicated samples, their pairs, the (train, validation) masks, a first summary."""
    if elam.distilled:
        raise ValueError("distil from the raw E-LAM: it is the reference policy")
    means = dataset_means(samples)
    data = dedupe(samples)
    if not data:
        raise ValueError("no training samples")
    pairs = build_pairs(elam, data, config, means, cache_dir)
    train_mask, val_mask = validation_groups(data, config.val_fraction, config.seed)
    summary: dict[str, Any] = {
        "samples": len(data),
        "pairs": len(pairs),
        "synthetic": sum(s.origin == "synthetic" for s in data),
        "beta_mean": float(pairs.beta.mean()),
        "beta_min": float(pairs.beta.min()),
        "beta_max": float(pairs.beta.max()),
    }
    return Prepared(data, pairs, train_mask, val_mask, summary)
