"""Run the exported ONNX policy: one E-LAM choice, then the chain.

The chain comes from one call of the whole-decision graph when the policy's card has the
tabulated graphs and the state's tables fit (:mod:`xapp_composer.tree`), from a prefix
graph and then the step graph for larger states, else from one step-graph call per agent;
all three give the same chains (checked at export and in the tests).

Multi-start decoding (``starts`` m > 1; POMO, Kwon et al. 2020; "sample and pick best",
Kool et al. 2019): besides the greedy chain, the policy completes greedily each of its
next m - 1 first picks by its own step-1 logits (one step-graph call per later step for
all of them), and the chain with the highest Q*_s under the vector the policy decides on
(the request's predicted vector; the even one for an ``even`` policy) is served (MODEL.md,
`weighted`: the objective the exact optimum and beam search use);
an infeasible chain scores -1, so a feasible one always wins, and ties keep the greedy
chain. With m = 1 the decision is the greedy one.

onnxruntime-gpu lists CUDA among its available providers even on a machine without
CUDA, and then runs on the CPU. The session is therefore created with CUDA first when it
is listed, and the providers the session really got (``session.get_providers()``) are
logged and exposed as :attr:`PolicyRuntime.provider`.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from agentnet.intents import APPS
from agentnet.network import Network
from servicekit.integrity import IntegrityError, verify_artefact
from xapp_composer import features as F
from xapp_composer import steps as S
from xapp_composer import tree as T
from xapp_composer.artefacts import (
    ENCODER_OUTPUTS,
    HEAD_INPUTS,
    OUTPUT_NAMES,
    PLAN_OUTPUTS,
    PREFIX_LEVELS,
    TREE_STEPS,
    decide_path,
    elam_path,
    encoder_path,
    plan_path,
    prefix_path,
    read_card,
    sha256_file,
)
from xapp_composer.beam import weighted_from_sums
from xapp_composer.sparse_gcn import head_on_rows, sparse_encoder

log = structlog.get_logger(__name__)
EVEN = (0.25, 0.25, 0.25, 0.25)
PARTIAL_MAX_SHARE = 0.6
"""Largest share of the agents an incremental re-encoding may touch (its subgraph); above
it the whole graph is encoded, which then costs about the same."""


class PolicyIntegrityError(RuntimeError):
    """The policy does not match its model card or its signature."""


@dataclass(frozen=True)
class Prepared:
    """Per network-state inputs of the policy (computed once per state, reused by every
    request decided on that state): the feature arrays and the GCN encoder's output."""

    state: F.BatchState
    plan: S.StatePlan
    node_h: np.ndarray
    h_graph: np.ndarray
    n_agents: int
    tables: dict[str, np.ndarray] | None = None
    """Tabulated-decision feeds of this state (:mod:`xapp_composer.tree`), or None when
    the state is decided step by step."""
    cols: tuple[np.ndarray, ...] = ()
    """Candidate ids of each tabulated step, in the order of the tables' columns."""
    tree_levels: int = 0
    """Steps the tables cover: all (one call of the whole-decision graph), the first one
    or two (a prefix graph, then the step graph), or 0 (step by step)."""
    bindings: queue.SimpleQueue = field(
        default_factory=queue.SimpleQueue, compare=False, repr=False
    )
    """onnxruntime I/O bindings with this state's tables bound, reused by the requests
    (one per concurrent decider): binding 20 tables at every call would cost about a
    third of a decision."""


@dataclass(frozen=True)
class Decision:
    """A composed chain."""

    chain: tuple[int, ...]
    elam: str  # "" when no E-LAM was used (DRL (Even) policies)
    elam_index: int
    intent: tuple[float, float, float, float]


_PROVIDERS: dict[bool, list[str]] = {}
"""The execution providers chosen by the first session of the process, per ``prefer_gpu``:
CUDA is probed once (at start), and every later session (the other graphs, a hot-reloaded
policy) uses what that probe found."""

ORT_DEFAULT_LOG_SEVERITY = 2
"""onnxruntime's default logger severity (warning), restored after the CUDA probe."""


def make_session(
    path: Path, *, prefer_gpu: bool = True, threads: int = 1, model: bytes | None = None
):
    """An onnxruntime session on CUDA when it really is available, else CPU.

    The first call of the process chooses (and logs) the providers; later calls reuse
    the choice.

    Args:
        model: the serialised graph to run instead of the file (``path`` names it in logs).
    """
    import onnxruntime as ort  # deferred: importers that run no graph (the CLI) skip it

    available = ort.get_available_providers()
    chosen = _PROVIDERS.get(prefer_gpu)
    probing = chosen is None
    if chosen is None:
        chosen = ["CPUExecutionProvider"]
        if prefer_gpu and "CUDAExecutionProvider" in available:
            chosen.insert(0, "CUDAExecutionProvider")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    quiet = probing and len(chosen) > 1
    if quiet:
        # Trying CUDA on a machine without its libraries makes onnxruntime print
        # library-load errors (its default logger) and fall back to the CPU; keep that one
        # attempt quiet and log what the session really got instead.
        opts.log_severity_level = 4
        ort.set_default_logger_severity(4)
    try:
        sess = ort.InferenceSession(model or str(path), sess_options=opts, providers=chosen)
    except Exception as exc:  # a broken CUDA install: fall back rather than die
        if chosen[0] == "CPUExecutionProvider":
            raise
        log.warning("cuda_session_failed", error=str(exc))
        chosen = ["CPUExecutionProvider"]
        sess = ort.InferenceSession(model or str(path), sess_options=opts, providers=chosen)
    finally:
        if quiet:
            ort.set_default_logger_severity(ORT_DEFAULT_LOG_SEVERITY)
    got = sess.get_providers()
    if probing:
        _PROVIDERS[prefer_gpu] = [p for p in chosen if p in got] or ["CPUExecutionProvider"]
        log.info(
            "onnx_providers_chosen",
            providers=_PROVIDERS[prefer_gpu],
            requested=chosen,
            available=available,
        )
    log.info("onnx_session", path=str(path), providers=got)
    return sess


class PolicyRuntime:
    """The exported policy, ready to decide.

    Args:
        path: the ``.onnx`` file; its ``.card.json`` must sit beside it.
        verify: check the file's sha256 against the card before use.
        prefer_gpu: use CUDA when onnxruntime really has it.
        threads: intra-op threads of the session.
        tree: use the card's tabulated-decision graphs (``tree`` in the card) when the
            policy has them: one call for a whole chain when every step's table fits
            ``tree_max_rows`` and ``tree_max_pairs``, else one call of a prefix graph for
            the first two (or one) steps that fit and the step graph for the rest
            (:mod:`xapp_composer.tree`); else step by step. All give the same chains.
        tree_max_rows: the largest table (prefixes x candidates of a step) to build.
        tree_max_pairs: the largest lookahead table (prefixes x candidates x next agents)
            of a step to build.
        public_key: the Ed25519 key the policy must be signed with (its card's hashes
            guard against corruption, a signature against whoever can write the
            directory); None: the card only.
        starts: first picks :meth:`compose` completes and compares by the predicted
            Q*_s (multi-start decoding, module docstring); 1: the greedy chain only.
        starts_min_agents: :meth:`compose` uses ``starts`` on networks of at least this
            many agents only; smaller ones get the greedy chain.
    """

    def __init__(
        self,
        path: Path,
        *,
        verify: bool = True,
        prefer_gpu: bool = True,
        threads: int = 1,
        tree: bool = True,
        tree_max_rows: int = T.DEFAULT_MAX_ROWS,
        tree_max_pairs: int = T.DEFAULT_MAX_PAIRS,
        public_key: Any = None,
        starts: int = 1,
        starts_min_agents: int = 1,
    ):
        if starts < 1:
            raise ValueError(f"starts must be at least 1, got {starts}")
        if starts_min_agents < 1:
            raise ValueError(f"starts_min_agents must be at least 1, got {starts_min_agents}")
        self.starts = int(starts)
        self.starts_min_agents = int(starts_min_agents)
        self.path = Path(path)
        self.signed_by = ""
        if public_key is not None:
            try:
                self.signed_by = verify_artefact(self.path, public_key)
            except IntegrityError as exc:
                raise PolicyIntegrityError(f"signature: {exc}") from None
        try:
            self.card = read_card(self.path)
        except FileNotFoundError as exc:
            raise PolicyIntegrityError(str(exc)) from None
        self.encoder_path = encoder_path(self.path)
        self.elam_path = elam_path(self.path)
        tree_card = self.card.get("tree") if tree else None
        files = [
            (self.path, self.card.get("sha256")),
            (self.encoder_path, self.card.get("encoder", {}).get("sha256")),
            (self.elam_path, self.card.get("elam", {}).get("sha256")),
        ]
        if tree_card:
            files += [
                (plan_path(self.path), tree_card.get("plan", {}).get("sha256")),
                (decide_path(self.path), tree_card.get("decide", {}).get("sha256")),
                *(
                    (prefix_path(self.path, k), tree_card.get(f"prefix{k}", {}).get("sha256"))
                    for k in PREFIX_LEVELS
                ),
            ]
        if verify:
            for file, want in files:
                if not file.exists():
                    raise PolicyIntegrityError(f"{file} is missing")
                digest = sha256_file(file)
                if digest != want:
                    raise PolicyIntegrityError(
                        f"{file.name}: sha256 {digest[:12]}... does not match its card "
                        f"({str(want)[:12]}...)"
                    )
        # The step graph on the candidates' rows only (sparse_gcn.head_on_rows).
        self.session = make_session(
            self.path, prefer_gpu=prefer_gpu, threads=threads, model=head_on_rows(self.path)
        )
        self.encoder = make_session(self.encoder_path, prefer_gpu=prefer_gpu, threads=threads)
        self.edge_encoder = make_session(
            self.encoder_path,
            prefer_gpu=prefer_gpu,
            threads=threads,
            model=sparse_encoder(self.encoder_path),
        )
        self.elam_session = make_session(self.elam_path, prefer_gpu=prefer_gpu, threads=threads)
        self.plan_session = self.decide_session = None
        self.prefix_sessions: dict[int, object] = {}
        self.tree_max_rows = tree_max_rows
        self.tree_max_pairs = tree_max_pairs
        if tree_card and int(tree_card.get("steps", 0)) == TREE_STEPS:

            def session(file):
                return make_session(file, prefer_gpu=prefer_gpu, threads=threads)

            self.plan_session = session(plan_path(self.path))
            self.decide_session = session(decide_path(self.path))
            self.prefix_sessions = {k: session(prefix_path(self.path, k)) for k in PREFIX_LEVELS}
        self.provider = self.session.get_providers()[0]
        self.elam_ids: list[str] = list(self.card.get("elam_ids", []))
        self.fees: list[float] = list(self.card.get("fees", []))
        self.mode: str = self.card.get("mode", "predicted")
        self.n_elams = int(self.card["policy"]["n_elams"])
        self.gcn_layers = int(self.card["policy"].get("gcn_layers", 0))
        """GCN layers of the encoder (0 if the card does not say: no partial encoding)."""
        self.version = f"{self.card.get('name', self.path.stem)}@{self.card['sha256'][:12]}"

    # ---- per state ----------------------------------------------------------------------
    def prepare(
        self,
        net: Network,
        chain_types: Sequence[int] | None = None,
        previous: Prepared | None = None,
    ) -> Prepared:
        """Policy inputs of a network state, with the encoder run once on its edge list
        (no (N, N) array: :func:`xapp_composer.features.serving_state`).

        Args:
            previous: the prepared state this one follows (same policy): what did not
                change (route rows, lookahead BER, node embeddings) is reused.
        """
        old = previous.state if previous is not None else None
        state = F.serving_state(net, chain_types, S.K_CAND, old)
        node_h, h_graph = self.encode(state, previous)
        plan = S.StatePlan(state)
        tables, cols, levels = None, (), []
        if self.plan_session is not None and len(plan.steps) == TREE_STEPS:
            for count in (TREE_STEPS, *sorted(PREFIX_LEVELS, reverse=True)):
                levels = T.build_levels(
                    plan, self.n_elams, self.tree_max_rows, count, self.tree_max_pairs
                )
                if levels:
                    break
            if levels:
                session = self.plan_session
                tables = T.plan_tables(
                    lambda feeds: session.run(PLAN_OUTPUTS, feeds), levels, node_h[0]
                )
                cols = tuple(lv.cols for lv in levels)
        return Prepared(state, plan, node_h, h_graph, net.n_agents, tables, cols, len(levels))

    def encode(self, state: F.BatchState, previous: Prepared | None = None):
        """(node_h, h_graph) of a served state.

        After ``previous`` on the same links, only the agents whose embedding can have
        changed are encoded again: with L GCN layers (eq. 36) an agent's embedding
        depends on the features within L hops, so the agents within L hops of those whose
        features changed are re-encoded, on the subgraph within 2L hops (whose edges keep
        the whole graph's normalisation weights: every neighbour and weight of those
        agents, and of their neighbours, is then the whole graph's). h_graph is the mean
        of the embeddings (eq. 37). The whole graph is encoded when that subgraph holds
        more than :data:`PARTIAL_MAX_SHARE` of the agents.
        """
        e = state.gcn_edges
        partial = None
        if previous is not None and previous.state.gcn_edges is e and self.gcn_layers > 0:
            changed = np.any(previous.state.node_x[0] != state.node_x[0], axis=1)
            if not changed.any():
                return previous.node_h, previous.h_graph
            partial = self._encode_around(state, previous, changed)
        if partial is not None:
            return partial
        feeds = {"x": state.node_x, "edge_src": e.src, "edge_dst": e.dst, "edge_w": e.weight}
        node_h, h_graph = self.edge_encoder.run(ENCODER_OUTPUTS, feeds)
        return node_h, h_graph

    def _encode_around(self, state: F.BatchState, previous: Prepared, changed: np.ndarray):
        """(node_h, h_graph) with the embeddings around ``changed`` agents recomputed, or
        None when the subgraph to encode is too large to pay."""
        e = state.gcn_edges
        src, dst = e.src, e.dst[:, 0]
        reach = [changed]
        for _ in range(2 * self.gcn_layers):
            nxt = reach[-1].copy()
            nxt[dst[reach[-1][src]]] = True  # the operator is symmetric: one direction
            reach.append(nxt)
        inner, outer = reach[self.gcn_layers], reach[-1]
        n = len(changed)
        if outer.sum() > PARTIAL_MAX_SHARE * n:
            return None
        sub = np.flatnonzero(outer)
        index = np.full(n, -1, dtype=np.int64)
        index[sub] = np.arange(len(sub))
        keep = outer[src] & outer[dst]
        feeds = {
            "x": state.node_x[:, sub],
            "edge_src": index[src[keep]],
            "edge_dst": index[dst[keep]][:, None],
            "edge_w": e.weight[keep],
        }
        sub_h, _ = self.edge_encoder.run(ENCODER_OUTPUTS, feeds)
        node_h = previous.node_h.copy()
        node_h[0, inner] = sub_h[0, index[inner]]
        return node_h, node_h.mean(axis=1)

    # ---- per request --------------------------------------------------------------------
    def _run(self, p: Prepared, idx: np.ndarray, step: S.StepInputs, ctx: np.ndarray):
        """The step graph on R chains at the same step (R = rows of ``ctx``), all with the
        candidates ``idx``."""
        rows = len(ctx)
        node_h, h_graph = p.node_h[:, idx], p.h_graph
        if rows > 1:
            node_h, h_graph = np.repeat(node_h, rows, axis=0), np.repeat(h_graph, rows, axis=0)
        feeds = {
            "node_h": node_h,
            "h_graph": h_graph,
            "cand_idx": np.tile(np.arange(len(idx), dtype=np.int64), (rows, 1)),
            "raw": step.raw,
            "mask": step.mask,
            "chain": step.chain,
            "look_raw": step.look_raw,
            "look_keep": step.look_keep,
            "look_mask": step.look_mask,
            "ctx": ctx,
        }
        return self.session.run(OUTPUT_NAMES, feeds)

    def choose_elam(
        self,
        p: Prepared,
        app: str | int,
        prompt: str,
        text: np.ndarray | None = None,
        served: set[str] | None = None,
    ) -> int:
        """E-LAM index the policy picks before translation (network, app, text only).

        Args:
            served: E-LAM ids the rApp serves now (its ListModels); the policy picks
                among those only. None: all of the policy's E-LAMs.

        Returns:
            The index into :attr:`elam_ids`, or -1 when no E-LAM is used (an ``even``
            policy, or none of its E-LAMs is served).
        """
        if self.mode == "even" or self.n_elams == 0:
            return -1
        allowed = np.array([served is None or e in served for e in self.elam_ids[: self.n_elams]])
        if not allowed.any():
            return -1
        text = F.text_features(prompt)[None, :] if text is None else text
        ctx = T.elam_context(self.n_elams, len(p.state.chain_types), _app_index(app), text)
        (elam_logits,) = self.elam_session.run(["elam_logits"], {"h_graph": p.h_graph, "ctx": ctx})
        return int(np.argmax(np.where(allowed, elam_logits[0], -np.inf)))

    def tree_session(self, levels: int):
        """The graph that walks ``levels`` tabulated steps (all: the whole decision)."""
        return self.decide_session if levels == TREE_STEPS else self.prefix_sessions[levels]

    def compose(
        self,
        p: Prepared,
        intent: Sequence[float],
        elam_index: int,
        app: str | int,
        prompt: str,
        text: np.ndarray | None = None,
        *,
        starts: int | None = None,
    ) -> tuple[int, ...]:
        """Extend the chain step by step (greedy), masking invalid agents (eq. 38); with
        ``starts`` m > 1, the best of m greedy rollouts from the policy's m most likely
        first picks by Q*_s under ``intent`` (module docstring).

        Args:
            starts: m (default :attr:`starts` on networks of at least
                :attr:`starts_min_agents` agents, else 1).

        Raises:
            ValueError: some step has no usable agent, or ``starts`` is below 1.
        """
        m = starts
        if m is None:
            m = self.starts if p.n_agents >= self.starts_min_agents else 1
        chains = self.rollouts(p, intent, elam_index, app, prompt, text, starts=m)
        if len(chains) == 1:
            return chains[0]
        seen = self._inputs(intent, elam_index, prompt, text)[0][0]
        return chains[best_chain(p.state, chains, seen)]

    def rollouts(
        self,
        p: Prepared,
        intent: Sequence[float],
        elam_index: int,
        app: str | int,
        prompt: str,
        text: np.ndarray | None = None,
        *,
        starts: int,
    ) -> list[tuple[int, ...]]:
        """The chains multi-start decoding chooses among: the greedy chain first, then
        the greedy completions of the policy's next most likely first picks (by its
        step-1 logits, at most ``starts`` chains in all; fewer when the first step has
        fewer usable agents).

        Raises:
            ValueError: some step has no usable agent, or ``starts`` is below 1.
        """
        if starts < 1:
            raise ValueError(f"starts must be at least 1, got {starts}")
        chain, first = self._greedy(p, intent, elam_index, app, prompt, text, starts > 1)
        if first is None:
            return [chain]
        cols, logits = first
        order = np.argsort(-logits, kind="stable")  # the greedy pick (argmax) first
        order = order[np.isfinite(logits[order])]
        others = [int(a) for a in cols[order] if a != chain[0]][: starts - 1]
        if not others:
            return [chain]
        return [chain, *self._rollouts(p, np.array(others), intent, elam_index, app, prompt, text)]

    def _inputs(self, intent, elam_index: int, prompt: str, text: np.ndarray | None):
        """(vector the policy sees, E-LAM index array or None, text features) of a request."""
        seen = np.asarray(EVEN if self.mode == "even" else intent, dtype=float)[None, :]
        elam = None if self.mode == "even" or elam_index < 0 else np.array([elam_index])
        text = F.text_features(prompt)[None, :] if text is None else text
        return seen, elam, text

    def _rollouts(
        self,
        p: Prepared,
        firsts: np.ndarray,
        intent: Sequence[float],
        elam_index: int,
        app: str | int,
        prompt: str,
        text: np.ndarray | None,
    ) -> list[tuple[int, ...]]:
        """Greedy completions of the chains that start with ``firsts`` (R,), one
        step-graph call per later step for all of them."""
        s = p.state
        n = len(s.chain_types)
        rows = len(firsts)
        seen, elam, text = self._inputs(intent, elam_index, prompt, text)
        seen, text = np.repeat(seen, rows, axis=0), np.repeat(text, rows, axis=0)
        elam = None if elam is None else np.repeat(elam, rows)
        app_i = np.full(rows, _app_index(app))
        prefix = S.Prefix.empty(rows)
        prefix.append(s, firsts)
        chains = [firsts]
        for k in range(1, n):
            idx = p.plan.steps[k].cols
            step = p.plan.inputs_rows(k, prefix)
            ctx = S.context(seen, elam, self.n_elams, prefix, n, app_i, text)
            logits, _, _ = self._run(p, idx, step, ctx)
            agents = idx[np.argmax(logits, axis=1)]
            chains.append(agents)
            prefix.append(s, agents)
        return [tuple(int(a) for a in c) for c in np.stack(chains, axis=1)]

    def _greedy(
        self,
        p: Prepared,
        intent: Sequence[float],
        elam_index: int,
        app: str | int,
        prompt: str,
        text: np.ndarray | None,
        first_logits: bool,
    ) -> tuple[tuple[int, ...], tuple[np.ndarray, np.ndarray] | None]:
        """The greedy chain and, with ``first_logits``, (candidates, logits) of its first
        step (-inf where a candidate is masked)."""
        s = p.state
        n = len(s.chain_types)
        seen, elam, text = self._inputs(intent, elam_index, prompt, text)
        first = None
        chain: list[int] = []
        if p.tables is not None and self.decide_session is not None:
            # Every step has candidates (else the state has no tables).
            feeds = T.request_feeds(
                seen, None if elam is None else elam_index, self.n_elams, _app_index(app), text
            )
            session = self.tree_session(p.tree_levels)
            try:
                binding = p.bindings.get_nowait()
            except queue.Empty:
                binding = session.io_binding()
                binding.bind_cpu_input("h_graph", p.h_graph)
                for name, table in p.tables.items():
                    binding.bind_cpu_input(name, table)
                binding.bind_output("picks")
                binding.bind_output("logits0")
            try:
                for name, value in feeds.items():
                    binding.bind_cpu_input(name, value)
                session.run_with_iobinding(binding)
                picks, logits0 = binding.copy_outputs_to_cpu()
            finally:
                p.bindings.put(binding)
            chain = [int(c[i]) for c, i in zip(p.cols, picks.tolist(), strict=True)]
            if first_logits:
                first = (p.cols[0], np.where(p.tables["mask0"][0], logits0[0], -np.inf))
            if p.tree_levels == n:
                return tuple(chain), first
        else:
            for k in range(n):
                if not s.usable[0, k].any():
                    raise ValueError(f"no usable agent of type {s.chain_types[k]} for step {k + 1}")
        # The step graph finishes what the tables did not (large states, XAPP_TABULATE off).
        prefix = S.Prefix.empty(1)
        for agent in chain:
            prefix.append(s, np.array([agent]))
        app_i = np.array([_app_index(app)])
        for k in range(len(chain), n):
            idx, step = p.plan.inputs(prefix)
            if len(idx) == 0:
                raise ValueError(f"no usable agent of type {s.chain_types[k]} for step {k + 1}")
            ctx = S.context(seen, elam, self.n_elams, prefix, n, app_i, text)
            logits, _, _ = self._run(p, idx, step, ctx)
            agent = int(idx[int(np.argmax(logits[0]))])
            if k == 0 and first_logits:
                first = (idx, np.where(step.mask[0], logits[0], -np.inf))
            chain.append(agent)
            prefix.append(s, np.array([agent]))
        return tuple(chain), first

    def decide(
        self,
        p: Prepared,
        app: str | int,
        prompt: str,
        translate: Callable[[str], Sequence[float]] | None = None,
        served: set[str] | None = None,
        *,
        starts: int | None = None,
    ) -> Decision:
        """The whole decision: pick the E-LAM, translate with it, compose the chain.

        Args:
            translate: maps an E-LAM id to the predicted vector (the rApp call); not
                called by an ``even`` policy.
            starts: multi-start decoding's m (:meth:`compose`; default :attr:`starts`).
        """
        text = F.text_features(prompt)[None, :]
        k = self.choose_elam(p, app, prompt, text, served)
        if k < 0 or translate is None:
            intent = EVEN
            elam = ""
        else:
            elam = self.elam_ids[k] if k < len(self.elam_ids) else str(k)
            intent = tuple(float(v) for v in translate(elam))
        chain = self.compose(p, intent, k, app, prompt, text, starts=starts)
        return Decision(chain, elam, k, intent)  # type: ignore[arg-type]


def best_chain(s: F.BatchState, chains: Sequence[Sequence[int]], intent: Sequence[float]) -> int:
    """Index of the chain with the highest Q*_s under ``intent`` (MODEL.md, `weighted`;
    -1 for a chain that breaks eq. 18b or 18c, so a feasible chain beats every infeasible
    one), the first on ties; ``s`` is the served state the chains were composed on (its
    per-agent terms and route E[BER])."""
    rows = np.asarray(chains, dtype=np.int64)
    done = S.Prefix.empty(len(rows))
    for k in range(rows.shape[1]):
        done.append(s, rows[:, k])
    q = weighted_from_sums(
        np.asarray(intent, dtype=float),
        done.logp,
        done.keep,
        done.lat,
        done.lnc,
        done.pover,
        rows.shape[1],
        s.cfg,
    )
    return int(np.argmax(q))


def _app_index(app: str | int) -> int:
    if isinstance(app, str):
        if app not in APPS:
            raise ValueError(f"unknown application {app!r}; expected one of {APPS}")
        return APPS.index(app)
    return int(app)


__all__ = [
    "HEAD_INPUTS",
    "Decision",
    "PolicyIntegrityError",
    "PolicyRuntime",
    "Prepared",
    "best_chain",
]
