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

The xApp's fast path (:mod:`xapp_composer.tree`, :func:`attach_tree`) adds three kinds
of graph, derived from the same weights:

- ``<name>.plan.onnx`` (once per network state): the intent-independent part of the
  candidate features (:meth:`policy.CandidateFeatures.static`) of every chain prefix a
  greedy walk can reach (inputs as the step graph's, R prefixes at once);
- ``<name>.decide.onnx`` (once per request): the whole greedy walk over the three steps
  from those tables: the request's part (the intent's scores and lookahead, the context
  embedding) on the rows the walk reaches, the step graph's actor, the masked argmax;
  outputs ``picks`` (3,) and each step's logits;
- ``<name>.prefix1.onnx``, ``<name>.prefix2.onnx``: the same walk over the first one or
  two steps, for states too large to tabulate all three (the step graph decides the
  rest).

They are checked like the others (:func:`tree_parity_check`: the same chain as the step
graphs for every request of the check, recorded in the card under ``tree``).

A policy is trusted only after :func:`parity_check`: onnxruntime against torch on fresh
random networks of several sizes (STYLE.md 6).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xapp_composer import features as F
from xapp_composer.artefacts import (
    ELAM_INPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    HEAD_INPUTS,
    INPUT_NAMES,
    OPSET,
    OUTPUT_NAMES,
    PLAN_INPUTS,
    PLAN_OUTPUTS,
    PREFIX_LEVELS,
    REQUEST_INPUTS,
    TREE_STEPS,
    card_path_for,
    decide_inputs,
    decide_outputs,
    decide_path,
    elam_path,
    encoder_path,
    plan_path,
    prefix_path,
    sha256_file,
)
from xapp_composer.policy import MASKED_LOGIT, GCNActorCritic, PolicyConfig


def load_checkpoint(path: Path) -> tuple[GCNActorCritic, dict]:
    """A trained policy (``<name>.pt`` written by training) and its summary."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    policy = GCNActorCritic(PolicyConfig(**ckpt["policy"]))
    policy.load_state_dict(ckpt["state_dict"])
    policy.eval()
    return policy, ckpt.get("summary", {})


def example_inputs(
    policy_cfg: PolicyConfig, n_agents: int = 81, batch: int = 1, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Real policy inputs on a generated network (a step with candidates)."""
    from agentnet.network import generate_network

    nets = [generate_network(seed + i, n_agents=n_agents) for i in range(batch)]
    s = F.batch_state(nets)
    prefix = F.Prefix.empty(batch)
    intent = np.tile([0.3, 0.2, 0.3, 0.2], (batch, 1))
    prefix.append(s, np.array([int(F.step_candidates(s, 0)[0])] * batch))
    cols = F.step_candidates(s, 1)
    step_in = F.step_inputs(s, prefix, cols, F.lookahead_candidates(s, 1, shared=True))
    idx = np.broadcast_to(cols, (batch, len(cols)))
    ctx = F.context(intent, np.zeros(batch, dtype=np.int64), policy_cfg.n_elams, prefix, 3,
                    np.zeros(batch, dtype=np.int64), np.zeros((batch, F.TEXT_DIM)))  # fmt: skip
    return (
        torch.from_numpy(s.node_x),
        torch.from_numpy(s.adj),
        torch.from_numpy(np.ascontiguousarray(idx)),
        *(torch.from_numpy(x) for x in step_in),
        torch.from_numpy(ctx),
    )


class _Encoder(torch.nn.Module):
    def __init__(self, policy: GCNActorCritic):
        super().__init__()
        self.policy = policy

    def forward(self, x, adj):
        return self.policy.encode_graph(x, adj)


class _ElamHead(torch.nn.Module):
    def __init__(self, policy: GCNActorCritic):
        super().__init__()
        self.policy = policy

    def forward(self, h_graph, ctx):
        return self.policy.elam_logits(h_graph, ctx)


class _Heads(torch.nn.Module):
    def __init__(self, policy: GCNActorCritic):
        super().__init__()
        self.policy = policy

    def forward(self, node_h, cand_idx, raw, mask, chain, look_raw, look_keep, look_mask, ctx):
        return self.policy.heads(
            node_h, cand_idx, raw, mask, chain, look_raw, look_keep, look_mask, ctx
        )


def export_onnx(policy: GCNActorCritic, path: Path) -> tuple[Path, Path, Path]:
    """Write ``<name>.onnx`` (step heads), ``<name>.encoder.onnx`` and ``<name>.elam.onnx``
    with dynamic sizes; all pass ``onnx.checker``. Returns their paths."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    policy.eval()
    x, adj, *step, ctx = example_inputs(policy.cfg, n_agents=81, batch=2)
    with torch.no_grad():
        node_h, h_graph = policy.encode_graph(x, adj)
    b, n, m = torch.export.Dim("batch"), torch.export.Dim("agents"), torch.export.Dim("cands")
    m2 = torch.export.Dim("look")
    jobs = [
        (_Encoder(policy), (x, adj), ENCODER_INPUTS, ENCODER_OUTPUTS,
         {"x": {0: b, 1: n}, "adj": {0: b, 1: n, 2: n}}, encoder_path(path)),
        (_ElamHead(policy), (h_graph, ctx), ELAM_INPUTS, ["elam_logits"],
         {"h_graph": {0: b}, "ctx": {0: b}}, elam_path(path)),
        (_Heads(policy), (node_h, *step, ctx), HEAD_INPUTS, OUTPUT_NAMES,
         {"node_h": {0: b, 1: n}, "cand_idx": {0: b, 1: m}, "raw": {0: b, 1: m},
          "mask": {0: b, 1: m}, "chain": {0: b}, "look_raw": {0: b, 1: m2},
          "look_keep": {0: b, 1: m, 2: m2}, "look_mask": {0: b, 1: m2}, "ctx": {0: b}}, path),
    ]  # fmt: skip
    for module, args, inputs, outputs, dynamic, out in jobs:
        module.eval()  # the wrappers hold no dropout or norm layers; this only states it
        program = torch.onnx.export(
            module,
            args,
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes=dynamic,
            opset_version=OPSET,
            dynamo=True,
            optimize=True,
            verbose=False,
        )
        program.save(str(out))
        onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    return path, encoder_path(path), elam_path(path)


def parity_check(
    policy: GCNActorCritic,
    onnx_path: Path,
    sizes: tuple[int, ...] = (12, 50, 81, 200),
    seed: int = 1234,
) -> dict[str, float]:
    """Max abs difference of onnxruntime (encoder then heads) vs the torch forward, on
    fresh networks of each size (batch 1 and 2 alternately)."""
    import onnxruntime as ort

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


# ---- the whole-decision graphs (run time fast path) -----------------------------------------
class _Plan(torch.nn.Module):
    """The intent-independent candidate features of many chains (per network state)."""

    def __init__(self, policy: GCNActorCritic):
        super().__init__()
        self.policy = policy

    def forward(self, raw, chain, look_raw, look_keep, look_mask):
        head, tail, u2, feas2, _ = self.policy.featurize.static(
            raw, chain, look_raw, look_keep, look_mask
        )
        return head, tail, u2, feas2


class _Decide(torch.nn.Module):
    """A whole greedy decision (all steps) in one graph, from per-state tables.

    Level k holds the intent-independent features (:class:`_Plan`) of every chain prefix
    the greedy walk can reach at step k: R_k = M_0 ... M_{k-1} rows, ordered so that the
    prefix (a_0, ..., a_{k-1}) is row ((a_0 M_1 + a_1) M_2 + ...). The graph adds what
    depends on the request (the intent's scores and lookahead, the context embedding) to
    the row of the prefix chosen so far and runs the same actor as the step heads.
    """

    levels = TREE_STEPS
    """Steps the graph walks (its ``forward`` names their inputs: written for 3)."""

    def __init__(self, policy: GCNActorCritic):
        super().__init__()
        self.policy = policy

    def forward(
        self, h_graph, intent, elam, no_elam, req,
        hc0, head0, tail0, rowctx0, mask0, u20, feas20,
        hc1, head1, tail1, rowctx1, mask1, u21, feas21,
        hc2, head2, tail2, rowctx2, mask2,
    ):  # fmt: skip
        return self.walk(
            h_graph, intent, elam, no_elam, req,
            hc0, head0, tail0, rowctx0, mask0, u20, feas20,
            hc1, head1, tail1, rowctx1, mask1, u21, feas21,
            hc2, head2, tail2, rowctx2, mask2,
        )  # fmt: skip

    def walk(self, h_graph, intent, elam, no_elam, req, *levels):
        """The greedy walk over ``self.levels`` steps (inputs as :func:`decide_inputs`)."""
        p = self.policy
        fixed = torch.cat([h_graph, p.phi(intent), p.psi(elam)], dim=-1)  # (1, H + 2E)
        masked = h_graph.new_tensor(MASKED_LOGIT)
        row = None  # level 0 has one row, the empty chain
        picks = []
        logits_out = []
        i = 0
        for k in range(self.levels):
            last = k == TREE_STEPS - 1
            tables = list(levels[i : i + (5 if last else 7)])
            i += len(tables)
            hc = tables.pop(0)
            if row is not None:
                tables = [t.index_select(0, row) for t in tables]
            head, tail, rowctx, mask = tables[:4]
            u2, feas2 = (None, None) if last else tables[4:]
            cand = p.featurize.combine(head, tail, u2, feas2, None, intent)
            ctx_rest = torch.cat([no_elam, rowctx, req], dim=-1)
            z = torch.cat([fixed, p.ctx_rest(ctx_rest)], dim=-1)
            m = hc.shape[0]
            x = torch.cat([hc[None], cand, z.unsqueeze(1).expand(-1, m, -1)], dim=-1)
            logits = torch.where(mask, p.actor(x).squeeze(-1), masked)
            a = torch.argmax(logits, dim=1)
            picks.append(a)
            logits_out.append(logits)
            row = a if row is None else row * m + a
        return (torch.cat(picks), *logits_out)


class _DecidePrefix2(_Decide):
    """:class:`_Decide` over the first two of three steps."""

    levels = 2

    def forward(  # type: ignore[override]
        self, h_graph, intent, elam, no_elam, req,
        hc0, head0, tail0, rowctx0, mask0, u20, feas20,
        hc1, head1, tail1, rowctx1, mask1, u21, feas21,
    ):  # fmt: skip
        return self.walk(
            h_graph, intent, elam, no_elam, req,
            hc0, head0, tail0, rowctx0, mask0, u20, feas20,
            hc1, head1, tail1, rowctx1, mask1, u21, feas21,
        )  # fmt: skip


class _DecidePrefix1(_Decide):
    """:class:`_Decide` over the first of three steps."""

    levels = 1

    def forward(  # type: ignore[override]
        self, h_graph, intent, elam, no_elam, req, hc0, head0, tail0, rowctx0, mask0, u20, feas20
    ):
        return self.walk(h_graph, intent, elam, no_elam, req, hc0, head0, tail0, rowctx0, mask0,
                         u20, feas20)  # fmt: skip


def tree_example(policy_cfg: PolicyConfig, n_agents: int = 50, seed: int = 0):
    """(state, levels of every step, request feeds) of a generated network: the real
    inputs the tabulated graphs are traced on."""
    from agentnet.network import generate_network
    from xapp_composer.tree import build_levels, request_feeds

    s = F.batch_state([generate_network(seed, n_agents=n_agents)], shortlist_k=F.K_CAND)
    levels = build_levels(F.StatePlan(s), policy_cfg.n_elams)
    if len(levels) != TREE_STEPS:
        raise ValueError(f"{n_agents} agents: the example state cannot tabulate every step")
    req = request_feeds(np.array([0.3, 0.2, 0.3, 0.2]), 0, policy_cfg.n_elams, "qa",
                        np.zeros(F.TEXT_DIM))  # fmt: skip
    return s, levels, req


def export_tree(policy: GCNActorCritic, path: Path) -> list[Path]:
    """Write ``<name>.plan.onnx``, ``<name>.decide.onnx`` and ``<name>.prefix{1,2}.onnx``
    (dynamic sizes, opset 18); all pass ``onnx.checker``. Returns their paths."""
    import onnx

    from xapp_composer.tree import plan_tables

    path = Path(path)
    policy.eval()
    s, levels, req = tree_example(policy.cfg)
    with torch.no_grad():
        node_h, h_graph = policy.encode_graph(torch.from_numpy(s.node_x), torch.from_numpy(s.adj))
    plan_args = tuple(torch.from_numpy(x) for x in levels[0].inputs)
    r, m, m2 = torch.export.Dim("rows"), torch.export.Dim("cands"), torch.export.Dim("look")
    plan_dyn = {"raw": {0: r, 1: m}, "chain": {0: r}, "look_raw": {0: r, 1: m2},
                "look_keep": {0: r, 1: m, 2: m2}, "look_mask": {0: r, 1: m2}}  # fmt: skip
    plan_module = _Plan(policy)

    def run_plan(feeds):
        with torch.no_grad():
            return [
                t.numpy() for t in plan_module(*(torch.from_numpy(feeds[k]) for k in PLAN_INPUTS))
            ]

    tables = plan_tables(run_plan, levels, node_h.numpy()[0])
    feeds = {"h_graph": h_graph.numpy(), **req, **tables}
    dims: dict[str, dict[int, Any]] = {}
    for k in range(TREE_STEPS):
        mk, lk = torch.export.Dim(f"m{k}"), torch.export.Dim(f"l{k}")
        rk = torch.export.Dim(f"r{k}") if k else None
        for nm, shape_dims in {
            f"hc{k}": {0: mk}, f"head{k}": {0: rk, 1: mk}, f"tail{k}": {0: rk, 1: mk},
            f"rowctx{k}": {0: rk}, f"mask{k}": {0: rk, 1: mk},
            f"u2{k}": {0: rk, 1: mk, 2: lk}, f"feas2{k}": {0: rk, 1: mk, 2: lk},
        }.items():  # fmt: skip
            dims[nm] = {d: v for d, v in shape_dims.items() if v is not None}
    for nm in REQUEST_INPUTS:
        dims[nm] = {}
    jobs = [(plan_module, plan_args, PLAN_INPUTS, PLAN_OUTPUTS, plan_dyn, plan_path(path))]
    for module, levels_n, file in ((_Decide(policy), None, decide_path(path)),
                                   (_DecidePrefix1(policy), 1, prefix_path(path, 1)),
                                   (_DecidePrefix2(policy), 2, prefix_path(path, 2))):  # fmt: skip
        names = decide_inputs(TREE_STEPS, levels_n)
        args = tuple(torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in names)
        jobs.append((module, args, names, decide_outputs(TREE_STEPS, levels_n),
                     {k: dims[k] for k in names}, file))  # fmt: skip
    out = []
    for module, args, inputs, outputs, dynamic, file in jobs:
        module.eval()
        program = torch.onnx.export(
            module, args, input_names=inputs, output_names=outputs, dynamic_shapes=dynamic,
            opset_version=OPSET, dynamo=True, optimize=True, verbose=False,
        )  # fmt: skip
        program.save(str(file))
        onnx.checker.check_model(onnx.load(str(file)), full_check=True)
        out.append(file)
    return out


def tree_parity_check(
    onnx_path: Path,
    sizes: tuple[int, ...] = (12, 50, 81, 300, 600),
    requests: int = 40,
    seed: int = 4321,
) -> dict[str, Any]:
    """The tabulated paths against the step-by-step graphs, both in onnxruntime: the
    same chain for ``requests`` random requests (intent, E-LAM, app, text) on a fresh
    network of each size (small ones take the whole-decision graph, larger ones a
    prefix graph), and the largest first-step logit difference."""
    from agentnet.intents import APPS
    from agentnet.network import generate_network
    from xapp_composer import tree as T
    from xapp_composer.runtime import PolicyRuntime

    rt = PolicyRuntime(onnx_path, verify=False, prefer_gpu=False)
    if rt.decide_session is None or not rt.prefix_sessions:
        raise ValueError(f"{onnx_path}: the card names no whole-decision graphs")
    rng = np.random.default_rng(seed)
    same = total = 0
    worst = 0.0
    per_size: dict[str, dict[str, Any]] = {}
    for i, n in enumerate(sizes):
        p = rt.prepare(generate_network(seed + 31 * i, n_agents=n))
        step_p = dataclasses.replace(p, tables=None, cols=(), tree_levels=0)
        agree = 0
        for j in range(requests):
            intent = rng.dirichlet(np.ones(4))
            elam = int(rng.integers(rt.n_elams)) if rt.mode != "even" else -1
            app = APPS[j % len(APPS)]
            prompt = f"request {j}: " + " ".join(rng.choice(["fast", "exact", "cheap", "safe"], 3))
            agree += rt.compose(p, intent, elam, app, prompt) == rt.compose(
                step_p, intent, elam, app, prompt
            )
            if p.tables is None:
                continue
            seen = intent if rt.mode != "even" else np.full(4, 0.25)
            text = F.text_features(prompt)
            req = T.request_feeds(seen, None if elam < 0 else elam, rt.n_elams, APPS.index(app),
                                  text)  # fmt: skip
            session = rt.tree_session(p.tree_levels)
            out = session.run(["logits0"], {"h_graph": p.h_graph, **req, **p.tables})
            idx, step = p.plan.inputs(F.Prefix.empty(1))
            ctx = F.context(np.asarray(seen, dtype=float)[None, :],
                            None if elam < 0 else np.array([elam]), rt.n_elams,
                            F.Prefix.empty(1), TREE_STEPS, np.array([APPS.index(app)]),
                            text[None, :])  # fmt: skip
            ref = rt._run(p, idx, step, ctx)[0]
            valid = ref > -1e8
            worst = max(worst, float(np.max(np.abs(np.where(valid, ref - out[0], 0.0)))))
        per_size[f"N={n}"] = {"tabulated_steps": p.tree_levels, "same_chain": agree}
        same += agree
        total += requests
    return {"same_chain": same, "requests": total, "per_size": per_size,
            "max_abs_logit_error": worst}  # fmt: skip


def attach_tree(policy: GCNActorCritic, onnx_path: Path) -> dict[str, Any]:
    """Export the tabulated-decision graphs of a policy already exported to
    ``onnx_path``, check them against its step-by-step graphs and record them in its
    card (key ``tree``).

    Raises:
        ValueError: some request got another chain than step by step.
    """
    files = export_tree(policy, onnx_path)
    card_path = card_path_for(onnx_path)
    card = json.loads(card_path.read_text())
    card["tree"] = {"steps": TREE_STEPS}
    keys = ("plan", "decide", *(f"prefix{k}" for k in PREFIX_LEVELS))
    for key, file, levels in zip(keys, files, (None, None, *PREFIX_LEVELS), strict=True):
        entry: dict[str, Any] = {"file": file.name, "sha256": sha256_file(file)}
        if key == "plan":
            entry.update(inputs=PLAN_INPUTS, outputs=PLAN_OUTPUTS)
        else:
            entry.update(inputs=decide_inputs(TREE_STEPS, levels),
                         outputs=decide_outputs(TREE_STEPS, levels))  # fmt: skip
        card["tree"][key] = entry
    card_path.write_text(json.dumps(card, indent=2, default=str))
    parity = tree_parity_check(onnx_path)
    card["tree"]["parity"] = parity
    card_path.write_text(json.dumps(card, indent=2, default=str))
    if parity["same_chain"] != parity["requests"]:
        raise ValueError(
            f"{onnx_path.name}: the tabulated decision chose another chain than the "
            f"step-by-step graphs in {parity['requests'] - parity['same_chain']} of "
            f"{parity['requests']} requests"
        )
    return card["tree"]
