"""Export the xApp's fast path: the tabulated-decision graphs of an SRL policy.

Derived from the same weights as the step graphs (:mod:`xapp_composer.export`), run by
:mod:`xapp_composer.tree` and :class:`~xapp_composer.runtime.PolicyRuntime`:

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
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agentnet.intents import APPS
from agentnet.network import generate_network
from xapp_composer import features as F
from xapp_composer import steps as S
from xapp_composer import tree as T
from xapp_composer.artefacts import (
    PLAN_INPUTS,
    PLAN_OUTPUTS,
    PREFIX_LEVELS,
    TREE_STEPS,
    card_path_for,
    decide_inputs,
    decide_outputs,
    decide_path,
    plan_path,
    prefix_path,
    read_card,
    sha256_file,
)
from xapp_composer.export import Bound, export_graph
from xapp_composer.policy import MASKED_LOGIT, GCNActorCritic, PolicyConfig
from xapp_composer.runtime import PolicyRuntime
from xapp_composer.tree import plan_tables


class WalkGraph(torch.nn.Module):
    """A greedy decision over the first ``levels`` steps in one graph, from per-state
    tables (all :data:`TREE_STEPS`: the whole decision; fewer: a prefix graph).

    Level k holds the intent-independent features (the plan graph's) of every chain prefix
    the greedy walk can reach at step k: R_k = M_0 ... M_{k-1} rows, ordered so that the
    prefix (a_0, ..., a_{k-1}) is row ((a_0 M_1 + a_1) M_2 + ...). The graph adds what
    depends on the request (the intent's scores and lookahead, the context embedding) to
    the row of the prefix chosen so far and runs the same actor as the step heads.
    """

    def __init__(self, policy: GCNActorCritic, levels: int = TREE_STEPS):
        super().__init__()
        self.policy = policy
        self.levels = levels

    def forward(self, *inputs: torch.Tensor):
        """The greedy walk over ``self.levels`` steps (inputs as :func:`decide_inputs`)."""
        h_graph, intent, elam, no_elam, req, *levels = inputs
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


def tree_example(policy_cfg: PolicyConfig, n_agents: int = 50, seed: int = 0):
    """(state, levels of every step, request feeds) of a generated network: the real
    inputs the tabulated graphs are traced on."""
    net = generate_network(seed, n_agents=n_agents)
    s = F.batch_state([net], shortlist_k=S.K_CAND)
    s.adj = F.normalized_adjacency(net.n_agents, net.edges)[None].astype(np.float32)
    levels = T.build_levels(S.StatePlan(s), policy_cfg.n_elams)
    if len(levels) != TREE_STEPS:
        raise ValueError(f"{n_agents} agents: the example state cannot tabulate every step")
    req = T.request_feeds(
        np.array([0.3, 0.2, 0.3, 0.2]), 0, policy_cfg.n_elams, "qa", np.zeros(F.TEXT_DIM)
    )
    return s, levels, req


def export_tree(policy: GCNActorCritic, path: Path) -> list[Path]:
    """Write ``<name>.plan.onnx``, ``<name>.decide.onnx`` and ``<name>.prefix{1,2}.onnx``
    (dynamic sizes); all pass ``onnx.checker``. Returns their paths."""
    path = Path(path)
    policy.eval()
    s, levels, req = tree_example(policy.cfg)
    with torch.no_grad():
        node_h, h_graph = policy.encode_graph(torch.from_numpy(s.node_x), torch.from_numpy(s.adj))
    plan = Bound(policy.featurize, "static", outputs=len(PLAN_OUTPUTS))

    def run_plan(feeds):
        with torch.no_grad():
            return [t.numpy() for t in plan(*(torch.from_numpy(feeds[k]) for k in PLAN_INPUTS))]

    tables = plan_tables(run_plan, levels, node_h.numpy()[0])
    feeds = {"h_graph": h_graph.numpy(), **req, **tables}
    r, m, m2 = torch.export.Dim("rows"), torch.export.Dim("cands"), torch.export.Dim("look")
    dims: dict[str, dict[int, Any]] = {
        "raw": {0: r, 1: m},
        "chain": {0: r},
        "look_raw": {0: r, 1: m2},
        "look_keep": {0: r, 1: m, 2: m2},
        "look_mask": {0: r, 1: m2},
    }
    for k in range(TREE_STEPS):
        mk, lk = torch.export.Dim(f"m{k}"), torch.export.Dim(f"l{k}")
        rk = {0: torch.export.Dim(f"r{k}")} if k else {}
        rows_m = {**rk, 1: mk}
        dims.update(
            {
                f"hc{k}": {0: mk},
                f"head{k}": rows_m,
                f"tail{k}": rows_m,
                f"rowctx{k}": rk,
                f"mask{k}": rows_m,
                f"u2{k}": {**rows_m, 2: lk},
                f"feas2{k}": {**rows_m, 2: lk},
            }
        )
    plan_feeds = dict(
        zip(PLAN_INPUTS, (torch.from_numpy(x) for x in levels[0].inputs), strict=True)
    )
    out = [export_graph(plan, plan_feeds, PLAN_OUTPUTS, dims, plan_path(path))]
    walks = [(None, decide_path(path)), *((k, prefix_path(path, k)) for k in PREFIX_LEVELS)]
    for walked, file in walks:
        names = decide_inputs(TREE_STEPS, walked)
        walk_feeds = {k: torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in names}
        module = WalkGraph(policy, TREE_STEPS if walked is None else walked)
        out.append(export_graph(module, walk_feeds, decide_outputs(TREE_STEPS, walked), dims, file))
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
            req = T.request_feeds(
                seen, None if elam < 0 else elam, rt.n_elams, APPS.index(app), text
            )
            session = rt.tree_session(p.tree_levels)
            out = session.run(["logits0"], {"h_graph": p.h_graph, **req, **p.tables})
            idx, step = p.plan.inputs(S.Prefix.empty(1))
            ctx = S.context(
                np.asarray(seen, dtype=float)[None, :],
                None if elam < 0 else np.array([elam]),
                rt.n_elams,
                S.Prefix.empty(1),
                TREE_STEPS,
                np.array([APPS.index(app)]),
                text[None, :],
            )
            ref = rt._run(p, idx, step, ctx)[0]
            valid = ref > -1e8
            worst = max(worst, float(np.max(np.abs(np.where(valid, ref - out[0], 0.0)))))
        per_size[f"N={n}"] = {"tabulated_steps": p.tree_levels, "same_chain": agree}
        same += agree
        total += requests
    return {
        "same_chain": same,
        "requests": total,
        "per_size": per_size,
        "max_abs_logit_error": worst,
    }


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
            entry.update(
                inputs=decide_inputs(TREE_STEPS, levels), outputs=decide_outputs(TREE_STEPS, levels)
            )
        card["tree"][key] = entry
    card_path.write_text(json.dumps(card, indent=2, default=str))
    record_tree_parity(onnx_path)
    return read_card(onnx_path)["tree"]


def record_tree_parity(onnx_path: Path) -> dict[str, Any]:
    """Run :func:`tree_parity_check` on an exported policy and record the result in its
    card (``tree.parity``), with the run-time settings it was computed under.

    The graphs are not touched, so the sha256 values the xApp verifies stay valid; only
    the card changes. Needs no checkpoint: re-run it when the run-time candidate or
    lookahead shortlists change (:data:`~xapp_composer.steps.K_CAND`,
    :data:`~xapp_composer.steps.K_LOOK`, :data:`~xapp_composer.tree.DEFAULT_MAX_PAIRS`).

    Raises:
        ValueError: the card names no tabulated graphs, or some request got another
            chain than step by step (the record is written either way).
    """
    card_path = card_path_for(onnx_path)
    card = read_card(onnx_path)
    parity = {**tree_parity_check(onnx_path), **parity_settings()}
    card["tree"]["parity"] = parity
    card_path.write_text(json.dumps(card, indent=2, default=str))
    if parity["same_chain"] != parity["requests"]:
        raise ValueError(
            f"{onnx_path.name}: the tabulated decision chose another chain than the "
            f"step-by-step graphs in {parity['requests'] - parity['same_chain']} of "
            f"{parity['requests']} requests"
        )
    return parity


def parity_settings() -> dict[str, int]:
    """The run-time settings a tabulated parity record depends on: the candidate and
    lookahead shortlists and how many pairs a state may tabulate."""
    return {"k_cand": S.K_CAND, "k_look": S.K_LOOK, "max_pairs": T.DEFAULT_MAX_PAIRS}
