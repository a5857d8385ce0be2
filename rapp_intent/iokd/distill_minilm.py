"""IoKD for the ``minilm`` E-LAM: weighted DPO on the Dirichlet head (eqs. 27-32).

The policy pi_theta(s | p) is the E-LAM's Dirichlet over the simplex
(:class:`rapp_intent.elam.minilm.MiniLMELam`); its learnable part is the
:class:`~rapp_intent.elam.minilm.DirichletHead`. The reference policy pi_ref is the raw
zero-shot E-LAM (a fresh head, whose zero last layer leaves the zero-shot Dirichlet
unchanged), as eq. 31 asks: the E-LAM before distillation.

- :func:`distill_minilm` keeps the encoder frozen; embeddings and zero-shot logits are
  computed once and cached (``<cache_dir>/iokd/``), so an epoch touches only the head.
- :func:`distill_minilm_encoder` (the shipped configuration) trains LoRA adapters on
  every linear layer of the encoder together with a head, on the same pairs and loss.
  pi_ref stays the raw E-LAM (base encoder, zero head), whose log-densities are computed
  once; the description sentences of the zero-shot logits keep their base embeddings.
  An epoch runs the encoder forward and backward over every training prompt (about 40 s
  for 470 prompts on 2 CPU cores).
- Targets are smoothed away from the simplex boundary before any log-density:
  s' = (1 - eps) s + eps / 4, then floored by the E-LAM's ``prepare_targets``. A
  Dirichlet density at a weight of exactly 0 is infinite or zero, never useful.
- A validation subset of the training data (whole groups: a labelled sample with the
  synthetic samples made from it) picks the number of epochs; the head is then refitted
  on all the training data for that many epochs. The held-out split and the dev set are
  only evaluated, after training, for the model card.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from rapp_intent.elam.lora import LoraSpec, adapter_state, add_adapters
from rapp_intent.elam.minilm import DirichletHead, MiniLMELam, app_index, prepare_targets
from rapp_intent.iokd.data import Sample
from rapp_intent.iokd.loss import LossConfig, LossOutput, iokd_loss, mean_vector, sample_beta

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class MinilmDistillConfig:
    """Distillation of the ``minilm`` head.

    Attributes:
        loss: eq. 31/32 configuration (kind, beta_base, lambda, auxiliary NLL weight).
        epochs: most epochs over the pairs.
        batch_size: pairs per step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        hidden: hidden units of the head.
        smoothing: eps of the target smoothing s' = (1 - eps) s + eps / 4.
        val_fraction: share of labelled groups held apart to choose the epoch count.
        patience: epochs without a better validation MSE before stopping.
        refit: retrain on all training data for the chosen number of epochs.
        embed_dropout: dropout on the head's copy of the embedding while training (the
            zero-shot logits always see the clean embedding).
        ema: decay of an exponential moving average of the head's weights, per step
            (0: none); the average is what gets evaluated and saved.
        ensemble: heads trained with different seeds (initialisation, dropout, order)
            on the same pairs for the chosen number of epochs, then merged into one
            head that averages their outputs (:func:`merge_heads`; exact, since the
            head is a one-hidden-layer MLP). 1: a single head.
        seed: initialisation, shuffling and validation split.
        encoder_lora_r: rank of LoRA adapters on the encoder's linear layers, trained
            together with the head by :func:`distill_minilm_encoder` (0: the encoder
            stays frozen and only the head is trained, :func:`distill_minilm`).
        encoder_lora_alpha: LoRA scaling numerator.
        encoder_lora_dropout: dropout on the adapters' input while training.
        encoder_lr: AdamW learning rate of the adapters (the head keeps ``lr``).
        encoder_epochs: most epochs of the joint training.
        encoder_patience: epochs without a better validation MSE before it stops.
        encoder_batch: samples per step of the joint training (each with all of its
            contrastive pairs).
        encoder_head_dropout: dropout on the head's copy of the embedding in the joint
            training.
    """

    loss: LossConfig = field(
        default_factory=lambda: LossConfig(beta_base=0.1, lam=1.5, nll_weight=1.0)
    )
    epochs: int = 300
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    hidden: int = 256
    smoothing: float = 0.02
    val_fraction: float = 0.15
    patience: int = 40
    refit: bool = True
    embed_dropout: float = 0.6
    ema: float = 0.95
    ensemble: int = 5
    seed: int = 0
    encoder_lora_r: int = 8
    encoder_lora_alpha: float = 16.0
    encoder_lora_dropout: float = 0.1
    encoder_lr: float = 5e-4
    encoder_epochs: int = 10
    encoder_patience: int = 3
    encoder_batch: int = 16
    encoder_head_dropout: float = 0.3

    def __post_init__(self) -> None:
        if self.encoder_lora_r < 0 or self.encoder_epochs < 1 or self.encoder_batch < 1:
            raise ValueError("encoder_lora_r must be >= 0, encoder epochs and batch positive")
        if not 0 <= self.smoothing < 1:
            raise ValueError("smoothing must be in [0, 1)")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("val_fraction must be in [0, 1)")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        if self.ensemble < 1:
            raise ValueError("ensemble must be at least 1")


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


def dedupe(samples: Sequence[Sample]) -> list[Sample]:
    """One copy per sample id, preferring the copy in its own application's dataset."""
    chosen: dict[str, Sample] = {}
    for s in samples:
        if s.id not in chosen or (s.target_app == s.app and chosen[s.id].target_app != s.app):
            chosen[s.id] = s
    return list(chosen.values())


def dataset_means(samples: Sequence[Sample]) -> dict[str, np.ndarray]:
    """s_bar of eq. 32 for each target application's D_IoKD (before deduplication)."""
    groups: dict[str, list] = {}
    for s in samples:
        groups.setdefault(s.target_app or s.app, []).append(s.s)
    return {app: mean_vector(np.array(v)) for app, v in groups.items()}


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
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    head = DirichletHead(hidden=config.hidden)
    trained = _InputDropout(head, config.embed_dropout)
    average = copy.deepcopy(head) if config.ema > 0 else head
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: dict[str, Any] = {"loss": [], "accuracy": [], "val_mse": []}
    best = (float("inf"), 0, None)
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
            if mse < best[0] - 1e-7:
                best = (mse, epoch + 1, {k: v.clone() for k, v in average.state_dict().items()})
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", val_mse=f"{mse:.5f}")
            if epoch + 1 - best[1] >= config.patience:
                break
        else:
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}")
    if val is not None and best[2] is not None:
        average.load_state_dict(best[2])
        history["best_epoch"], history["best_val_mse"] = best[1], best[0]
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


def _prepare(
    elam: MiniLMELam,
    samples: Sequence[Sample],
    config: MinilmDistillConfig,
    cache_dir: Path | None,
) -> tuple[list[Sample], PairTensors, np.ndarray, np.ndarray, dict[str, Any]]:
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
    return data, pairs, train_mask, val_mask, summary


def distill_minilm(
    elam: MiniLMELam,
    samples: Sequence[Sample],
    config: MinilmDistillConfig = MinilmDistillConfig(),
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
    start = time.perf_counter()
    data, pairs, train_mask, val_mask, summary = _prepare(elam, samples, config, cache_dir)
    epochs = config.epochs
    if val_mask.any():
        val_idx = torch.from_numpy(np.flatnonzero(val_mask))
        in_train = torch.from_numpy(train_mask)[pairs.sample]
        emb = embeddings(elam, [data[i].prompt for i in val_idx.tolist()], cache_dir)
        app = torch.tensor([app_index(data[i].app) for i in val_idx.tolist()])
        target = torch.tensor([data[i].s for i in val_idx.tolist()], dtype=torch.float32)
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
                "val_samples": int(val_mask.sum()),
                "val_mse": hist["best_val_mse"],
                "best_epoch": epochs,
                "val_curve": [round(x, 6) for x in hist["val_mse"]],
            }
        )
    else:
        head, hist = train_head(elam, pairs, config, epochs, None, progress)
    if (config.refit and val_mask.any()) or config.ensemble > 1:
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


def trainable_encoder(elam: MiniLMELam, spec: LoraSpec, dropout: float) -> torch.nn.Module:
    """The base encoder of ``elam`` as a torch module with fresh LoRA adapters (fp32)."""
    from transformers import AutoModel

    from rapp_intent.elam.encoder import _Pooled, model_path

    path = getattr(elam.base_encoder, "path", None) or model_path()
    bert = AutoModel.from_pretrained(str(path), attn_implementation="eager")
    add_adapters(bert, spec, dropout)
    return _Pooled(bert)


def _tokenizer(elam: MiniLMELam) -> Any:
    tok = getattr(elam.base_encoder, "tokenizer", None)
    if tok is None:
        from transformers import AutoTokenizer

        from rapp_intent.elam.encoder import model_path

        tok = AutoTokenizer.from_pretrained(str(model_path()))
    return tok


def distill_minilm_encoder(
    elam: MiniLMELam,
    samples: Sequence[Sample],
    config: MinilmDistillConfig = MinilmDistillConfig(),
    cache_dir: Path | None = None,
    progress: bool = False,
) -> tuple[DirichletHead, tuple[dict[str, torch.Tensor], LoraSpec], dict[str, Any]]:
    """Distil D_IoKD into encoder LoRA adapters and a head, trained jointly (eq. 31/32).

    Each step embeds a batch of training prompts with the adapted encoder, forms the
    Dirichlet of each and scores every (s_p, s_c) pair of those prompts against the raw
    E-LAM's precomputed log-densities; the loss is :func:`iokd_loss` with each pair's beta
    (eq. 32, or constant for ``dpo``) plus the configured auxiliary NLL. A validation
    subset of whole groups (:func:`validation_groups`) picks the epoch: the adapters and
    head of the best epoch are returned. There is no refit on all the data: a second
    pass of the encoder would double the training time.

    Args:
        elam: the raw ``minilm`` E-LAM (not modified).
        samples: D_IoKD (with contrastive vectors).
        config: hyper-parameters (``encoder_lora_r`` must be positive).
        cache_dir: embedding cache root for the reference log-densities.
        progress: tqdm bar over epochs.

    Returns:
        The head, the adapter (tensors and spec) and a training summary.
    """
    from tqdm.auto import tqdm

    if config.encoder_lora_r < 1:
        raise ValueError("encoder_lora_r must be positive to tune the encoder")
    start = time.perf_counter()
    data, pairs, train_mask, val_mask, summary = _prepare(elam, samples, config, cache_dir)
    prompts = [s.prompt for s in data]
    app_idx = torch.tensor([app_index(s.app) for s in data], dtype=torch.long)
    targets = torch.tensor([s.s for s in data], dtype=torch.float32)
    pairs_of = [[] for _ in data]
    for j, i in enumerate(pairs.sample.tolist()):
        pairs_of[i].append(j)

    torch.manual_seed(config.seed)
    gen = np.random.default_rng(config.seed)
    spec = LoraSpec(config.encoder_lora_r, config.encoder_lora_alpha)
    encoder = trainable_encoder(elam, spec, config.encoder_lora_dropout)
    tok = _tokenizer(elam)
    head = DirichletHead(hidden=config.hidden)
    lora_params = [p for p in encoder.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [
            {"params": lora_params, "lr": config.encoder_lr, "weight_decay": 0.0},
            {"params": head.parameters(), "lr": config.lr, "weight_decay": config.weight_decay},
        ]
    )

    def embed(idx: Sequence[int], train: bool) -> torch.Tensor:
        batch = tok(
            [prompts[i] for i in idx],
            padding=True,
            truncation=True,
            max_length=256,
            return_tensors="pt",
        )
        encoder.train(train)
        ids = batch["input_ids"]
        return encoder(ids, batch["attention_mask"], torch.zeros_like(ids))

    val_ids = np.flatnonzero(val_mask)

    def val_mse() -> float:
        head.eval()
        with torch.no_grad():
            means_ = [
                elam.distribution_from(
                    embed(val_ids[k : k + 64], False), app_idx[val_ids[k : k + 64]], head
                ).mean
                for k in range(0, len(val_ids), 64)
            ]
        return float(((torch.cat(means_) - targets[val_ids]) ** 2).mean())

    train_ids = np.flatnonzero(train_mask if len(val_ids) else np.ones(len(data), bool))
    summary["trained_on"] = len(train_ids)
    summary["encoder_adapter_parameters"] = int(sum(p.numel() for p in lora_params))
    curve: list[float] = []
    losses: list[float] = []
    accs: list[float] = []
    best: tuple[float, int, Any] = (float("inf"), 0, None)
    if len(val_ids):
        summary["val_samples"] = len(val_ids)
        summary["val_mse_raw"] = val_mse()  # fresh adapters and head: the raw E-LAM
    bar = tqdm(range(config.encoder_epochs), desc="minilm: encoder+head", disable=not progress)
    for epoch in bar:
        order = gen.permutation(train_ids)
        ep_loss, ep_acc = [], []
        for k in range(0, len(order), config.encoder_batch):
            b = order[k : k + config.encoder_batch].tolist()
            sel = [j for i in b for j in pairs_of[i]]
            if not sel:
                continue
            pos = {i: n for n, i in enumerate(b)}
            rows = torch.tensor([pos[i] for i in pairs.sample[sel].tolist()])
            emb = embed(b, True)
            head.train()
            head_in = torch.nn.functional.dropout(emb, config.encoder_head_dropout, True)
            delta, log_c = head(head_in, app_idx[b])
            mean = torch.softmax(elam.raw_logits(emb, app_idx[b]) + delta, dim=-1)
            conc = elam.zeroshot.concentration * torch.exp(log_c)
            alpha = (conc.unsqueeze(-1) * mean)[rows]
            out = pair_loss(torch.distributions.Dirichlet(alpha), pairs, sel, config)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            ep_loss.append(float(out.loss.detach()))
            ep_acc.append(float(out.accuracy))
        losses.append(float(np.mean(ep_loss)))
        accs.append(float(np.mean(ep_acc)))
        if len(val_ids):
            mse = val_mse()
            curve.append(mse)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", val_mse=f"{mse:.5f}")
            if mse < best[0] - 1e-7:
                snapshot = (copy.deepcopy(head.state_dict()), adapter_state(encoder.bert))
                best = (mse, epoch + 1, snapshot)
            if epoch + 1 - best[1] >= config.encoder_patience:
                break
        else:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    if best[2] is not None:
        head.load_state_dict(best[2][0])
        adapter = best[2][1]
        summary.update({"best_epoch": best[1], "val_mse": best[0]})
    else:
        adapter = adapter_state(encoder.bert)
    summary.update(
        {
            "val_curve": [round(x, 6) for x in curve],
            "loss_curve": [round(x, 5) for x in losses],
            "epochs_run": len(losses),
            "final_loss": losses[-1],
            "final_pair_accuracy": accs[-1],
            "train_seconds": round(time.perf_counter() - start, 1),
            "config": asdict(config),
        }
    )
    return head.eval(), (adapter, spec), summary
