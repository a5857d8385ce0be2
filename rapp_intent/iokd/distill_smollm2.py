"""IoKD for the ``smollm2`` E-LAM: token-level weighted DPO with LoRA adapters (eqs. 27-32).

The policy pi_theta(s | p) of a generative E-LAM is the probability of the answer text
of s, ``format_vector(s)`` followed by the end-of-turn token, given the chat prompt:
log pi(s | p) is the sum of the answer tokens' log-probabilities. Eq. 31 compares that
for s_p and a contrastive s_c (eq. 25), relative to the reference policy, the raw
SmolLM2-135M-Instruct (eq. 31: the E-LAM before distillation).

- Only LoRA adapters (peft) on the top ``lora_layers`` decoder layers are trained, so
  backward passes stop there and the artefact is a few MB; the base model is never
  copied into ``models/``.
- The reference log-probabilities are computed once, before training, with the same
  prompts (the reference never changes).
- The distilled model answers a short prompt (:data:`DISTILLED_SYSTEM` and the request),
  without the raw model's few-shot demonstrations: the model card records the prompt
  and the rApp builds the same one when it loads the adapters.
- A prompt runs once per step and its key/value cache serves s_p and its contrastive
  answers (:func:`group_logps`); every answer has the same token count, so they batch
  without padding. The short prompt and the shared pass keep a step cheap on a CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from peft import LoraConfig, PeftModel
from tqdm.auto import tqdm

from llmkit.smollm2 import load_model
from rapp_intent.elam import lora
from rapp_intent.elam.base import format_vector
from rapp_intent.elam.smollm2 import user_turn
from rapp_intent.iokd.config import Smollm2DistillConfig
from rapp_intent.iokd.data import Sample, dedupe
from rapp_intent.iokd.loss import dataset_means, iokd_loss, sample_beta

log = structlog.get_logger(__name__)

DISTILLED_SYSTEM = "Answer with the preference vector [w_C, w_B, w_L, w_P] of the request."
"""System message of the distilled model (recorded in its model card)."""


class PromptBuilder:
    """Token ids of the distilled prompt and of answers (ChatML, as the rApp builds them).

    The request text is tokenised with ``split_special_tokens`` so that a request holding
    ``<|im_start|>`` stays text, exactly as the serving E-LAM does.
    """

    def __init__(self, tokenizer: Any, system: str = DISTILLED_SYSTEM):
        self.tok = tokenizer
        self.system = system
        self.im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
        self.im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def _ids(self, text: str, split: bool = False) -> list[int]:
        return list(
            self.tok(text, add_special_tokens=False, split_special_tokens=split)["input_ids"]
        )

    def turn(self, role: str, content: str) -> list[int]:
        """One ChatML turn."""
        return [
            self.im_start,
            *self._ids(f"{role}\n"),
            *self._ids(content, split=True),
            self.im_end,
            *self._ids("\n"),
        ]

    def prompt(self, request: str, app: str | None) -> list[int]:
        """System turn, user turn, and the opening of the assistant turn."""
        return (
            self.turn("system", self.system)
            + self.turn("user", user_turn(request, app))
            + [self.im_start]
            + self._ids("assistant\n")
        )

    def answer(self, vector: Sequence[float]) -> list[int]:
        """The answer text of a vector plus the end-of-turn token."""
        return [*self._ids(format_vector(vector)), self.im_end]


def group_logps(
    model: torch.nn.Module, prompts: Sequence[list[int]], answers: Sequence[Sequence[list[int]]]
) -> torch.Tensor:
    """log pi(answer | prompt) for several answers per prompt, sharing the prompt's pass.

    The prompts run once (left-padded, position ids skipping the padding); their key/value
    cache is repeated for each answer, and all answers, which have the same token count
    (every vector's text does), run in one batch. Gradients flow through the shared
    prompt pass.

    Args:
        model: the causal language model.
        prompts: token ids of each prompt.
        answers: for each prompt, the same number of answers (token ids, equal lengths).

    Returns:
        Summed answer log-probabilities, shape (len(prompts), answers per prompt).
    """
    n_ans = len(answers[0])
    length = len(answers[0][0])
    if any(len(a) != n_ans for a in answers) or any(len(x) != length for a in answers for x in a):
        raise ValueError("every prompt needs the same number of equally long answers")
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1
    )
    cache = out.past_key_values
    cache.batch_repeat_interleave(n_ans)
    first = out.logits[:, -1].repeat_interleave(n_ans, dim=0)  # predicts answer token 0
    rows = torch.tensor([x for a in answers for x in a])  # (B * n_ans, length)
    mask2 = torch.cat(
        [mask.repeat_interleave(n_ans, dim=0), torch.ones(len(rows), length, dtype=mask.dtype)],
        dim=1,
    )
    pos2 = pos[:, -1:].repeat_interleave(n_ans, dim=0) + 1 + torch.arange(length)
    logits = model(
        input_ids=rows, attention_mask=mask2, position_ids=pos2, past_key_values=cache
    ).logits
    logits = torch.cat([first[:, None], logits[:, :-1]], dim=1).float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, rows[..., None])[..., 0].sum(-1)
    return logp.view(len(prompts), n_ans)


@dataclass
class Items:
    """Training items: a prompt, its answer s_p and m contrastive answers s_c (eq. 25).

    Attributes:
        prompts: prompt token ids per item.
        answers: per item, [s_p, s_c1, ..., s_cm] answer token ids.
        ref: log pi_ref of each answer, shape (n, 1 + m), computed once.
        beta: beta of each item (eq. 32 or constant), shape (n,).
    """

    prompts: list[list[int]]
    answers: list[list[list[int]]]
    ref: torch.Tensor
    beta: torch.Tensor


def make_items(
    samples: Sequence[Sample], n_items: int, config: Smollm2DistillConfig
) -> list[tuple[Sample, list[tuple[float, ...]], float]]:
    """Choose ``n_items`` (sample, [s_c ...], beta): every sample once before any twice.

    Each visit of a sample takes its next ``contrastive_per_item`` contrastive vectors
    (eq. 25 order, cycling).
    """
    means = dataset_means(samples)
    data = dedupe(samples)
    beta = sample_beta(
        np.array([s.s for s in data]),
        np.array([means[s.target_app or s.app] for s in data]),
        config.loss,
    )
    m = config.contrastive_per_item
    rng = np.random.default_rng(config.seed)
    out = []
    visit = 0
    while len(out) < n_items:
        for i in rng.permutation(len(data)):
            s = data[int(i)]
            k = len(s.contrastive)
            cs = [s.contrastive[(visit * m + j) % k] for j in range(m)]
            out.append((s, cs, float(beta[int(i)])))
            if len(out) == n_items:
                break
        visit += 1
    return out


def reference_items(
    model: torch.nn.Module,
    builder: PromptBuilder,
    chosen: Sequence[tuple[Sample, list[tuple[float, ...]], float]],
    batch: int = 16,
    progress: bool = False,
) -> Items:
    """Tokenise the items and compute log pi_ref once (no gradient)."""
    prompts = [builder.prompt(s.prompt, s.app) for s, _, _ in chosen]
    answers = [[builder.answer(s.s)] + [builder.answer(c) for c in cs] for s, cs, _ in chosen]
    refs = []
    model.eval()
    with torch.no_grad():
        for start in tqdm(
            range(0, len(chosen), batch),
            desc="smollm2: reference log-probs",
            disable=not progress,
            unit="batch",
        ):
            sl = slice(start, start + batch)
            refs.append(group_logps(model, prompts[sl], answers[sl]))
    return Items(
        prompts=prompts,
        answers=answers,
        ref=torch.cat(refs),
        beta=torch.tensor([b for _, _, b in chosen], dtype=torch.float32),
    )


def sample_reference(
    model: torch.nn.Module,
    builder: PromptBuilder,
    data: Sequence[Sample],
    batch: int = 16,
    progress: bool = False,
    cache_dir: Path | None = None,
) -> dict[str, np.ndarray]:
    """log pi_ref of every sample's s_p and all of its contrastive answers, once per sample.

    Items that visit a sample again (another epoch, other contrastive answers) reuse
    these numbers, so the reference costs one pass per distinct sample instead of one per
    item. The numbers only depend on the raw model, the prompt and the answers, so they
    are cached on disk (``<cache_dir>/iokd/``) and an ablation run on the same data (DPO:
    same reference) skips this pass.

    Returns:
        ``{sample id: log-probs of [s_p, s_c1, ..., s_ck]}``.
    """
    prompts = [builder.prompt(s.prompt, s.app) for s in data]
    answers = [[builder.answer(s.s)] + [builder.answer(c) for c in s.contrastive] for s in data]
    key = hashlib.sha256(
        json.dumps([_model_fingerprint(model), prompts, answers]).encode()
    ).hexdigest()[:24]
    path = Path(cache_dir) / "iokd" / f"smollm2-ref-{key}.npz" if cache_dir else None
    if path is not None and path.exists():
        with np.load(path) as stored:
            table = {sid: stored[f"r{i}"] for i, sid in enumerate(stored["ids"].tolist())}
        if all(s.id in table for s in data):
            log.info("smollm2.reference_cached", path=str(path), samples=len(data))
            return {s.id: table[s.id] for s in data}
    groups: dict[int, list[int]] = {}  # a batch needs the same answer count per prompt
    for i, a in enumerate(answers):
        groups.setdefault(len(a), []).append(i)
    batches = [g[k : k + batch] for g in groups.values() for k in range(0, len(g), batch)]
    out: dict[str, np.ndarray] = {}
    model.eval()
    with torch.no_grad():
        for rows in tqdm(
            batches, desc="smollm2: reference log-probs", disable=not progress, unit="batch"
        ):
            lp = group_logps(model, [prompts[i] for i in rows], [answers[i] for i in rows])
            for i, row in zip(rows, lp.numpy(), strict=True):
                out[data[i].id] = row.astype(np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        ids = list(out)
        np.savez(tmp, ids=np.array(ids), **{f"r{i}": out[sid] for i, sid in enumerate(ids)})
        tmp.replace(path)
    return out


def _model_fingerprint(model: torch.nn.Module) -> list[Any]:
    """What identifies the reference model's numbers: its config and a weight checksum."""
    first = next(iter(model.parameters()))
    return [
        model.config.to_json_string(use_diff=False),
        float(first.detach().double().sum()),
        float(first.detach().double().abs().sum()),
    ]


def items_from_reference(
    builder: PromptBuilder,
    chosen: Sequence[tuple[Sample, list[tuple[float, ...]], float]],
    reference: dict[str, np.ndarray],
) -> Items:
    """The training items with log pi_ref looked up in :func:`sample_reference`'s table."""
    prompts, answers, refs = [], [], []
    for s, cs, _ in chosen:
        cols = [0] + [1 + s.contrastive.index(c) for c in cs]
        prompts.append(builder.prompt(s.prompt, s.app))
        answers.append([builder.answer(s.s)] + [builder.answer(c) for c in cs])
        refs.append(reference[s.id][cols])
    return Items(
        prompts=prompts,
        answers=answers,
        ref=torch.from_numpy(np.stack(refs)).float(),
        beta=torch.tensor([b for _, _, b in chosen], dtype=torch.float32),
    )


def add_adapters(model: torch.nn.Module, config: Smollm2DistillConfig) -> PeftModel:
    """Wrap the model with fresh LoRA adapters on the top ``lora_layers`` layers."""
    n_layers = model.config.num_hidden_layers
    layers = None
    if config.lora_layers and config.lora_layers < n_layers:
        layers = list(range(n_layers - config.lora_layers, n_layers))
    spec = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )
    return lora.add_adapters(model, spec)


def _lr_factor(step: int, config: Smollm2DistillConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = (step - config.warmup_steps) / span
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_adapters(
    model: torch.nn.Module,
    items: Items,
    config: Smollm2DistillConfig,
    progress: bool = False,
) -> dict[str, Any]:
    """The training loop: eq. 31 (with the configured beta) on the adapters only.

    Args:
        model: the peft-wrapped model (only adapter parameters require gradients).
        items: the items with reference log-probabilities.
        config: hyper-parameters.
        progress: tqdm bar.

    Returns:
        Training history (losses, pair accuracy, steps done, seconds).
    """
    torch.manual_seed(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable (adapter) parameters")
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, config))
    model.train()
    start = time.perf_counter()
    hist: dict[str, Any] = {"loss": [], "pairwise": [], "nll": [], "accuracy": []}
    n = len(items.prompts)
    bar = tqdm(range(config.steps), desc="smollm2: distil", disable=not progress, unit="step")
    for step in bar:
        idx = [(step * config.batch_items + j) % n for j in range(config.batch_items)]
        logps = group_logps(
            model, [items.prompts[i] for i in idx], [items.answers[i] for i in idx]
        )  # (b, 1 + m)
        ref = items.ref[idx]
        m = logps.shape[1] - 1
        n_tokens = torch.full((len(idx) * m,), float(len(items.answers[idx[0]][0])))
        out = iokd_loss(
            logps[:, :1].expand(-1, m).reshape(-1),
            logps[:, 1:].reshape(-1),
            ref[:, :1].expand(-1, m).reshape(-1),
            ref[:, 1:].reshape(-1),
            items.beta[idx].repeat_interleave(m),
            nll_weight=config.loss.nll_weight,
            nll_norm=n_tokens,
        )
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        for key, value in (
            ("loss", out.loss),
            ("pairwise", out.pairwise),
            ("nll", out.nll),
            ("accuracy", out.accuracy),
        ):
            hist[key].append(round(float(value.detach()), 5))
        bar.set_postfix(loss=f"{hist['loss'][-1]:.3f}", acc=f"{hist['accuracy'][-1]:.2f}")
        if time.perf_counter() - start > 60 * config.max_minutes:
            log.warning("smollm2.time_limit", steps_done=step + 1, minutes=config.max_minutes)
            break
    model.eval()
    hist["steps_done"] = len(hist["loss"])
    hist["seconds"] = round(time.perf_counter() - start, 1)
    return hist


def distill_smollm2(
    samples: Sequence[Sample],
    cache_dir: Path,
    config: Smollm2DistillConfig | None = None,
    progress: bool = False,
) -> tuple[PeftModel, dict[str, Any]]:
    """Distil D_IoKD into LoRA adapters of SmolLM2-135M-Instruct.

    Args:
        samples: D_IoKD with contrastive vectors.
        cache_dir: the rApp's cache root (dequantised base model).
        config: hyper-parameters.
        progress: tqdm bars.

    Returns:
        The peft model (adapters trained; saved by :func:`rapp_intent.elam.lora.save_adapter`)
        and a summary for the model card.
    """
    config = config or Smollm2DistillConfig()
    start = time.perf_counter()
    model, tokenizer = load_model(cache_dir)
    builder = PromptBuilder(tokenizer)
    chosen = make_items(samples, config.steps * config.batch_items, config)
    used = dedupe([s for s, _, _ in chosen])
    reference = sample_reference(  # pi_ref: the raw model, before any adapter
        model, builder, used, progress=progress, cache_dir=Path(cache_dir)
    )
    items = items_from_reference(builder, chosen, reference)
    peft_model = add_adapters(model, config)
    hist = train_adapters(peft_model, items, config, progress)
    trainable = lora.adapter_parameters(peft_model)
    summary = {
        "samples": len(dedupe(samples)),
        "items": len(chosen),
        "pairs": len(chosen) * config.contrastive_per_item,
        "distinct_samples_used": len({s.id for s, _, _ in chosen}),
        "beta_mean": float(items.beta.mean()),
        "trainable_parameters": int(trainable),
        "steps_done": hist["steps_done"],
        "final_loss": float(np.mean(hist["loss"][-10:])),
        "final_pair_accuracy": float(np.mean(hist["accuracy"][-10:])),
        "loss_curve": hist["loss"],
        "train_seconds": round(time.perf_counter() - start, 1),
        "config": asdict(config),
    }
    return peft_model, summary
