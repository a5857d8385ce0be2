"""LoRA adapters of both E-LAM families, in peft's format.

Distillation tunes rank-``r`` updates ``W + (alpha / r) B A`` of a base model's linear
layers (the ``minilm`` encoder's, SmolLM2's), never the base weights, so an artefact is
the adapter (1.3 MB for the ``minilm`` encoder at r = 8), not a copy of the model.

An adapter folder holds peft's two files, ``adapter_config.json`` (rank, alpha, target
modules) and ``adapter_model.safetensors`` (the A and B matrices), beside the artefact's
``card.json``, which names their sha256. Serving merges the update into the weights once
(:func:`merge_adapter`), so a tuned model runs exactly as fast as the base one, on torch
or exported to ONNX.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch
from peft import (
    LoraConfig,
    PeftModel,
    get_peft_model,
    get_peft_model_state_dict,
    set_peft_model_state_dict,
)

from servicekit.integrity import sha256_file

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
"""The files of an adapter folder, as peft's ``save_pretrained`` writes them."""

ENCODER_TARGETS = ("query", "key", "value", "dense")
"""Module-name suffixes of the ``minilm`` encoder that get adapters: the attention
projections and every dense layer."""
ENCODER_EXCLUDED = ("pooler.dense",)
"""BERT's pooler is not part of the mean-pooled sentence embedding: never adapted."""


def encoder_lora_config(r: int, alpha: float, dropout: float = 0.0) -> LoraConfig:
    """The adapters of the ``minilm`` encoder: every linear layer but the pooler's."""
    if r < 1:
        raise ValueError("LoRA rank must be at least 1")
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(ENCODER_TARGETS),
        exclude_modules=list(ENCODER_EXCLUDED),
    )


def add_adapters(model: torch.nn.Module, config: LoraConfig) -> PeftModel:
    """Freeze ``model`` and wrap its target layers in fresh adapters (B = 0: no change)."""
    return get_peft_model(model, config)


def adapter_state(model: PeftModel) -> dict[str, torch.Tensor]:
    """Detached copies of the adapter tensors (a snapshot, e.g. of the best epoch)."""
    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def restore_adapter_state(model: PeftModel, state: Mapping[str, torch.Tensor]) -> None:
    """Load a snapshot taken by :func:`adapter_state` back into ``model``."""
    result = set_peft_model_state_dict(model, dict(state))
    if result.unexpected_keys:
        raise ValueError(f"adapter tensors not in the model: {result.unexpected_keys[:3]}")


def save_adapter(model: PeftModel, out_dir: Path, base: str) -> dict[str, str]:
    """Write the adapter files into ``out_dir``; their sha256 by file name.

    Args:
        model: the peft-wrapped model.
        out_dir: the artefact folder.
        base: the base model's public name, recorded in ``adapter_config.json`` instead of
            the local folder it was loaded from.
    """
    out_dir = Path(out_dir)
    model.peft_config["default"].base_model_name_or_path = base
    # No embedding layer is ever adapted: peft need not compare vocabularies (a hub look-up).
    model.save_pretrained(str(out_dir), save_embedding_layers=False)
    (out_dir / "README.md").unlink(missing_ok=True)  # peft's template card; ours is card.json
    return {name: sha256_file(out_dir / name) for name in ADAPTER_FILES}


def adapter_digest(adapter_dir: Path) -> str:
    """One sha256 for an adapter folder: of its files' sha256s (config and weights)."""
    digests = {name: sha256_file(Path(adapter_dir) / name) for name in ADAPTER_FILES}
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


def check_adapter(adapter_dir: Path, files: Mapping[str, str]) -> None:
    """Raise ValueError unless every adapter file exists and has the sha256 its card names."""
    for name in ADAPTER_FILES:
        path = Path(adapter_dir) / name
        if not path.is_file():
            raise ValueError(f"{adapter_dir}: adapter file {name} is missing")
        want = files.get(name)
        if want and sha256_file(path) != want:
            raise ValueError(f"{path}: sha256 {sha256_file(path)} does not match its card")


def merge_adapter(model: torch.nn.Module, adapter_dir: Path) -> torch.nn.Module:
    """``model`` with the adapter of ``adapter_dir`` merged into its weights (in place)."""
    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()


def adapter_parameters(model: PeftModel) -> int:
    """Number of trainable adapter parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
