"""Export the SRL policy to ONNX, with a model card, and check it against torch.

The actor-critic of :mod:`xapp_composer.policy` is exported as three graphs with named
inputs and dynamic sizes (batch B, agents N, candidates M), because the GCN encoder
depends only on the network state while the heads run for every request:

``<name>.encoder.onnx`` (once per network state):

| input | shape | type |
|---|---|---|
| ``x`` | (B, N, NODE_DIM) | float32 node features |
| ``adj`` | (B, N, N) | float32 normalised adjacency D^-1/2 (A+I) D^-1/2 |

outputs ``node_h`` (B, N, H) and ``h_graph`` (B, H) (eqs. 36, 37).

``<name>.elam.onnx`` (once per request, before translation): inputs ``h_graph`` (B, H)
and ``ctx`` (B, CTX_DIM); output ``elam_logits`` (B, K).

``<name>.onnx`` (every step: the E-LAM choice, then one call per agent):

| input | shape | type |
|---|---|---|
| ``node_h`` | (B, N, H) | float32 encoder output |
| ``cand_idx`` | (B, M) | int64 candidate agent ids |
| ``raw`` | (B, M, RAW_DIM) | float32 per-candidate step inputs |
| ``mask`` | (B, M) | bool valid candidates |
| ``chain`` | (B, CHAIN_DIM) | float32 the chain so far and its optimistic completion |
| ``look_raw`` | (B, M2, LOOK_DIM) | float32 the next step's agents (lookahead) |
| ``look_keep`` | (B, M, M2) | float32 ln(1 - route BER) candidate -> next agent |
| ``look_mask`` | (B, M2) | bool usable next agents |
| ``ctx`` | (B, CTX_DIM) | float32 context |

The candidate features (what the chain becomes with each candidate) are computed inside
this graph, so the xApp's per-step work is a few gathers and one call.

outputs ``logits`` (B, M), ``elam_logits`` (B, K), ``value`` (B,).

Measured here (81 agents, CPU): running the encoder once per state instead of at every
step makes a whole-chain decision several times faster, and at 2,000 agents it is the
difference between tens of milliseconds and a few (see ``bench/``).

The xApp's fast path, the tabulated-decision graphs derived from the same weights, is
exported by :mod:`xapp_composer.export_tree`.

A policy is trusted only after :func:`parity_check`: onnxruntime against torch on fresh
random networks of several sizes (STYLE.md 6).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from agentnet.network import generate_network
from xapp_composer import features as F
from xapp_composer import steps as S
from xapp_composer.artefacts import (
    ELAM_INPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    HEAD_INPUTS,
    INPUT_NAMES,
    OPSET,
    OUTPUT_NAMES,
    card_path_for,
    elam_path,
    encoder_path,
    sha256_file,
)
from xapp_composer.policy import GCNActorCritic, PolicyConfig


def load_checkpoint(path: Path) -> tuple[GCNActorCritic, dict]:
    """A trained policy (``<name>.pt`` written by training) and its summary."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    policy = GCNActorCritic(PolicyConfig(**ckpt["policy"]))
    policy.load_state_dict(ckpt["state_dict"])
    policy.eval()
    return policy, ckpt.get("summary", {})


def example_inputs(
    policy_cfg: PolicyConfig, n_agents: int = 81, batch: int = 1, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Real policy inputs on a generated network (a step with candidates)."""
    nets = [generate_network(seed + i, n_agents=n_agents) for i in range(batch)]
    s = F.batch_state(nets)
    prefix = S.Prefix.empty(batch)
    intent = np.tile([0.3, 0.2, 0.3, 0.2], (batch, 1))
    prefix.append(s, np.array([int(S.step_candidates(s, 0)[0])] * batch))
    cols = S.step_candidates(s, 1)
    step_in = S.step_inputs(s, prefix, cols, S.lookahead_candidates(s, 1, shared=True))
    idx = np.broadcast_to(cols, (batch, len(cols)))
    zeros = np.zeros(batch, dtype=np.int64)
    ctx = S.context(
        intent, zeros, policy_cfg.n_elams, prefix, 3, zeros, np.zeros((batch, F.TEXT_DIM))
    )
    return (
        torch.from_numpy(s.node_x),
        torch.from_numpy(s.adj),
        torch.from_numpy(np.ascontiguousarray(idx)),
        *(torch.from_numpy(x) for x in step_in),
        torch.from_numpy(ctx),
    )


class Bound(torch.nn.Module):
    """One method of a module as the ``forward`` of a graph to export.

    Args:
        owner: the module (the policy, or its candidate features).
        method: the method's name; the graph's inputs are its positional arguments.
        outputs: how many of its outputs the graph returns (default: all).
    """

    def __init__(self, owner: torch.nn.Module, method: str, outputs: int | None = None):
        super().__init__()
        self.owner = owner
        self.method = method
        self.outputs = outputs

    def forward(self, *inputs: torch.Tensor):
        out = getattr(self.owner, self.method)(*inputs)
        return out if self.outputs is None else out[: self.outputs]


def export_graph(
    module: torch.nn.Module,
    feeds: Mapping[str, torch.Tensor],
    outputs: Sequence[str],
    dims: Mapping[str, Mapping[int, Any]],
    path: Path,
) -> Path:
    """Export one graph with named inputs and dynamic sizes, and check it.

    Args:
        module: a module whose ``forward`` takes the inputs positionally (``*inputs``).
        feeds: input name -> example tensor, in the graph's input order.
        outputs: output names.
        dims: input name -> {axis: ``torch.export.Dim``} of its dynamic axes.
        path: where the graph goes; it passes ``onnx.checker`` (full check).
    """
    module.eval()  # the graphs hold no dropout or norm layers; this only states it
    program = torch.onnx.export(
        module,
        tuple(feeds.values()),
        input_names=list(feeds),
        output_names=list(outputs),
        dynamic_shapes={"inputs": tuple(dims.get(name, {}) for name in feeds)},
        opset_version=OPSET,
        dynamo=True,
        optimize=True,
        verbose=False,
    )
    program.save(str(path))
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def export_onnx(policy: GCNActorCritic, path: Path) -> tuple[Path, Path, Path]:
    """Write ``<name>.onnx`` (step heads), ``<name>.encoder.onnx`` and ``<name>.elam.onnx``
    with dynamic sizes; all pass ``onnx.checker``. Returns their paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    policy.eval()
    example = dict(zip(INPUT_NAMES, example_inputs(policy.cfg, n_agents=81, batch=2), strict=True))
    with torch.no_grad():
        node_h, h_graph = policy.encode_graph(example["x"], example["adj"])
    b, n, m = torch.export.Dim("batch"), torch.export.Dim("agents"), torch.export.Dim("cands")
    m2 = torch.export.Dim("look")
    dims = {
        "x": {0: b, 1: n},
        "adj": {0: b, 1: n, 2: n},
        "h_graph": {0: b},
        "ctx": {0: b},
        "node_h": {0: b, 1: n},
        "cand_idx": {0: b, 1: m},
        "raw": {0: b, 1: m},
        "mask": {0: b, 1: m},
        "chain": {0: b},
        "look_raw": {0: b, 1: m2},
        "look_keep": {0: b, 1: m, 2: m2},
        "look_mask": {0: b, 1: m2},
    }
    values = {**example, "node_h": node_h, "h_graph": h_graph}
    for method, inputs, outputs, out in (
        ("encode_graph", ENCODER_INPUTS, ENCODER_OUTPUTS, encoder_path(path)),
        ("elam_logits", ELAM_INPUTS, ["elam_logits"], elam_path(path)),
        ("heads", HEAD_INPUTS, OUTPUT_NAMES, path),
    ):
        export_graph(Bound(policy, method), {k: values[k] for k in inputs}, outputs, dims, out)
    return path, encoder_path(path), elam_path(path)


def parity_check(
    policy: GCNActorCritic,
    onnx_path: Path,
    sizes: tuple[int, ...] = (12, 50, 81, 200),
    seed: int = 1234,
) -> dict[str, float]:
    """Max abs difference of onnxruntime (encoder then heads) vs the torch forward, on
    fresh networks of each size (batch 1 and 2 alternately)."""
    cpu = ["CPUExecutionProvider"]
    enc = ort.InferenceSession(str(encoder_path(onnx_path)), providers=cpu)
    head = ort.InferenceSession(str(onnx_path), providers=cpu)
    elam = ort.InferenceSession(str(elam_path(onnx_path)), providers=cpu)
    worst: dict[str, float] = {}
    for i, n in enumerate(sizes):
        batch = 1 + i % 2
        args = example_inputs(policy.cfg, n_agents=n, batch=batch, seed=seed + 17 * i)
        with torch.no_grad():
            ref = policy(*args)
        feeds = {k: v.numpy() for k, v in zip(INPUT_NAMES, args, strict=True)}
        node_h, h_graph = enc.run(ENCODER_OUTPUTS, {"x": feeds["x"], "adj": feeds["adj"]})
        got = head.run(OUTPUT_NAMES, {"node_h": node_h, **{k: feeds[k] for k in HEAD_INPUTS[1:]}})
        (elam_logits,) = elam.run(["elam_logits"], {"h_graph": h_graph, "ctx": feeds["ctx"]})
        worst[f"elam_graph@N={n}"] = float(np.max(np.abs(ref[1].numpy() - elam_logits)))
        for name, r, g in zip(OUTPUT_NAMES, ref, got, strict=True):
            r = r.numpy()
            valid = r > -1e8  # masked logits are a constant
            err = float(np.max(np.abs(np.where(valid, r - g, 0.0)))) if r.size else 0.0
            worst[f"{name}@N={n}"] = err
    return worst


def write_card(
    onnx_path: Path,
    policy: GCNActorCritic,
    summary: dict[str, Any],
    parity: dict[str, float],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Model card next to the ONNX file: inputs and shapes, training config, metrics, sha256."""
    enc = encoder_path(onnx_path)
    elam = elam_path(onnx_path)
    card = {
        "name": onnx_path.stem,
        "format": "onnx",
        "opset": OPSET,
        "file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "encoder": {
            "file": enc.name,
            "sha256": sha256_file(enc),
            "inputs": {"x": ["B", "N", F.NODE_DIM, "float32"], "adj": ["B", "N", "N", "float32"]},
            "outputs": {
                "node_h": ["B", "N", policy.cfg.hidden, "float32"],
                "h_graph": ["B", policy.cfg.hidden, "float32"],
            },
        },
        "elam": {
            "file": elam.name,
            "sha256": sha256_file(elam),
            "inputs": {
                "h_graph": ["B", policy.cfg.hidden, "float32"],
                "ctx": ["B", policy.cfg.ctx_dim, "float32"],
            },
            "outputs": {"elam_logits": ["B", policy.cfg.n_elams, "float32"]},
        },
        "inputs": {
            "node_h": ["B", "N", policy.cfg.hidden, "float32"],
            "cand_idx": ["B", "M", "int64"],
            "raw": ["B", "M", F.RAW_DIM, "float32"],
            "mask": ["B", "M", "bool"],
            "chain": ["B", F.CHAIN_DIM, "float32"],
            "look_raw": ["B", "M2", F.LOOK_DIM, "float32"],
            "look_keep": ["B", "M", "M2", "float32"],
            "look_mask": ["B", "M2", "bool"],
            "ctx": ["B", policy.cfg.ctx_dim, "float32"],
        },
        "outputs": {"logits": ["B", "M"], "elam_logits": ["B", policy.cfg.n_elams], "value": ["B"]},
        "policy": policy.cfg.to_dict(),
        "elam_ids": summary.get("elam_ids", []),
        "fees": summary.get("fees", []),
        "mode": summary.get("config", {}).get("mode", "predicted"),
        "app": summary.get("config", {}).get("app"),
        "training": summary,
        "parity_max_abs_error": parity,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    card_path = card_path_for(onnx_path)
    card_path.write_text(json.dumps(card, indent=2, default=str))
    return card_path
