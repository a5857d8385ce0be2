"""The files of an exported SRL policy: their names, graph interfaces and model card.

Torch-free, so that the xApp's runtime (:mod:`xapp_composer.runtime`) and the exporter
(:mod:`xapp_composer.export`) share one definition without the runtime loading torch.

A policy named ``<name>`` is a set of ONNX graphs beside ``<name>.onnx`` and the model
card ``<name>.card.json`` (sha256 of every graph, inputs and shapes, training summary,
parity errors):

| file | run | inputs -> outputs |
|---|---|---|
| ``<name>.encoder.onnx`` | once per network state | ``x`` (B, N, NODE_DIM), ``adj`` (B, N, N) -> ``node_h`` (B, N, H), ``h_graph`` (B, H) (eqs. 36, 37) |
| ``<name>.elam.onnx`` | once per request | ``h_graph``, ``ctx`` (B, CTX_DIM) -> ``elam_logits`` (B, K) |
| ``<name>.onnx`` | every step | ``node_h``, :data:`STEP_INPUTS`, ``ctx`` -> ``logits`` (B, M), ``elam_logits``, ``value`` (B,) |
| ``<name>.plan.onnx`` | once per network state | the intent-independent candidate features of every prefix a greedy walk can reach |
| ``<name>.decide.onnx`` | once per request | the whole greedy walk over the three steps -> ``picks`` (3,) |
| ``<name>.prefix1.onnx``, ``<name>.prefix2.onnx`` | once per request | the walk over the first one or two steps, for states too large to tabulate |
"""

from __future__ import annotations

import json
from pathlib import Path

from servicekit.integrity import sha256_file

__all__ = [
    "sha256_file",
]

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models" / "policy"
"""Where the shipped policies live."""
RUNS_DIR = ROOT / "runs" / "policy"
"""Where training writes checkpoints and curves."""
SHIPPED_POLICY = MODELS_DIR / "srl-general.onnx"
"""The policy the xApp serves by default."""

STEP_INPUTS = ["cand_idx", "raw", "mask", "chain", "look_raw", "look_keep", "look_mask"]
INPUT_NAMES = ["x", "adj", *STEP_INPUTS, "ctx"]
ENCODER_INPUTS = ["x", "adj"]
ENCODER_OUTPUTS = ["node_h", "h_graph"]
ELAM_INPUTS = ["h_graph", "ctx"]
HEAD_INPUTS = ["node_h", *STEP_INPUTS, "ctx"]
OUTPUT_NAMES = ["logits", "elam_logits", "value"]
OPSET = 18


def companion_path(head_path: Path, part: str) -> Path:
    """``<name>.<part>.onnx`` beside ``<name>.onnx``."""
    head_path = Path(head_path)
    return head_path.with_name(f"{head_path.stem}.{part}.onnx")


def encoder_path(head_path: Path) -> Path:
    """``<name>.encoder.onnx`` beside ``<name>.onnx``."""
    return companion_path(head_path, "encoder")


def elam_path(head_path: Path) -> Path:
    """``<name>.elam.onnx`` beside ``<name>.onnx``."""
    return companion_path(head_path, "elam")


def card_path_for(onnx_path: Path) -> Path:
    """``<name>.card.json`` beside ``<name>.onnx``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.stem + ".card.json")


def read_card(onnx_path: Path) -> dict:
    """The model card beside an ONNX policy (FileNotFoundError when it is missing)."""
    card_path = card_path_for(onnx_path)
    if not card_path.exists():
        raise FileNotFoundError(f"model card {card_path} is missing")
    return json.loads(card_path.read_text())


def policy_files(path: Path) -> list[Path]:
    """The policy file and its companions (``<stem>.*``: graphs and card)."""
    path = Path(path)
    return sorted(path.parent.glob(f"{path.stem}.*"))


TREE_STEPS = 3
"""Chain length the whole-decision graph is exported for (the emulator's chains 1->2->3);
chains of another length are decided step by step."""
PLAN_INPUTS = ["raw", "chain", "look_raw", "look_keep", "look_mask"]
PLAN_OUTPUTS = ["head", "tail", "u2", "feas2"]
REQUEST_INPUTS = ["h_graph", "intent", "elam", "no_elam", "req"]


def level_inputs(k: int, last: bool) -> list[str]:
    """Input names of level (step) ``k`` of the whole-decision graph."""
    names = [f"hc{k}", f"head{k}", f"tail{k}", f"rowctx{k}", f"mask{k}"]
    return names if last else [*names, f"u2{k}", f"feas2{k}"]


def decide_inputs(n_steps: int = TREE_STEPS, levels: int | None = None) -> list[str]:
    """Input names of the whole-decision graph (or of the prefix graph, which walks the
    first ``levels`` steps), in order."""
    names = list(REQUEST_INPUTS)
    for k in range(n_steps if levels is None else levels):
        names += level_inputs(k, k == n_steps - 1)
    return names


def decide_outputs(n_steps: int = TREE_STEPS, levels: int | None = None) -> list[str]:
    """Output names: ``picks`` (levels,) and each level's masked logits."""
    return ["picks", *(f"logits{k}" for k in range(n_steps if levels is None else levels))]


def plan_path(head_path: Path) -> Path:
    """``<name>.plan.onnx`` beside ``<name>.onnx``."""
    return companion_path(head_path, "plan")


def decide_path(head_path: Path) -> Path:
    """``<name>.decide.onnx`` beside ``<name>.onnx``."""
    return companion_path(head_path, "decide")


PREFIX_LEVELS = (1, 2)
"""Prefix graphs exported: the walk over the first 1 or 2 steps, for states too large to
tabulate every step (the step graph decides the rest)."""


def prefix_path(head_path: Path, levels: int) -> Path:
    """``<name>.prefix<levels>.onnx`` beside ``<name>.onnx``: the walk over the first
    ``levels`` steps."""
    return companion_path(head_path, f"prefix{levels}")
