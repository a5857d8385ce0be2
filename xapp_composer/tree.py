"""Per-state tables for the whole-decision graph (the xApp's fast path).

A greedy decision walks the chain's steps; what a step's candidate features are depends
on the intent only through a few dot products (:meth:`policy.CandidateFeatures.combine`).
Everything else depends on the network state and the prefix chosen so far, and a state
has few prefixes the walk can reach: one at step 0, M_0 at step 1, M_0 M_1 at step 2
(1 + 20 + 400 on the 81-agent network). So, once per network state, the plan graph
(``<name>.plan.onnx``) computes the intent-independent features of every reachable
prefix; per request, the decide graph (``<name>.decide.onnx``) picks all agents in one
call, adding the request's part to the rows the walk reaches. The result is the step-by-
step decision of :meth:`runtime.PolicyRuntime.compose` (the same operations on the same
numbers; tested), at about a fifth of its cost.

States whose tables would be too large (more than ``max_rows`` candidate rows or
``max_pairs`` lookahead pairs at a step) tabulate only their first two steps (about 300
agents) or first step (600 agents and more), and the step graph decides the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from agentnet.intents import APPS
from xapp_composer import features as F
from xapp_composer import steps as S

DEFAULT_MAX_ROWS = 20_000
"""Largest R_k x M_k (prefixes x candidates) a step's table may have."""
DEFAULT_MAX_PAIRS = 450_000
"""Largest R_k x M_k x M2_k (lookahead pairs) a step's table may have: 300 agents
tabulate two steps (at most 75 x 75 x 75 = 422 k pairs at the second), 600 agents and
more only the first (their second would hold 128 x 128 x 128 = 2.1 M pairs)."""


@dataclass(frozen=True)
class Level:
    """One step of the walk: its candidates and the inputs of every reachable prefix."""

    cols: np.ndarray  # (M,) candidate agent ids
    inputs: tuple[np.ndarray, ...]  # plan graph feeds (raw, chain, look_raw, look_keep, look_mask)
    rowctx: np.ndarray  # (R, 6) float32: step / n, last-step flag, prefix summary
    mask: np.ndarray  # (R, M) bool
    lookahead: bool  # the step has a next step (its table holds the lookahead pairs)


def _prefixes(plan: S.StatePlan, k: int) -> S.Prefix:
    """Every prefix (a_0, ..., a_{k-1}) over the steps' candidates, in row order."""
    sizes = [len(plan.steps[j].cols) for j in range(k)]
    rows = int(np.prod(sizes)) if sizes else 1
    prefix = S.Prefix.empty(rows)
    if k == 0:
        return prefix
    grid = np.indices(sizes).reshape(k, -1)
    for j in range(k):
        prefix.append(plan.s, plan.steps[j].cols[grid[j]])
    return prefix


def table_rows(plan: S.StatePlan) -> list[int]:
    """R_k x M_k of each step (without building anything)."""
    sizes = [len(st.cols) for st in plan.steps]
    return [int(np.prod(sizes[:k])) * sizes[k] for k in range(len(sizes))]


def table_pairs(plan: S.StatePlan) -> list[int]:
    """R_k x M_k x M2_k (the lookahead pairs of a step's table) of each step."""
    looks = [st.base.look_raw.shape[1] for st in plan.steps]
    return [r * m2 for r, m2 in zip(table_rows(plan), looks, strict=True)]


def build_levels(
    plan: S.StatePlan,
    n_elams: int,
    max_rows: int = DEFAULT_MAX_ROWS,
    levels: int | None = None,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> list[Level]:
    """The tables' inputs of the first ``levels`` steps of a state (default: all), or []
    when one of them would exceed ``max_rows`` candidate rows or ``max_pairs`` lookahead
    pairs, or some step has no candidate (the step-by-step path then decides, and
    explains)."""
    rows = table_rows(plan)
    count = len(rows) if levels is None else levels
    if not rows or min(rows) == 0 or count > len(rows):
        return []
    if max(rows[:count]) > max_rows or max(table_pairs(plan)[:count]) > max_pairs:
        return []
    n = len(plan.steps)
    k0 = 4 + n_elams + 1  # ctx columns of step / n, last flag, prefix summary
    out = []
    for k in range(count):
        prefix = _prefixes(plan, k)  # at step k: k agents appended
        r = len(prefix.step)
        step = plan.inputs_rows(k, prefix)
        ctx = S.context(
            None, None, n_elams, prefix, n, np.zeros(r, dtype=np.int64), np.zeros((r, F.TEXT_DIM))
        )
        rowctx = np.ascontiguousarray(ctx[:, k0 : k0 + F.STEP_DIM - 1 + F.PREFIX_DIM])
        inputs = (step.raw, step.chain, step.look_raw, step.look_keep, step.look_mask)
        out.append(Level(plan.steps[k].cols, inputs, rowctx, step.mask, k < n - 1))
    return out


def plan_tables(
    run_plan: Callable[[dict[str, np.ndarray]], Sequence[np.ndarray]],
    levels: Sequence[Level],
    node_h: np.ndarray,
) -> dict[str, np.ndarray]:
    """Decide-graph feeds of a state: ``run_plan`` maps plan feeds to
    (head, tail, u2, feas2); ``node_h`` (N, H) is the encoder's output."""
    names = ("raw", "chain", "look_raw", "look_keep", "look_mask")
    out: dict[str, np.ndarray] = {}
    for k, lv in enumerate(levels):
        head, tail, u2, feas2 = run_plan(dict(zip(names, lv.inputs, strict=True)))
        out[f"hc{k}"] = np.ascontiguousarray(node_h[lv.cols])
        out[f"head{k}"] = head
        out[f"tail{k}"] = tail
        out[f"rowctx{k}"] = lv.rowctx
        out[f"mask{k}"] = lv.mask
        if lv.lookahead:
            out[f"u2{k}"] = u2
            out[f"feas2{k}"] = feas2
    return out


def request_feeds(
    intent: Sequence[float] | np.ndarray,
    elam_index: int | None,
    n_elams: int,
    app: str | int,
    text: np.ndarray,
) -> dict[str, np.ndarray]:
    """The request's inputs of the decide graph: the same numbers as the context vector
    of :func:`steps.context`: ``intent``, ``elam`` (one-hot), ``no_elam`` (1 when no
    E-LAM was chosen: an ``even`` policy, or a fallback without one) and
    ``req`` (app one-hot, text), built directly (this runs for every request).

    Args:
        elam_index: the chosen E-LAM, or None (no E-LAM: an ``even`` policy).
    """
    app_i = APPS.index(app) if isinstance(app, str) else int(app)
    elam = np.zeros((1, n_elams), dtype=np.float32)
    if elam_index is not None:
        elam[0, elam_index] = 1.0
    req = np.zeros((1, len(APPS) + F.TEXT_DIM), dtype=np.float32)
    req[0, app_i] = 1.0
    req[0, len(APPS) :] = np.asarray(text, dtype=float).reshape(-1)
    return {
        "intent": np.asarray(intent, dtype=np.float64).astype(np.float32).reshape(1, 4),
        "elam": elam,
        "no_elam": np.array([[0.0 if elam_index is not None else 1.0]], dtype=np.float32),
        "req": req,
    }


def elam_context(n_elams: int, n_steps: int, app: str | int, text: np.ndarray) -> np.ndarray:
    """:func:`steps.context` of the E-LAM choice (no intent, no E-LAM, empty chain),
    built directly: (1, n_ctx) float32."""
    app_i = APPS.index(app) if isinstance(app, str) else int(app)
    ctx = np.zeros((1, F.n_ctx(n_elams)), dtype=np.float32)
    k0 = 4 + n_elams
    ctx[0, k0] = 1.0  # not chosen yet
    ctx[0, k0 + 2] = 1.0 if n_steps == 1 else 0.0  # the first step is the last
    a0 = k0 + F.STEP_DIM + F.PREFIX_DIM
    ctx[0, a0 + app_i] = 1.0
    ctx[0, a0 + len(APPS) :] = np.asarray(text, dtype=float).reshape(-1)
    return ctx


__all__ = [
    "DEFAULT_MAX_PAIRS",
    "DEFAULT_MAX_ROWS",
    "Level",
    "build_levels",
    "elam_context",
    "plan_tables",
    "request_feeds",
    "table_pairs",
    "table_rows",
]
