"""The xApp's decision core: pure and synchronous, no MQTT and no gRPC (STYLE.md 2).

:class:`ControlCore` turns a network state and a service request into exactly one
:class:`~lameta_proto.v1.network_pb2.ControlDecision`: a chain, or an explicit rejection
with a reason. The transport (``xapp_composer.loop``) feeds it payloads and a publish
function (:meth:`ControlCore.process`); the core records the decision in its
:class:`~xapp_composer.ledger.DecisionLedger` before publishing and forgets it if the
publish failed, so that a redelivered request is decided exactly once: again if its
decision never went out, never twice otherwise.

One decision (ARCHITECTURE.md "Data flow of one request"):

1. the latest state, rebuilt as a :class:`~agentnet.network.Network` and prepared once per
   state (:mod:`xapp_composer.live_state`: the GCN encoder runs there); no state yet, or
   a state older than ``max_state_age_s`` -> rejection;
2. the policy picks the E-LAM (``choose_elam``) and the translator (the rApp) maps the
   prompt to a preference vector with it; on any failure the vector is the fallback of
   :class:`~xapp_composer.translation.FallbackVectors` and the decision says ``fallback``;
3. on a large network with the proposer on (``proposer_k`` > 0, at least
   ``proposer_min_agents`` agents), the action space is reduced first (``propose``;
   Generative AI-in-the-loop, mechanism 3): the proposer's profile of the state
   (:meth:`~xapp_composer.live_state.LiveState.profile`, computed once per state and
   chain types) keeps the top k agents of each position for the predicted vector, a set
   that holds a feasible chain whenever the network has one, and the policy decides on
   that reduced graph (:func:`~xapp_composer.proposer.reduced_prepared`);
4. the policy composes the chain step by step (``compose``); the chain is checked against
   the constraints of eq. 18 on the xApp's view of the network; an infeasible chain is
   repaired when a feasible one exists (:meth:`ControlCore._repair`: with the proposer,
   the best feasible chain of the reduced graph by exhaustive search; else, or when it
   has none, the best feasible chain for the predicted vector by exhaustive search when
   the network has at most :data:`~xapp_composer.live_state.REPAIR_SEARCH_MAX` chains,
   else the greedy baseline's chain if it is feasible), else the request is rejected (no
   feasible chain).

Rejection reasons (``ControlDecision.rejection`` is ``"<code>: <detail>"``):

=====================  ======================================================
code                   cause
=====================  ======================================================
``no_state``           no valid network state received yet
``stale_state``        the latest state is older than the configured age
``no_feasible_chain``  some step has no usable agent, or no chain meets eq. 18
``malformed_request``  a request that cannot be decided (unknown app, bad types, ...)
``internal_error``     a bug in the xApp (logged with its traceback)
=====================  ======================================================
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import structlog

from agentnet import qoe
from agentnet.chain import chain_factors
from agentnet.intents import APPS, EVEN
from agentnet.network import Network
from agentnet.optimum import OptimumUnavailable, SearchSpace, greedy_chain
from lameta_proto.v1 import network_pb2
from servicekit import codec
from servicekit.statefeed import StateFeed, StateUpdate
from xapp_composer import features as F
from xapp_composer.ledger import Decided, DecisionLedger
from xapp_composer.live_state import LiveState, build_state
from xapp_composer.metrics import XappMetrics
from xapp_composer.proposer import reduced_prepared, topk_exhaustive
from xapp_composer.runtime import PolicyRuntime
from xapp_composer.translation import FallbackVectors, Translation, TranslationFailed, Translator

log = structlog.get_logger("xapp_composer.control")

NO_STATE = "no_state"
STALE_STATE = "stale_state"
NO_FEASIBLE_CHAIN = "no_feasible_chain"
MALFORMED_REQUEST = "malformed_request"
INTERNAL_ERROR = "internal_error"

MAX_CHAIN_STEPS = 16
"""Longest chain a request may ask for (the policy's context has room for any, but a
request for more steps than this is garbage rather than a service chain)."""


def chain_feasible(net: Network, chain: Sequence[int], chain_types: Sequence[int]) -> str:
    """Why a chain breaks a constraint on ``net`` (types, availability, eq. 18), or ""."""
    for k, (a, t) in enumerate(zip(chain, chain_types, strict=True)):
        if net.types[a] != t:
            return f"step {k + 1}: agent {a} has type {net.types[a]}, not {t}"
        if not net.available[a]:
            return f"step {k + 1}: agent {a} is unavailable"
    metrics = qoe.chain_metrics(chain_factors(net, chain), net.cfg)
    return "" if metrics["feasible"] else qoe.infeasibility_reason(metrics, net.cfg)


@dataclass(frozen=True)
class Result:
    """What the core made of one request payload.

    Attributes:
        status: ``"decided"`` (a chain), ``"rejected"`` (an explicit rejection),
            ``"duplicate"`` (already decided: its decision is published again, since the
            request coming back may mean the first one was lost with a broker that kept
            no state; the emulator settles a request once and refuses the second) or
            ``"dropped"`` (no request id: nothing can be published; logged and counted).
        request_id: the request's id ("" when dropped).
        decision: the message to publish (decided and rejected).
        reason: the rejection code, the fallback cause, or why it was dropped.
        timings: seconds per stage (``translate``, ``compose``; ``propose`` when the
            proposer reduced the request's action space).
    """

    status: str
    request_id: str = ""
    decision: network_pb2.ControlDecision | None = None
    reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)


class ControlCore:
    """Decides requests on the latest state with the current policy.

    Thread-safety: :meth:`install_state`, :meth:`install_runtime` and the readers may run
    on different threads (the state and the policy are swapped atomically); requests may
    be processed by several threads (:meth:`process`), one request id by one thread at a
    time, which is what keeps duplicate detection exact.

    Args:
        runtime: the policy.
        translator: the rApp (or anything with its interface).
        metrics: where counts and latencies go.
        max_state_age_s: requests on an older state are rejected.
        fallback_window: successful translations per app averaged for the fallback.
        dedup_capacity: decided request ids remembered.
        repair_infeasible: serve a feasible chain (:meth:`_repair`) when the policy's
            chain breaks a constraint.
        max_prompt_bytes: longer prompts are rejected as ``malformed_request`` before any
            rApp call (the rApp's own limit); None: no limit.
        proposer_k: agents the action-space proposer keeps per chain position (step 3 of
            the module docstring); 0: off.
        proposer_min_agents: the proposer reduces only networks of at least this many
            agents.
        wall_clock_ns: wall clock (ns since the epoch), for the state's age.
        clock: monotonic clock (s).
    """

    def __init__(
        self,
        runtime: PolicyRuntime,
        translator: Translator,
        *,
        metrics: XappMetrics | None = None,
        max_state_age_s: float = 5.0,
        fallback_window: int = 32,
        dedup_capacity: int = 100_000,
        repair_infeasible: bool = True,
        max_prompt_bytes: int | None = None,
        proposer_k: int = 0,
        proposer_min_agents: int = 2000,
        wall_clock_ns: Callable[[], int] = time.time_ns,
        clock: Callable[[], float] = time.monotonic,
    ):
        if proposer_k < 0:
            raise ValueError(f"proposer_k must be 0 (off) or more, got {proposer_k}")
        if proposer_min_agents < 1:
            raise ValueError(f"proposer_min_agents must be at least 1, got {proposer_min_agents}")
        self.runtime = runtime
        self.translator = translator
        self.metrics = metrics or XappMetrics()
        self.max_state_age_s = float(max_state_age_s)
        self.fallbacks = FallbackVectors(fallback_window)
        self.ledger = DecisionLedger(dedup_capacity)
        self.repair_infeasible = repair_infeasible
        self.max_prompt_bytes = max_prompt_bytes
        self.proposer_k = int(proposer_k)
        self.proposer_min_agents = int(proposer_min_agents)
        self.wall_clock_ns = wall_clock_ns
        self.clock = clock
        self.state: LiveState | None = None
        self.feed = StateFeed(self.metrics.state)
        """Whole states, or a large network's keyframe and deltas, as they arrive."""
        self._swap = threading.Lock()
        self.metrics.set_policy(runtime.version, runtime.provider)

    # ---- state and policy ---------------------------------------------------------------
    @property
    def keyframe(self) -> tuple[network_pb2.StateKeyframe, int] | None:
        """The latest complete keyframe of a large network's state, with its id."""
        return self.feed.keyframe

    def prepare_state(self, msg: StateUpdate) -> LiveState | None:
        """Rebuild and prepare a state for the current policy (no swap yet).

        Returns:
            The prepared state, or None for a state not newer than the serving one
            (counted ``out_of_order``).

        Raises:
            codec.DecodeError: the state describes no possible network.
        """
        current = self.state
        if (
            current is not None
            and msg.seq <= current.seq
            and msg.timestamp_ns <= (current.timestamp_ns)
        ):
            self.metrics.state("out_of_order")
            return None
        runtime = self.runtime
        types = list(current.prepared) if current is not None else []
        t0 = time.perf_counter()
        live = build_state(msg, runtime, types, received=self.clock(), previous=current)
        if self.repair_infeasible:  # off the request path: repairs then cost ~0.1 ms
            for chain_types in list(live.prepared):
                live.search_space(chain_types)
        if self.proposes(live):  # off the request path too (0.1 s at 100,000 agents)
            for chain_types in list(live.prepared):
                live.profile(chain_types)
        self.metrics.observe("state_prepare", time.perf_counter() - t0)
        return live

    def install_state(self, live: LiveState) -> None:
        """Serve requests on ``live`` from now on (prepared again first if the policy
        changed while it was being prepared)."""
        while True:
            with self._swap:
                runtime = self.runtime
                if live.runtime is runtime:
                    self.state = live
                    break
            live = live.for_runtime(runtime)
        self.metrics.state("accepted")
        self.metrics.state_seq.set(live.seq)

    def on_state(self, payload: bytes) -> LiveState | None:
        """Decode, prepare and install a state payload (the whole state path).

        Returns:
            The new state, or None when it was not installed (logged and counted).
        """
        try:
            # A delta whose keyframe has not arrived yet (topics are not ordered) is kept
            # by the feed until it does, replaced by any newer delta meanwhile.
            msg = self.feed.on_state(payload)
        except codec.DecodeError as exc:
            return self._rejected(exc, len(payload))
        if msg is None:
            return None
        return self._accept(msg, len(payload))

    def _accept(self, msg: StateUpdate, size: int) -> LiveState | None:
        try:
            live = self.prepare_state(msg)
        except codec.DecodeError as exc:
            return self._rejected(exc, size)
        if live is not None:
            self.install_state(live)
        return live

    def _rejected(self, exc: codec.DecodeError, size: int) -> None:
        self.metrics.state(f"malformed_{exc.code}")
        log.warning("state_rejected", code=exc.code, reason=exc.reason, bytes=size)

    def on_keyframe_chunk(self, payload: bytes) -> LiveState | None:
        """Take a chunk of a large state's keyframe (an empty payload, a cleared retained
        topic, is ignored); once a keyframe is complete, the delta that waited for it is
        prepared and installed.

        Returns:
            The state installed thereby, or None.
        """
        try:
            parts = self.feed.on_keyframe_chunk(payload)
        except codec.DecodeError as exc:
            self.metrics.state(f"malformed_keyframe_{exc.code}")
            log.warning("keyframe_rejected", code=exc.code, reason=exc.reason, bytes=len(payload))
            return None
        return None if parts is None else self._accept(parts, len(payload))

    def install_runtime(self, runtime: PolicyRuntime) -> None:
        """Swap in a (verified) new policy, with the serving state prepared for it first,
        so that no request waits for the encoder and none is decided half-and-half."""
        while True:
            current = self.state
            fresh = None if current is None else current.for_runtime(runtime)
            with self._swap:
                if self.state is current:  # else a newer state came meanwhile: again
                    self.runtime = runtime
                    self.state = fresh
                    break
        self.metrics.set_policy(runtime.version, runtime.provider)

    # ---- requests -----------------------------------------------------------------------
    def decided(self, request_id: str) -> Decided | None:
        """What was published for a request id (None: nothing, or forgotten)."""
        return self.ledger.get(request_id)

    def commit(self, result: Result) -> None:
        """Record ``result``'s decision as made, so that a redelivery of its request is
        recognised (call it before publishing; :meth:`forget` undoes it if the publish
        fails)."""
        if result.decision is not None and result.request_id:
            self.ledger.record(result.request_id, result.decision)

    def published(self, result: Result) -> None:
        """Count a decision or rejection that was handed to the broker."""
        d = result.decision
        if d is None:
            return
        if d.rejection:
            self.metrics.rejection(d.rejection.split(":", 1)[0])
        else:
            self.metrics.decision(d.fallback)

    def forget(self, request_id: str) -> None:
        """Undo :meth:`commit` (its decision could not be published after all)."""
        if self.ledger.forget(request_id):
            self.metrics.event("decision_unpublished")

    def reject_internal(self, payload: bytes, exc: BaseException) -> Result:
        """A rejection for a request whose handling failed with a bug."""
        self.metrics.event("internal_error")
        try:
            rid = codec.decode_request(payload).request_id
        except codec.DecodeError:
            rid = ""
        if not rid:
            self.metrics.drop("internal_error")
            return Result("dropped", reason=f"internal error: {exc!r}")
        return self._reject(rid, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")

    def process(
        self, payload: bytes, publish: Callable[[network_pb2.ControlDecision], bool]
    ) -> tuple[Result, bool]:
        """The whole life of one request delivery: decide, record, publish (the transport's
        ``publish``), undo the record if the publish failed. Safe to call from several
        threads: one request id is processed by one of them at a time.

        Returns:
            ``(result, settled)``: settled is False when a decision could not be handed to
            the broker (do not acknowledge the request: it must come again).
        """
        with self.ledger.claim(_request_id(payload)):
            try:
                result = self.handle_request(payload)
            except Exception as exc:  # a bug, not bad input: the request is still answered
                log.exception("request_handling_failed", bytes=len(payload))
                result = self.reject_internal(payload, exc)
            if result.decision is None:
                return result, True
            if result.status == "duplicate":
                if not publish(result.decision):
                    return result, False
                self.metrics.event("decision_republished")
                return result, True
            self.commit(result)  # before the publish: its outcome may come back at once
            if not publish(result.decision):
                self.forget(result.request_id)
                return result, False
            self.published(result)
            return result, True

    def handle_request(self, payload: bytes) -> Result:
        """Decide one request payload (does not publish; see :meth:`commit`)."""
        try:
            req = codec.decode_request(payload)
        except codec.DecodeError as exc:
            rid = _readable_request_id(exc)
            if not rid:
                self.metrics.drop(f"undecodable_{exc.code}")
                log.warning("request_dropped", code=exc.code, reason=exc.reason, bytes=len(payload))
                return Result("dropped", reason=exc.reason)
            if (mine := self.decided(rid)) is not None:
                self.metrics.duplicate()
                return Result("duplicate", rid, decision=mine.decision)
            return self._reject(rid, MALFORMED_REQUEST, exc.reason)
        rid = req.request_id
        if (mine := self.decided(rid)) is not None:
            self.metrics.duplicate()
            log.info("request_duplicate", request_id=rid)
            return Result("duplicate", rid, decision=mine.decision)
        return self.decide(req)

    def decide(self, req: network_pb2.ServiceRequest) -> Result:
        """Decide a decoded, validated request (steps 1-4 of the module docstring)."""
        rid = req.request_id
        with self._swap:
            live, runtime = self.state, self.runtime
        seen = live, runtime
        if live is None:
            return self._reject(rid, NO_STATE, "no network state received yet", seen=seen)
        age = self._age(live)
        if age > self.max_state_age_s:
            return self._reject(
                rid,
                STALE_STATE,
                f"state {live.seq} is {age:.1f} s old (limit {self.max_state_age_s:g} s)",
                seen=seen,
            )
        problem = check_request(req, live.net, self.max_prompt_bytes)
        if problem:
            return self._reject(rid, MALFORMED_REQUEST, problem, seen=seen)
        types = tuple(int(t) for t in req.chain_types)
        app, prompt = req.app, req.prompt
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        prep = live.inputs(types)
        empty = [k for k in range(len(types)) if not prep.state.usable[0, k].any()]
        if empty:  # checked first: the policy's lookahead needs candidates at every step
            k = empty[0]
            return self._reject(
                rid,
                NO_FEASIBLE_CHAIN,
                f"no usable agent of type {types[k]} for step {k + 1}",
                seen=seen,
            )
        text = F.text_features(prompt)[None, :]
        served = self.translator.served_models()
        k = runtime.choose_elam(prep, app, prompt, text, served=served)
        t1 = time.perf_counter()
        tr, cause = self._translate(runtime, k, req, served)
        t2 = time.perf_counter()
        timings["translate"] = t2 - t1
        elam_index = k
        if tr.elam in runtime.elam_ids:
            elam_index = runtime.elam_ids.index(tr.elam)
        sets = None
        decide_on = prep
        if self.proposes(live):
            sets = live.profile(types).propose(tr.vector, self.proposer_k)
            decide_on = reduced_prepared(prep, sets)
            self.metrics.proposal()
        t3 = time.perf_counter()
        if sets is not None:
            timings["propose"] = t3 - t2
        try:
            chain = runtime.compose(decide_on, tr.vector, elam_index, app, prompt, text)
        except ValueError as exc:
            return self._reject(rid, NO_FEASIBLE_CHAIN, str(exc), timings, seen=seen)
        why = chain_feasible(live.net, chain, types)
        if why:
            chain, why = self._repair(live, chain, why, tr.vector, types, rid, sets)
            if why:
                timings["compose"] = (time.perf_counter() - t3) + (t1 - t0)
                return self._reject(rid, NO_FEASIBLE_CHAIN, why, timings, seen=seen)
        timings["compose"] = (time.perf_counter() - t3) + (t1 - t0)
        decision = network_pb2.ControlDecision(
            request_id=rid,
            chain=chain,
            elam=tr.elam,
            predicted=tr.vector,
            policy_version=runtime.version,
            fallback=tr.fallback,
            calibrated=tr.calibrated,
            timestamp_ns=self.wall_clock_ns(),
            state_seq=live.seq,
        )
        return Result("decided", rid, decision, cause, timings)

    def proposes(self, live: LiveState) -> bool:
        """Requests on ``live`` are decided on the proposer's reduced graph."""
        return self.proposer_k > 0 and live.net.n_agents >= self.proposer_min_agents

    def usable_state(self) -> bool:
        """A state is serving and is not too old to decide on."""
        live = self.state
        return live is not None and self._age(live) <= self.max_state_age_s

    # ---- helpers ------------------------------------------------------------------------
    def _age(self, live: LiveState) -> float:
        """Seconds since the state was made (its timestamp; reception when it has none)."""
        if live.timestamp_ns > 0:
            return max(0.0, (self.wall_clock_ns() - live.timestamp_ns) / 1e9)
        return max(0.0, self.clock() - live.received)

    def _translate(
        self,
        runtime: PolicyRuntime,
        k: int,
        req: network_pb2.ServiceRequest,
        served: frozenset[str] | None,
    ) -> tuple[Translation, str]:
        """The vector to decide with, and the fallback cause ("" when none).

        The policy picked E-LAM ``k`` among those the rApp serves (``served``, None when
        not known yet); when it serves none of the policy's E-LAMs (``k < 0``), or the one
        picked is not served after all, the rApp's default E-LAM translates.
        """
        if runtime.mode == "even" or runtime.n_elams == 0:  # DRL (Even): no translation
            return Translation(EVEN, ""), ""
        ask = runtime.elam_ids[k] if 0 <= k < len(runtime.elam_ids) else ""
        if not ask or (served is not None and ask not in served):
            ask = ""
            self.metrics.event("elam_substituted")
        try:
            tr = self.translator.translate(req.prompt, ask, req.app, req.request_id)
        except TranslationFailed as exc:
            vector, source = self.fallbacks.vector(req.app)
            self.metrics.fallback(exc.cause)
            log.warning(
                "translate_fallback",
                request_id=req.request_id,
                cause=exc.cause,
                detail=exc.detail,
                vector_source=source,
            )
            return Translation(vector, "", fallback=True, failure=str(exc)), exc.cause
        if tr.fallback:
            self.metrics.fallback("rapp_fallback")
            return tr, "rapp_fallback"
        self.fallbacks.add(req.app, tr.vector)
        return tr, ""

    def _repair(
        self,
        live: LiveState,
        chain: tuple[int, ...],
        why: str,
        vector: Sequence[float],
        types: tuple[int, ...],
        rid: str,
        sets: Sequence[np.ndarray] | None = None,
    ) -> tuple[tuple[int, ...], str]:
        """A feasible chain instead of the policy's infeasible one: with the proposer's
        sets (``sets``), the best feasible chain among them (they hold one whenever the
        network has one); else, or when they span too many chains, the best feasible chain
        for the predicted vector by exhaustive search when the network is small enough
        (MODEL.md's optimum, the search space built once per state), else the greedy
        baseline's chain if it is feasible."""
        if not self.repair_infeasible:
            return chain, f"the policy's chain {list(chain)} is infeasible: {why}"
        alt: tuple[int, ...]
        found = None
        if sets is not None:
            try:
                found = topk_exhaustive(live.net, live.inputs(types).state, sets, vector)
            except OptimumUnavailable:
                found = None
        space = live.search_space(types) if found is None else None
        if found is not None:
            alt, how = found[0], "proposed"
        elif isinstance(space, SearchSpace):
            if space.feasible_count == 0:
                return chain, f"no chain meets the constraints of eq. 18 ({why})"
            q = space.utilities @ np.asarray(vector, dtype=float)
            flat = np.where(space.feasible, q, -np.inf).reshape(-1)
            alt = space.chain_at(int(np.argmax(flat)))
            how = "search"
        else:
            try:
                alt = tuple(int(a) for a in greedy_chain(live.net, vector, types))
            except OptimumUnavailable as exc:
                return chain, str(exc)
            alt_why = chain_feasible(live.net, alt, types)
            if alt_why:
                return chain, f"no feasible chain found ({why}; greedy: {alt_why})"
            how = "greedy"
        self.metrics.event("repaired")
        log.info(
            "chain_repaired",
            request_id=rid,
            policy_chain=list(chain),
            why=why,
            chain=list(alt),
            how=how,
        )
        return alt, ""

    def _reject(
        self,
        rid: str,
        code: str,
        detail: str,
        timings: dict[str, float] | None = None,
        *,
        seen: tuple[LiveState | None, PolicyRuntime] | None = None,
    ) -> Result:
        """A rejection, labelled with the state and policy the request was decided on
        (``seen``; default: the serving ones), not with ones swapped in meanwhile."""
        if seen is None:
            with self._swap:
                seen = self.state, self.runtime
        live, runtime = seen
        decision = network_pb2.ControlDecision(
            request_id=rid,
            policy_version=runtime.version,
            rejection=f"{code}: {detail}",
            timestamp_ns=self.wall_clock_ns(),
            state_seq=live.seq if live is not None else 0,
        )
        log.info("request_rejected", request_id=rid, code=code, detail=detail)
        return Result("rejected", rid, decision, code, timings or {})


def _readable_request_id(exc: codec.DecodeError) -> str:
    """The request id of a payload that failed validation, when it could be parsed."""
    return getattr(exc.message, "request_id", "") if exc.message is not None else ""


def _request_id(payload: bytes) -> str:
    """The request id of a payload, or "" when it has none that can be read."""
    try:
        return codec.decode_request(payload).request_id
    except codec.DecodeError as exc:
        return _readable_request_id(exc)


def check_request(
    req: network_pb2.ServiceRequest, net: Network, max_prompt_bytes: int | None = None
) -> str:
    """Why a (structurally valid) request cannot be decided on ``net``, or ""."""
    size = len(req.prompt.encode("utf-8"))
    if max_prompt_bytes is not None and size > max_prompt_bytes:
        # Answered here, before any rApp call: the rApp would refuse it anyway, and a
        # refusal is not a sign of an rApp in trouble.
        return f"prompt of {size} bytes exceeds the rApp's limit of {max_prompt_bytes}"
    if req.app not in APPS:
        return f"unknown application {req.app!r}; expected one of {list(APPS)}"
    if len(req.chain_types) > MAX_CHAIN_STEPS:
        return f"{len(req.chain_types)} chain steps; at most {MAX_CHAIN_STEPS}"
    n_types = int(net.types.max()) if net.n_agents else 0
    bad = [int(t) for t in req.chain_types if not 1 <= t <= F.N_TYPES or t > n_types]
    if bad:
        return f"chain types {bad} outside 1..{min(F.N_TYPES, n_types)}"
    if not math.isfinite(req.arrival_rate) or req.arrival_rate < 0:
        return f"arrival rate {req.arrival_rate} is not a rate"
    return ""
