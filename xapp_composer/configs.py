"""The typed options of the ``xapp-composer`` commands, one dataclass per command.

Each field's ``metadata`` holds its help string and its bounds or choices, from which
:func:`servicekit.cli.add_config` generates the command's flags (``--batch-episodes``,
``--decisions``, ...), so every option exists once. Torch-free: the command line is built
without loading torch (``xapp-composer run`` never does).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from agentnet.config import DEFAULT
from agentnet.intents import APPS
from xapp_composer.artefacts import MODELS_DIR, RUNS_DIR, SHIPPED_POLICY
from xapp_composer.settings import XappSettings

IntentMode = Literal["predicted", "even"]
"""``predicted``: SRL (the chosen E-LAM's vector); ``even``: DRL (Even), s = [0.25] * 4."""
PredictionSource = Literal["rapp", "synthetic"]
"""E-LAM predictions: the rApp's models, or a noisy stand-in (tests, quick runs)."""
DEFAULT_ELAMS = ["minilm", "smollm2"]
MIN_AGENTS = max(DEFAULT.n_types, DEFAULT.n_steps)
_XAPP_DEFAULTS = XappSettings.model_fields
"""The live xApp's settings, whose defaults the benchmark decodes with."""
"""The smallest network that has an agent of every type."""


def default_name(app: str | None, mode: str) -> str:
    """File stem of a policy: ``srl-<app|general>`` or ``drl-even``."""
    if mode == "even":
        return "drl-even"
    return f"srl-{app or 'general'}"


@dataclass
class TrainConfig:
    """PPO hyper-parameters and budget (``xapp-composer train``)."""

    name: str = field(
        default="srl-general",
        metadata={"help": "policy name, the file stem (srl-<app|general> or drl-even by default)"},
    )
    app: str | None = field(
        default=None, metadata={"help": "train on one application only", "choices": APPS}
    )
    mode: IntentMode = field(
        default="predicted", metadata={"help": "'predicted' (SRL) or 'even' (DRL (Even))"}
    )
    minutes: float = field(default=12.0, metadata={"help": "wall-clock budget", "gt": 0})
    max_iterations: int = field(default=100_000, metadata={"help": "stop after this many", "ge": 1})
    batch_episodes: int = field(default=256, metadata={"help": "episodes per iteration", "ge": 1})
    minibatch_episodes: int = field(
        default=128, metadata={"help": "episodes per minibatch", "ge": 1}
    )
    epochs: int = field(default=3, metadata={"help": "PPO epochs per iteration", "ge": 1})
    lr: float = field(default=3e-4, metadata={"help": "Adam learning rate (annealed)", "gt": 0})
    gamma: float = field(default=0.99, metadata={"help": "discount (eq. 40)", "ge": 0, "le": 1})
    gae_lambda: float = field(
        default=0.95, metadata={"help": "GAE lambda (eq. 42)", "ge": 0, "le": 1}
    )
    clip: float = field(default=0.2, metadata={"help": "PPO clip epsilon (eq. 43)", "gt": 0})
    ent_coef: float = field(
        default=0.01, metadata={"help": "entropy bonus (annealed to 0)", "ge": 0}
    )
    vf_coef: float = field(default=0.5, metadata={"help": "value-loss weight", "ge": 0})
    max_grad_norm: float = field(default=0.5, metadata={"help": "gradient clipping", "gt": 0})
    step_reward_coef: float = field(
        default=1.0, metadata={"help": "weight of r_step (eq. 34) against r_episode", "ge": 0}
    )
    pool_size: int = field(default=512, metadata={"help": "training networks in the pool", "ge": 1})
    pool_refresh: int = field(
        default=8, metadata={"help": "networks replaced per iteration", "ge": 0}
    )
    n_agents: int = field(
        default=DEFAULT.n_agents, metadata={"help": "N of training networks", "ge": MIN_AGENTS}
    )
    agents_mix: list[int] | None = field(
        default=None,
        metadata={
            "help": "train on networks of these sizes instead of --n-agents alone (one pool "
            "per size; each iteration's episodes are split evenly over them and validation "
            "averages them), e.g. 81,300,600",
            "ge": MIN_AGENTS,
        },
    )
    hidden: int = field(default=64, metadata={"help": "policy width", "ge": 1})
    threads: int = field(
        default=1,
        metadata={"help": "torch threads (1 avoids oversubscription on 2 cores)", "ge": 1},
    )
    eval_every: int = field(
        default=20, metadata={"help": "iterations between validations", "ge": 1}
    )
    seed: int = field(default=0, metadata={"help": "random seed", "ge": 0})
    init: str | None = field(
        default=None,
        metadata={"help": "warm start from this checkpoint (.pt), e.g. the general policy"},
    )
    ray: str = field(
        default="",
        metadata={
            "help": "roll out and compute gradients on Ray actors: 'auto' (the cluster in "
            "view, else a local one) or a cluster address; '' (default): in this process"
        },
    )
    workers: int = field(
        default=1, metadata={"help": "Ray workers, one CPU each (with --ray)", "ge": 1}
    )

    @property
    def sizes(self) -> list[int]:
        """N of the training networks: ``agents_mix``, else ``n_agents`` alone."""
        return sorted(set(self.agents_mix)) if self.agents_mix else [self.n_agents]

    def to_dict(self) -> dict:
        """JSON-friendly."""
        return asdict(self)


@dataclass
class TrainData:
    """Where ``xapp-composer train`` gets its requests and puts its results."""

    elams: list[str] = field(
        default_factory=lambda: list(DEFAULT_ELAMS),
        metadata={"help": "E-LAM ids the policy picks from"},
    )
    predictions: PredictionSource = field(
        default="rapp",
        metadata={"help": "E-LAM predictions: the rApp's models, or a noisy stand-in"},
    )
    steps: int | None = field(
        default=None,
        metadata={"help": "environment steps to train for (sets --max-iterations)", "ge": 1},
    )
    out: Path = field(default=RUNS_DIR, metadata={"help": "checkpoint and curve directory"})
    quiet: bool = field(default=False, metadata={"help": "no progress bar"})


@dataclass
class ExportConfig:
    """``xapp-composer export``: checkpoints to ONNX graphs with model cards."""

    name: list[str] | None = field(
        default=None, metadata={"help": "policy names, comma-separated (default: every .pt)"}
    )
    runs: Path = field(default=RUNS_DIR, metadata={"help": "where the checkpoints are"})
    out: Path = field(default=MODELS_DIR, metadata={"help": "where the graphs and cards go"})


@dataclass
class RecheckConfig:
    """``xapp-composer recheck``: the tabulated-decision parity of exported policies, run
    again and recorded in their cards (no checkpoint needed; the graphs stay as they are)."""

    name: list[str] | None = field(
        default=None,
        metadata={"help": "policy names, comma-separated (default: every card in --models)"},
    )
    models: Path = field(default=MODELS_DIR, metadata={"help": "directory of the ONNX policies"})


@dataclass
class EvalConfig:
    """``xapp-composer eval``: SRL against the baselines on unseen networks."""

    intents: Path | None = field(
        default=None, metadata={"help": "labelled intents (JSON Lines); required"}
    )
    seeds: list[int] = field(
        default_factory=lambda: [101, 102, 103, 104, 105],
        metadata={"help": "network seeds", "ge": 0},
    )
    requests: int | None = field(
        default=None, metadata={"help": "evaluate N (network, intent) pairs", "ge": 1}
    )
    agents: int = field(default=DEFAULT.n_agents, metadata={"help": "N", "ge": MIN_AGENTS})
    models: Path = field(default=MODELS_DIR, metadata={"help": "directory of the ONNX policies"})
    predictions: PredictionSource = field(
        default="rapp", metadata={"help": "E-LAM predictions: the rApp's models or a stand-in"}
    )
    llm: Literal["local", "openai", "off"] = field(
        default="local", metadata={"help": "C-LAM backend of the LLM zero-shot baseline"}
    )
    llm_requests: int = field(
        default=48, metadata={"help": "pairs for the (slow) LLM baseline; 0 = all", "ge": 0}
    )
    starts: list[int] = field(
        default_factory=list,
        metadata={
            "help": "also evaluate SRL with multi-start decoding of m starts (srl_m<m>, "
            "srl_general_m<m>), for each m listed; plain SRL is always evaluated",
            "ge": 2,
        },
    )
    seed: int = field(default=0, metadata={"help": "random seed", "ge": 0})
    json: bool = field(default=False, metadata={"help": "one line of JSON"})


@dataclass
class BenchConfig:
    """``xapp-composer bench``: whole-decision latency of an ONNX policy."""

    agents: int = field(default=81, metadata={"help": "N", "ge": MIN_AGENTS})
    decisions: int = field(default=1000, metadata={"help": "decisions timed", "ge": 1})
    networks: int = field(default=10, metadata={"help": "network states cycled through", "ge": 1})
    changed: float = field(
        default=0.01,
        metadata={
            "help": "share of agents changed in the next state (prepare_changed_ms)",
            "gt": 0.0,
            "le": 1.0,
        },
    )
    policy: Path = field(default=SHIPPED_POLICY, metadata={"help": "the ONNX policy"})
    srl_starts: int = field(
        default=_XAPP_DEFAULTS["srl_starts"].default,
        metadata={"help": "multi-start decoding's m, as the xApp's XAPP_SRL_STARTS", "ge": 1},
    )
    srl_starts_min_agents: int = field(
        default=_XAPP_DEFAULTS["srl_starts_min_agents"].default,
        metadata={"help": "smallest network decoded with multi-start", "ge": 1},
    )
    json: bool = field(default=False, metadata={"help": "one line of JSON"})
