"""IoKD for the ``minilm`` E-LAM: LoRA adapters of the encoder trained with its head.

The shipped configuration: rank-``r`` adapters (peft, :mod:`rapp_intent.elam.lora`) on
every linear layer of the encoder but the pooler, trained together with a
:class:`~rapp_intent.elam.minilm.DirichletHead` on the pairs and loss of
:mod:`rapp_intent.iokd.distill_minilm`. pi_ref stays the raw E-LAM (base encoder, zero
head), whose log-densities are computed once; the description sentences of the zero-shot
logits keep their base embeddings. An epoch runs the encoder forward and backward over
every training prompt (about 40 s for 470 prompts on 2 CPU cores).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import PeftModel
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from rapp_intent.elam import lora
from rapp_intent.elam.encoder import MAX_TOKENS
from rapp_intent.elam.encoder_torch import PooledBert, model_path
from rapp_intent.elam.minilm import DirichletHead, MiniLMELam, app_index
from rapp_intent.iokd.config import MinilmDistillConfig
from rapp_intent.iokd.data import Sample
from rapp_intent.iokd.early_stopping import EarlyStopping
from rapp_intent.iokd.minilm_pairs import pair_loss, prepare


def trainable_encoder(elam: MiniLMELam, config: MinilmDistillConfig) -> PooledBert:
    """The base encoder of ``elam`` as a torch module with fresh LoRA adapters (fp32).

    Its ``bert`` is the peft-wrapped model: only the adapters require gradients.
    """
    path = getattr(elam.base_encoder, "path", None) or model_path()
    bert = AutoModel.from_pretrained(str(path), attn_implementation="eager")
    spec = lora.encoder_lora_config(
        config.encoder_lora_r, config.encoder_lora_alpha, config.encoder_lora_dropout
    )
    return PooledBert(lora.add_adapters(bert, spec))


def _tokenizer(elam: MiniLMELam) -> Any:
    tok = getattr(elam.base_encoder, "tokenizer", None)
    return tok if tok is not None else AutoTokenizer.from_pretrained(str(model_path()))


def distill_minilm_encoder(
    elam: MiniLMELam,
    samples: Sequence[Sample],
    config: MinilmDistillConfig | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> tuple[DirichletHead, PeftModel, dict[str, Any]]:
    """Distil D_IoKD into encoder LoRA adapters and a head, trained jointly (eq. 31/32).

    Each step embeds a batch of training prompts with the adapted encoder, forms the
    Dirichlet of each and scores every (s_p, s_c) pair of those prompts against the raw
    E-LAM's precomputed log-densities; the loss is eq. 31 with each pair's beta (eq. 32,
    or constant for ``dpo``) plus the configured auxiliary NLL. A validation subset of
    whole groups picks the epoch: the adapters and head of the best epoch are returned.
    There is no refit on all the data: a second pass of the encoder would double the
    training time.

    Args:
        elam: the raw ``minilm`` E-LAM (not modified).
        samples: D_IoKD (with contrastive vectors).
        config: hyper-parameters (``encoder_lora_r`` must be positive).
        cache_dir: embedding cache root for the reference log-densities.
        progress: tqdm bar over epochs.

    Returns:
        The head, the encoder's adapters (the peft-wrapped base model; save with
        :meth:`MiniLMELam.save_head`) and a training summary.
    """
    config = config or MinilmDistillConfig()
    if config.encoder_lora_r < 1:
        raise ValueError("encoder_lora_r must be positive to tune the encoder")
    start = time.perf_counter()
    prep = prepare(elam, samples, config, cache_dir)
    pairs, summary = prep.pairs, prep.summary
    prompts = [s.prompt for s in prep.samples]
    app_idx = torch.tensor([app_index(s.app) for s in prep.samples], dtype=torch.long)
    targets = torch.tensor([s.s for s in prep.samples], dtype=torch.float32)
    pairs_of: list[list[int]] = [[] for _ in prep.samples]
    for j, i in enumerate(pairs.sample.tolist()):
        pairs_of[i].append(j)

    torch.manual_seed(config.seed)
    gen = np.random.default_rng(config.seed)
    encoder = trainable_encoder(elam, config)
    adapted: PeftModel = encoder.bert
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
            max_length=MAX_TOKENS,
            return_tensors="pt",
        )
        encoder.train(train)
        ids = batch["input_ids"]
        return encoder(ids, batch["attention_mask"], torch.zeros_like(ids))

    val_ids = np.flatnonzero(prep.val)

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

    train_ids = np.flatnonzero(prep.train if len(val_ids) else np.ones(len(prompts), bool))
    summary["trained_on"] = len(train_ids)
    summary["encoder_adapter_parameters"] = lora.adapter_parameters(adapted)
    curve: list[float] = []
    losses: list[float] = []
    accs: list[float] = []
    stop = EarlyStopping(config.encoder_patience)

    def snapshot() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return copy.deepcopy(head.state_dict()), lora.adapter_state(adapted)

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
            if stop.update(epoch + 1, mse, snapshot):
                break
        else:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    if stop.snapshot is not None:
        head.load_state_dict(stop.snapshot[0])
        lora.restore_adapter_state(adapted, stop.snapshot[1])
        summary.update({"best_epoch": stop.best_epoch, "val_mse": stop.best})
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
    return head.eval(), adapted, summary
