"""The typed configurations of IoKD: dataset construction, loss, distillation.

Each option exists once, as a dataclass field whose ``metadata`` holds its help text and
its bounds (``ge``, ``gt``, ``le``, ``lt``): ``rapp-intent`` generates its flags from these
fields (:func:`servicekit.cli.add_config`) and :func:`check_fields` validates the same
bounds when a configuration is built in code. The module loads no model framework, so the
command line parses without importing torch.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

REPO_DIR = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_DIR / "models" / "elam" / "data"
"""D_IoKD, one JSON Lines file per application, and its build report."""
BUILD_FILE = "build.json"
DEV_SET = REPO_DIR.parent / "shared" / "spec" / "dev_intents.jsonl"
"""The dev set beside the repository (evaluation only: never trained or tuned on)."""
FAMILIES = ("minilm", "smollm2")
"""The E-LAM families IoKD distils."""
LossKind = Literal["iokd", "dpo"]

_BOUNDS = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}
_SYMBOLS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def check_fields(config: Any) -> None:
    """Raise ValueError for a field outside the bounds its metadata gives, or a wrong choice."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ValueError(f"{f.name} must be one of {list(choices)}, got {value!r}")
        for key, holds in _BOUNDS.items():
            if key in f.metadata and not holds(value, f.metadata[key]):
                raise ValueError(f"{f.name} must be {_SYMBOLS[key]} {f.metadata[key]}, got {value}")


# --------------------------------------------------------------------------------------
# Dataset construction (eqs. 19-26)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CotConfig:
    """The chain-of-thought step (eq. 22)."""

    max_tokens: int = field(
        default=64, metadata={"help": "generation budget of an explanation", "ge": 1}
    )
    temperature: float = field(
        default=0.3, metadata={"help": "sampling temperature (0: greedy)", "ge": 0}
    )
    max_rounds: int = field(
        default=2,
        metadata={"help": "attempts per demonstration before the rubric fallback", "ge": 1},
    )
    min_words: int = field(
        default=6, metadata={"help": "shortest acceptable explanation (words)", "ge": 0}
    )
    max_words: int = field(
        default=120, metadata={"help": "longest acceptable explanation (words)", "ge": 1}
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class AugmentConfig:
    """The augmentation step (eq. 23) and its quality loop."""

    ratio: float = field(
        default=1.0,
        metadata={"help": "synthetic samples per user sample (N_aug = ratio |D_u|)", "ge": 0},
    )
    shots: int = field(
        default=3,
        metadata={"help": "demonstrations per augmentation request (the source first)", "ge": 1},
    )
    labels: Literal["source", "clam"] = field(
        default="source",
        metadata={
            "help": "who labels synthetic samples: 'source' copies the source's label, 'clam' takes "
            "the C-LAM's vector",
            "choices": ("source", "clam"),
        },
    )
    max_rounds: int = field(
        default=3,
        metadata={"help": "quality-loop rounds; a slot still rejected is dropped", "ge": 1},
    )
    tau_dup: float = field(
        default=0.95,
        metadata={
            "help": "SBERT similarity from which a candidate is a near-duplicate",
            "ge": -1,
            "le": 1,
        },
    )
    tau_topic: float = field(
        default=0.55,
        metadata={
            "help": "SBERT similarity to its demonstrations below which it is off-topic",
            "ge": -1,
            "le": 1,
        },
    )
    tau_source: float = field(
        default=0.6,
        metadata={
            "help": "SBERT similarity to its source below which it has drifted from the intent it was "
            "asked to keep",
            "ge": -1,
            "le": 1,
        },
    )
    max_source_distance: float = field(
        default=0.1,
        metadata={
            "help": "largest angular distance (eq. 24) of a C-LAM label from its source's",
            "ge": 0,
        },
    )
    max_length_ratio: float = field(
        default=2.5,
        metadata={
            "help": "most words of a candidate per word of its source (a request with the same intent "
            "in other words is not three times as long); at least 12 words",
            "gt": 0,
        },
    )
    max_tokens: int = field(
        default=80, metadata={"help": "generation budget of one candidate", "ge": 1}
    )
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature", "ge": 0})
    min_words: int = field(default=3, metadata={"help": "fewest words of a request", "ge": 1})
    max_chars: int = field(
        default=600,
        metadata={"help": "longest request (the labelled data stays under 600)", "ge": 1},
    )
    seed: int = field(default=0, metadata={"help": "choice of sources and demonstrations", "ge": 0})

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.tau_topic < self.tau_dup:
            raise ValueError("tau_topic must be below tau_dup")


@dataclass(frozen=True)
class BuildConfig:
    """Dataset construction (eqs. 19-26)."""

    tau_min: float = field(
        default=0.5, metadata={"help": "SBERT similarity threshold of eq. 20", "ge": -1, "le": 1}
    )
    k: int = field(default=4, metadata={"help": "contrastive vectors per sample (eq. 25)", "ge": 1})
    cot: CotConfig = field(
        default_factory=CotConfig, metadata={"help": "chain-of-thought step (eq. 22)"}
    )
    augment: AugmentConfig = field(
        default_factory=AugmentConfig,
        metadata={"help": "augmentation step and quality loop (eq. 23)"},
    )


# --------------------------------------------------------------------------------------
# Loss (eqs. 31, 32)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossConfig:
    """The distillation loss.

    Beta must stay positive on the data: :func:`rapp_intent.iokd.loss.sample_beta` refuses
    a lambda that makes it reach 0 (the angular distance of two non-negative vectors is at
    most 0.5, so lambda < 2 is always safe).
    """

    kind: LossKind = field(
        default="iokd",
        metadata={
            "help": "iokd: per-sample beta (eq. 32); dpo: constant beta = beta_base (ablation)",
            "choices": ("iokd", "dpo"),
        },
    )
    beta_base: float = field(default=0.1, metadata={"help": "beta_base of eq. 32", "gt": 0})
    lam: float = field(default=1.5, metadata={"help": "lambda of eq. 32", "ge": 0})
    nll_weight: float = field(
        default=0.0,
        metadata={"help": "weight of the auxiliary NLL of s_p (0: eq. 31 alone)", "ge": 0},
    )

    def __post_init__(self) -> None:
        check_fields(self)


SHIPPED_LOSS = LossConfig(beta_base=0.1, lam=1.5, nll_weight=1.0)
"""The loss of the shipped artefacts of both families: eq. 31 with eq. 32's beta plus the
auxiliary NLL (eq. 31 alone only ranks s_p above s_c and stops pulling the prediction
onto s_p once the margin is large)."""


# --------------------------------------------------------------------------------------
# Distillation
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MinilmDistillConfig:
    """Distillation of the ``minilm`` E-LAM (Dirichlet head, optionally encoder adapters)."""

    loss: LossConfig = field(
        default_factory=lambda: SHIPPED_LOSS, metadata={"help": "eq. 31/32 configuration"}
    )
    epochs: int = field(default=300, metadata={"help": "most epochs of the head training", "ge": 1})
    batch_size: int = field(
        default=128, metadata={"help": "pairs per step of the head training", "ge": 1}
    )
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the head", "gt": 0})
    weight_decay: float = field(
        default=0.1, metadata={"help": "AdamW weight decay of the head", "ge": 0}
    )
    hidden: int = field(default=256, metadata={"help": "hidden units of the head", "ge": 1})
    smoothing: float = field(
        default=0.02,
        metadata={
            "help": "eps of the target smoothing s' = (1 - eps) s + eps / 4",
            "ge": 0,
            "lt": 1,
        },
    )
    val_fraction: float = field(
        default=0.15,
        metadata={
            "help": "share of labelled groups held apart to choose the epoch count",
            "ge": 0,
            "lt": 1,
        },
    )
    patience: int = field(
        default=40,
        metadata={"help": "epochs without a better validation MSE before stopping", "ge": 1},
    )
    refit: bool = field(
        default=True,
        metadata={"help": "retrain on all training data for the chosen number of epochs"},
    )
    embed_dropout: float = field(
        default=0.6,
        metadata={
            "help": "dropout on the head's copy of the embedding while training (the zero-shot logits "
            "always see the clean embedding)",
            "ge": 0,
            "lt": 1,
        },
    )
    ema: float = field(
        default=0.95,
        metadata={
            "help": "per-step decay of an exponential moving average of the head's weights, which is "
            "what gets evaluated and saved (0: none)",
            "ge": 0,
            "lt": 1,
        },
    )
    ensemble: int = field(
        default=5,
        metadata={
            "help": "frozen encoder: heads trained with different seeds on the same pairs, merged "
            "into one head that averages their outputs (1: a single head)",
            "ge": 1,
        },
    )
    seed: int = field(
        default=0, metadata={"help": "initialisation, shuffling and validation split", "ge": 0}
    )
    encoder_lora_r: int = field(
        default=8,
        metadata={
            "help": "rank of LoRA adapters on the encoder's linear layers, trained with the head "
            "(0: the encoder stays frozen and only the head is trained)",
            "ge": 0,
        },
    )
    encoder_lora_alpha: float = field(
        default=16.0, metadata={"help": "LoRA scaling numerator", "gt": 0}
    )
    encoder_lora_dropout: float = field(
        default=0.1,
        metadata={"help": "dropout on the adapters' input while training", "ge": 0, "lt": 1},
    )
    encoder_lr: float = field(
        default=5e-4, metadata={"help": "AdamW learning rate of the adapters", "gt": 0}
    )
    encoder_epochs: int = field(
        default=10, metadata={"help": "most epochs of the joint training", "ge": 1}
    )
    encoder_patience: int = field(
        default=3,
        metadata={
            "help": "epochs of the joint training without a better validation MSE before it stops",
            "ge": 1,
        },
    )
    encoder_batch: int = field(
        default=16,
        metadata={
            "help": "samples per step of the joint training (each with all its pairs)",
            "ge": 1,
        },
    )
    encoder_head_dropout: float = field(
        default=0.3,
        metadata={
            "help": "dropout on the head's copy of the embedding in the joint training",
            "ge": 0,
            "lt": 1,
        },
    )

    def __post_init__(self) -> None:
        check_fields(self)


SMOLLM2_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Smollm2DistillConfig:
    """Distillation of SmolLM2-135M-Instruct with LoRA adapters."""

    loss: LossConfig = field(
        default_factory=lambda: SHIPPED_LOSS, metadata={"help": "eq. 31/32 configuration"}
    )
    steps: int = field(default=160, metadata={"help": "optimiser steps", "ge": 1})
    batch_items: int = field(default=4, metadata={"help": "prompts per step", "ge": 1})
    contrastive_per_item: int = field(
        default=2,
        metadata={
            "help": "contrastive answers s_c per prompt (each makes a pair with s_p; the prompt's "
            "forward pass is shared by its answers)",
            "ge": 1,
        },
    )
    lr: float = field(
        default=1e-3, metadata={"help": "AdamW learning rate of the adapters", "gt": 0}
    )
    warmup_steps: int = field(
        default=10, metadata={"help": "linear warm-up steps (then cosine decay to 10%)", "ge": 0}
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank", "ge": 1})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator", "ge": 1})
    lora_dropout: float = field(
        default=0.05, metadata={"help": "dropout on the LoRA input", "ge": 0, "lt": 1}
    )
    lora_layers: int = field(
        default=12,
        metadata={"help": "adapters on the top this many decoder layers (0: all)", "ge": 0},
    )
    target_modules: tuple[str, ...] = field(
        default=SMOLLM2_TARGETS, metadata={"help": "projections that get adapters"}
    )
    max_minutes: float = field(
        default=30.0,
        metadata={
            "help": "wall-clock limit of the training loop (the run stops cleanly and the card records "
            "the steps done)",
            "gt": 0,
        },
    )
    seed: int = field(default=0, metadata={"help": "pair order, initialisation", "ge": 0})

    def __post_init__(self) -> None:
        check_fields(self)


# --------------------------------------------------------------------------------------
# Report (Fig. 6, Fig. 7)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportConfig:
    """What the report evaluates and where it writes."""

    models_dir: Path = field(
        metadata={"help": "models/elam: served artefacts and ablation/ (default: RAPP_MODELS_DIR)"}
    )
    out_dir: Path = field(metadata={"help": "where the figures go (default: <models_dir>/report)"})
    dev: Path | None = field(metadata={"help": "the dev set (evaluation only)"})
    readme: Path | None = field(
        default=None,
        metadata={
            "help": "Markdown file that also gets a generated IoKD section (the docs render "
            "Figs. 6 and 7 from fig6.json and fig7.json; default: none)"
        },
    )
    families: tuple[str, ...] = field(
        default=FAMILIES, metadata={"help": "E-LAM families to evaluate"}
    )
    fig7: bool = field(default=True, metadata={"help": "run the sample-size study (Fig. 7)"})
    progress: bool = field(default=False, metadata={"help": "progress bars"})
    data_dir: Path = field(default=DATA_DIR, metadata={"help": "the IoKD dataset"})
    fresh: bool = field(
        default=False,
        metadata={"help": "re-evaluate every artefact (default: reuse a card's evaluation)"},
    )
    fig7_ensemble: int = field(
        default=1,
        metadata={"help": "heads per Fig. 7 point (the shipped head may average more)", "ge": 1},
    )

    def __post_init__(self) -> None:
        check_fields(self)
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            raise ValueError(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
