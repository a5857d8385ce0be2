"""Run the exported ONNX policy: one E-LAM choice, then the chain.

The chain comes from one call of the whole-decision graph when the policy's card has the
tabulated graphs and the state's tables fit (:mod:`xapp_composer.tree`), from a prefix
graph and then the step graph for larger states, else from one step-graph call per agent;
all three give the same chains (checked at export and in the tests).

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
    ):
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
        feeds = {
            "node_h": p.node_h[:, idx],
            "h_graph": p.h_graph,
            "cand_idx": np.arange(len(idx), dtype=np.int64)[None, :],
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
    ) -> tuple[int, ...]:
        """Extend the chain step by step (greedy), masking invalid agents (eq. 38).

        Raises:
            ValueError: some step has no usable agent.
        """
        s = p.state
        n = len(s.chain_types)
        seen = np.asarray(EVEN if self.mode == "even" else intent, dtype=float)[None, :]
        elam = None if self.mode == "even" or elam_index < 0 else np.array([elam_index])
        text = F.text_features(prompt)[None, :] if text is None else text
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
            try:
                for name, value in feeds.items():
                    binding.bind_cpu_input(name, value)
                session.run_with_iobinding(binding)
                picks = binding.copy_outputs_to_cpu()[0]
            finally:
                p.bindings.put(binding)
            chain = [int(c[i]) for c, i in zip(p.cols, picks.tolist(), strict=True)]
            if p.tree_levels == n:
                return tuple(chain)
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
            chain.append(agent)
            prefix.append(s, np.array([agent]))
        return tuple(chain)

    def decide(
        self,
        p: Prepared,
        app: str | int,
        prompt: str,
        translate: Callable[[str], Sequence[float]] | None = None,
        served: set[str] | None = None,
    ) -> Decision:
        """The whole decision: pick the E-LAM, translate with it, compose the chain.

        Args:
            translate: maps an E-LAM id to the predicted vector (the rApp call); not
                called by an ``even`` policy.
        """
        text = F.text_features(prompt)[None, :]
        k = self.choose_elam(p, app, prompt, text, served)
        if k < 0 or translate is None:
            intent = EVEN
            elam = ""
        else:
            elam = self.elam_ids[k] if k < len(self.elam_ids) else str(k)
            intent = tuple(float(v) for v in translate(elam))
        chain = self.compose(p, intent, k, app, prompt, text)
        return Decision(chain, elam, k, intent)  # type: ignore[arg-type]


def _app_index(app: str | int) -> int:
    if isinstance(app, str):
        if app not in APPS:
            raise ValueError(f"unknown application {app!r}; expected one of {APPS}")
        return APPS.index(app)
    return int(app)


__all__ = ["HEAD_INPUTS", "Decision", "PolicyIntegrityError", "PolicyRuntime", "Prepared"]
