"""Which E-LAMs the rApp serves, how they are loaded, and which one is the default.

Distilled artefacts live in ``<models_dir>/<id>/`` with a ``card.json``: ``minilm`` a
``head.safetensors`` and LoRA adapters of its encoder, ``smollm2`` LoRA adapters (both in
peft's format, :mod:`rapp_intent.elam.lora`). When present they are loaded instead of the
raw form, unless the ``distilled`` setting is false (then the raw form is served whatever
``models_dir`` holds). The default E-LAM (used when a request names none) is, in order:
the ``default_model`` setting; the distilled E-LAM with the lowest ``metrics.mse`` in its
card (``metrics.heldout_mse`` also accepted); ``minilm``; the first loaded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path

import structlog

from rapp_intent.elam.base import ELam
from rapp_intent.settings import KNOWN_MODELS, RappSettings

log = structlog.get_logger(__name__)


class UnknownModel(KeyError):
    """A request named an E-LAM that is not served."""

    def __init__(self, model_id: str, served: Iterable[str]):
        self.model_id = model_id
        self.served = list(served)
        super().__init__(model_id)

    def __str__(self) -> str:
        return f"unknown model {self.model_id!r}; served: {', '.join(self.served)}"


def _card_mse(elam: ELam) -> float:
    metrics = elam.card.get("metrics") or {}
    for key in ("mse", "heldout_mse"):
        value = metrics.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    return math.inf


class Registry:
    """The loaded E-LAMs by id.

    Args:
        elams: the E-LAMs (ids must be unique).
        default: id of the default E-LAM ("" selects as described in the module docstring).
    """

    def __init__(self, elams: Iterable[ELam], default: str = ""):
        self.elams: dict[str, ELam] = {}
        for elam in elams:
            if elam.id in self.elams:
                raise ValueError(f"E-LAM {elam.id!r} given twice")
            self.elams[elam.id] = elam
        if not self.elams:
            raise ValueError("a registry needs at least one E-LAM")
        if default and default not in self.elams:
            raise UnknownModel(default, self.elams)
        self._default = default

    @property
    def default_id(self) -> str:
        """Id of the E-LAM used when a request names none."""
        if self._default:
            return self._default
        distilled = [e for e in self.elams.values() if e.distilled]
        if distilled:
            return min(distilled, key=_card_mse).id
        return "minilm" if "minilm" in self.elams else next(iter(self.elams))

    def get(self, model_id: str = "") -> ELam:
        """The E-LAM ``model_id`` ("" for the default).

        Raises:
            UnknownModel: no such E-LAM is served.
        """
        key = model_id or self.default_id
        try:
            return self.elams[key]
        except KeyError:
            raise UnknownModel(model_id, self.elams) from None

    def __iter__(self):
        return iter(self.elams.values())

    def __len__(self) -> int:
        return len(self.elams)

    def warmup(self) -> None:
        """Warm every E-LAM up (lazy initialisation, caches, first-call allocations)."""
        for elam in self.elams.values():
            start = time.perf_counter()
            elam.warmup()
            log.info("elam.warm", model=elam.id, seconds=round(time.perf_counter() - start, 2))


def load_elam(model_id: str, settings: RappSettings) -> ELam:
    """Load one E-LAM (distilled artefact when present and wanted) as the settings say."""
    artefacts = Path(settings.models_dir) / model_id if settings.distilled else None
    start = time.perf_counter()
    # Each family's code (torch, transformers, onnxruntime) is imported when that family is
    # loaded: the server imports this module and serves only the families configured.
    if model_id == "minilm":
        import torch

        from rapp_intent.elam.encoder import Encoder, HybridEncoder
        from rapp_intent.elam.encoder_onnx import OnnxEncoder
        from rapp_intent.elam.encoder_torch import TorchEncoder, bf16_fast
        from rapp_intent.elam.minilm import MiniLMELam

        backend = settings.minilm_backend
        encoder: Encoder
        if backend in ("auto", "onnx"):
            encoder = OnnxEncoder(
                settings.cache_dir,
                threads=settings.torch_threads,
                warm_lengths=settings.minilm_warm_lengths,
            )
            if backend == "auto" and bf16_fast():
                large = TorchEncoder(
                    dtype=torch.bfloat16, warm_lengths=settings.minilm_warm_lengths
                )
                encoder = HybridEncoder(encoder, large)
        else:
            dtype = torch.bfloat16 if backend == "torch-bf16" else torch.float32
            encoder = TorchEncoder(dtype=dtype, warm_lengths=settings.minilm_warm_lengths)
        elam: ELam = MiniLMELam(encoder, head_dir=artefacts)
    elif model_id == "smollm2":
        elam = load_smollm2(settings, artefacts)
    else:
        raise UnknownModel(model_id, KNOWN_MODELS)
    log.info(
        "elam.loaded",
        model=model_id,
        backend=getattr(getattr(elam, "encoder", None), "backend", ""),
        artefact=elam.artefact[:12],
        distilled=elam.distilled,
        parameters=elam.n_parameters,
        seconds=round(time.perf_counter() - start, 2),
    )
    return elam


def load_smollm2(settings: RappSettings, adapter_dir: Path | None) -> ELam:
    """The ``smollm2`` E-LAM with the adapters of ``adapter_dir`` (when it holds them) and
    the decoding the settings name."""
    from rapp_intent.elam.smollm2 import SmolLM2ELam

    return SmolLM2ELam(
        settings.cache_dir,
        adapter_dir=adapter_dir,
        max_new_tokens=settings.smollm2_max_new_tokens,
        decoding=settings.smollm2_decoding,
        beams=settings.smollm2_beams,
    )


def load_registry(settings: RappSettings) -> Registry:
    """Load every E-LAM of ``settings.models`` into a registry."""
    return Registry((load_elam(m, settings) for m in settings.models), settings.default_model)
