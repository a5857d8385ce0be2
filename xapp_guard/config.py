"""The typed configurations of the guard's commands (dataclasses; ``xapp-guard`` makes a
flag of every field). Kept free of heavy imports: building the command line, and so
``xapp-guard run``, loads no training framework."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models" / "guard"
SHIPPED_POLICY = ROOT / "models" / "policy" / "srl-general.onnx"
METHODS = ("real_only", "noise_augmented", "synthetic", "synthetic_evolved", "random_scenarios")
"""The compared methods (:mod:`xapp_guard.evolve`)."""
ROUTES = ("scenario", "windows")
"""How the LLM's data reaches the detector (:mod:`xapp_guard.synth`)."""


@dataclass
class RecordConfig:
    """A recording run."""

    seed: int = field(metadata={"help": "emulator, schedule and attack seed", "ge": 0})
    out: Path = field(metadata={"help": "directory for events.jsonl.gz and labels.json"})
    episodes: int = field(
        default=2, metadata={"help": "train episodes per class and variant", "ge": 1}
    )
    val_episodes: int = field(
        default=1, metadata={"help": "val episodes per class and variant", "ge": 0}
    )
    first_part: str = field(
        default="train", metadata={"help": "name of the first part (test recordings: test)"}
    )
    rate: float = field(
        default=3.0, metadata={"help": "emulator request rate at start (req/s)", "gt": 0}
    )
    warmup_s: float = field(default=30.0, metadata={"help": "benign start (s)", "ge": 0})
    gap_s: float = field(
        default=10.0, metadata={"help": "mean benign gap between episodes (s)", "ge": 0}
    )
    clean_requests: int = field(
        default=0, metadata={"help": "> 0: a clean run of this many requests, no attacks"}
    )
    rapp: bool = field(default=True, metadata={"help": "run the rApp (gRPC traffic)"})
    network: str = field(default="default", metadata={"help": "network name"})
    policy: Path = field(default=SHIPPED_POLICY, metadata={"help": "the xApp's policy"})


@dataclass
class TrainConfig:
    """Training of one detector."""

    epochs: int = field(default=60, metadata={"help": "passes over the training set", "ge": 1})
    lr: float = field(default=3e-3, metadata={"help": "AdamW learning rate", "gt": 0})
    weight_decay: float = field(default=1e-3, metadata={"help": "AdamW weight decay", "ge": 0})
    batch: int = field(default=128, metadata={"help": "sequences per step", "ge": 1})
    eval_every: int = field(
        default=2, metadata={"help": "epochs between validation scores", "ge": 1}
    )
    seed: int = field(default=0, metadata={"help": "initialisation and shuffling seed", "ge": 0})
    length: int = field(default=8, metadata={"help": "windows per sequence", "ge": 1})
    hidden: int = field(default=32, metadata={"help": "convolution channels", "ge": 1})
    threads: int = field(default=1, metadata={"help": "torch threads", "ge": 1})


@dataclass
class EvolveConfig:
    """The loop's budget and sampling."""

    generations: int = field(
        default=4, metadata={"help": "rounds of the self-evolution loop", "ge": 1}
    )
    per_cell: int = field(
        default=4, metadata={"help": "prompts per class, variant and route per round", "ge": 1}
    )
    routes: str = field(default="scenario,windows", metadata={"help": "routes, comma-separated"})
    examples: int = field(default=3, metadata={"help": "examples per prompt", "ge": 1})
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature", "ge": 0})
    max_tokens: int = field(
        default=64, metadata={"help": "longest scenario answer (tokens)", "ge": 1}
    )
    window_tokens: int = field(
        default=110, metadata={"help": "longest windows answer (tokens)", "ge": 1}
    )
    decoding: str = field(
        default="auto",
        metadata={"help": "constrained (local SmolLM2 fills JSON templates), free (the model "
                  "writes the line), auto (constrained for the local backend)",
                  "choices": ("auto", "constrained", "free")},
    )  # fmt: skip
    gate_seeds: int = field(
        default=3,
        metadata={"help": "detectors (seeds) whose mean validation F1 gates a round", "ge": 1},
    )
    tolerance: float = field(
        default=0.0, metadata={"help": "a round is kept if val F1 >= best - tolerance"}
    )
    seed: int = field(default=0, metadata={"help": "example sampling and realisation seed"})

    def route_list(self) -> tuple[str, ...]:
        routes = tuple(r.strip() for r in self.routes.split(",") if r.strip())
        bad = [r for r in routes if r not in ROUTES]
        if bad or not routes:
            raise ValueError(f"routes must be among {list(ROUTES)}, got {self.routes!r}")
        return routes


@dataclass
class ExperimentConfig:
    """Where the data comes from and where the detectors go."""

    corpus: Path = field(default=MODELS / "corpus" / "seed-1",
                         metadata={"help": "the training recording (train and val parts)"})  # fmt: skip
    out: Path = field(default=MODELS, metadata={"help": "output directory"})
    seeds: int = field(default=5, metadata={"help": "detectors trained per method"})
    llm_cache: Path | None = field(
        default=None, metadata={"help": "memoise LLM answers here (default out/llm-cache.jsonl)"}
    )
