"""Low-rank adapters (LoRA) for the linear layers of the MiniLM encoder.

Distillation of the ``minilm`` E-LAM can tune the sentence encoder as well as its head
(:func:`rapp_intent.iokd.distill_minilm.distill_minilm_encoder`). Only rank-``r`` updates
``W + (alpha / r) B A`` of the encoder's linear layers are trained, so the artefact is the
adapter (1.3 MB, 331,776 parameters, at r = 8 on every linear layer of all-MiniLM-L6-v2
but its pooler), never a copy of the 90 MB base model. Serving merges the update into the weights once
(:func:`merge_adapter`), so a tuned encoder runs exactly as fast as the base one, on torch
or exported to ONNX.

The adapter file is safetensors: ``<module>.lora_A`` (r, in) and ``<module>.lora_B``
(out, r) for each adapted module, with ``r``, ``alpha`` and the target module names in
its metadata.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

DEFAULT_TARGETS = ("query", "key", "value", "dense")
"""Module-name suffixes that get adapters: attention projections and every dense layer."""
SKIP_PREFIXES = ("pooler",)
"""Modules never adapted: BERT's pooler is not part of the mean-pooled sentence embedding."""


@dataclass(frozen=True)
class LoraSpec:
    """Shape of an adapter: rank, scaling numerator and which modules get one."""

    r: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = DEFAULT_TARGETS

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError("LoRA rank must be at least 1")
        if not self.alpha > 0:
            raise ValueError("LoRA alpha must be positive")
        if not self.targets:
            raise ValueError("LoRA needs at least one target module")

    @property
    def scale(self) -> float:
        """alpha / r, the factor of B A."""
        return self.alpha / self.r

    def metadata(self) -> dict[str, str]:
        """The safetensors metadata that records this spec."""
        return {"r": str(self.r), "alpha": repr(self.alpha), "targets": json.dumps(self.targets)}

    @classmethod
    def from_metadata(cls, meta: dict[str, str] | None) -> LoraSpec:
        """The spec recorded in an adapter file (see :meth:`metadata`)."""
        if not meta or not {"r", "alpha", "targets"} <= set(meta):
            raise ValueError("adapter file has no LoRA metadata (r, alpha, targets)")
        return cls(int(meta["r"]), float(meta["alpha"]), tuple(json.loads(meta["targets"])))


class LoRALinear(nn.Module):
    """``base(x) + scale * dropout(x) A^T B^T`` with the base layer frozen.

    B starts at zero, so a fresh adapter leaves the layer's output unchanged.
    """

    def __init__(self, base: nn.Linear, r: int, scale: float, dropout: float = 0.0):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scale = scale
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = self.dropout(x) @ self.lora_A.T @ self.lora_B.T
        return self.base(x) + self.scale * update


def _targets(model: nn.Module, targets: Sequence[str]) -> list[tuple[str, nn.Linear]]:
    found = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
        and name.split(".")[-1] in targets
        and not name.startswith(SKIP_PREFIXES)
    ]
    if not found:
        raise ValueError(f"no linear module named {list(targets)} in {type(model).__name__}")
    return found


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def add_adapters(model: nn.Module, spec: LoraSpec, dropout: float = 0.0) -> list[str]:
    """Freeze ``model`` and wrap every target linear layer in a :class:`LoRALinear`.

    Returns:
        The names of the adapted modules.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    names = []
    for name, linear in _targets(model, spec.targets):
        _set(model, name, LoRALinear(linear, spec.r, spec.scale, dropout))
        names.append(name)
    return names


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained A and B of every :class:`LoRALinear` in ``model`` (detached copies)."""
    state = {}
    for name, m in model.named_modules():
        if isinstance(m, LoRALinear):
            state[f"{name}.lora_A"] = m.lora_A.detach().clone().contiguous()
            state[f"{name}.lora_B"] = m.lora_B.detach().clone().contiguous()
    if not state:
        raise ValueError("the model has no LoRA adapters")
    return state


def merge_adapter(model: nn.Module, state: dict[str, torch.Tensor], spec: LoraSpec) -> int:
    """Add ``scale * B A`` to the weights of the plain linear layers of ``model``, in place.

    Raises:
        ValueError: the adapter names a module ``model`` does not have, or shapes differ.

    Returns:
        The number of merged modules.
    """
    modules = set()
    for key in state:
        name, _, part = key.rpartition(".")
        if part not in ("lora_A", "lora_B"):
            raise ValueError(f"unexpected adapter tensor {key!r}")
        modules.add(name)
    for name in sorted(modules):
        try:
            linear = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"adapter module {name!r} is not in the model") from None
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"adapter module {name!r} is not a linear layer")
        a, b = state.get(f"{name}.lora_A"), state.get(f"{name}.lora_B")
        if a is None or b is None:
            raise ValueError(f"adapter module {name!r} lacks lora_A or lora_B")
        delta = spec.scale * (b.float() @ a.float())
        if delta.shape != linear.weight.shape:
            raise ValueError(
                f"adapter {name!r}: update {tuple(delta.shape)} does not fit the weight "
                f"{tuple(linear.weight.shape)}"
            )
        with torch.no_grad():
            linear.weight.add_(delta.to(linear.weight.dtype))
    return len(modules)


def save_adapter(path: Path, state: dict[str, torch.Tensor], spec: LoraSpec) -> Path:
    """Write an adapter file (safetensors with the spec in its metadata)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=spec.metadata())
    return path


def load_adapter(path: Path) -> tuple[dict[str, torch.Tensor], LoraSpec]:
    """Read an adapter file written by :func:`save_adapter`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        spec = LoraSpec.from_metadata(fh.metadata())
        state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (not a dict)
    return state, spec
