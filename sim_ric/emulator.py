"""The live emulator's pure, synchronous core (no MQTT): state, users, decisions, outcomes.

:class:`Emulator` holds the network, its :class:`~sim_ric.dynamics.Dynamics`, the
simulated users and the pending requests. The MQTT service (``sim_ric.service``) is a thin
adapter around it: it calls :meth:`Emulator.tick` every state period,
:meth:`Emulator.new_request` at the request rate, feeds control payloads to
:meth:`Emulator.handle_control` and publishes what comes back.

A request's TRUE preference vector never leaves this object: the published request
carries the prompt and the application only, and the true vector is used once, to score
the decision (MODEL.md "Evaluation protocol").

Decisions are checked before they are served. A decision that cannot be served gets an
outcome with ``accepted = False``, a ``reason`` and a machine-readable ``code``:

=======================  ===================================================  =========
code                     cause                                                resolves
=======================  ===================================================  =========
``garbage``              bytes that are not a lameta.v1 Envelope              no
``unsupported_schema``   an envelope of another schema version                no
``wrong_message_type``   e.g. a network state on the control topic            no
``missing_field``        no request id, or neither chain nor rejection        no
``invalid_field``        a field the codec rejects (see ``servicekit.codec``)    no
``unknown_request``      a request id the emulator never issued               no
``duplicate``            a second decision for an already decided request     no
``late``                 a decision for a request that already expired        no
``unknown_elam``         an E-LAM id not in the fee table                     no
``wrong_chain_length``   not one agent per step of the request                no
``agent_out_of_range``   an agent id outside [0, N)                           no
``wrong_step_type``      an agent of the wrong service type for its step      no
``invalid_predicted``    a predicted vector that is not a preference vector   no
``rejected_by_xapp``     the xApp declined the request (``rejection`` set)    yes
``expired``              no decision within the pending timeout               yes
``shutdown``             the emulator stopped with the request pending        yes
``suspended``            admission is suspended by the policy (λ* = 0): a     yes
                         request arriving meanwhile is refused at once and
                         never published
=======================  ===================================================  =========

A refused decision never loses the request: it stays pending and a valid decision can
still follow. A well-formed decision is served (``accepted = True``, code ``served``)
even if the chain is infeasible (a crashed agent, a latency bound broken): it is then
scored as infeasible, as MODEL.md prescribes. Its ``normalized_score`` compares the episode
bonus with the exact optimum over all feasible chains and the fee table's E-LAMs on the
current state (NaN when the optimum is unavailable); a decision made without an E-LAM
(``elam = ""``, fee 0) can therefore score slightly above 1.

Policy (NEGOTIATION.md "Enforcement"): :meth:`Emulator.apply_policy` validates a payload
of the policy topic. An accepted policy's λ* replaces λ in the QoE model from the next
tick on (so from the next published state on), and :meth:`Emulator.request_rate_scale`
scales the request stream by λ* / λ_0 (λ_0, the model's base rate: the request stream
stands for that load). λ* = 0 suspends admission: requests that arrive are refused with
code ``suspended``; the state keeps the offered λ (nothing is served). A policy lapses
after its ``valid_until_ns``; an empty payload (a cleared retained message) withdraws it.
A payload that cannot be accepted is dropped and counted by code, never raised:

=================  ==========================================================
drop code          cause
=================  ==========================================================
``garbage`` ...    the codec's codes (garbage, wrong type, missing or invalid
                   field)
``wrong_network``  a policy for another network
``expired``        its ``valid_until_ns`` has passed
``stale``          issued before the policy in force
=================  ==========================================================
"""

from __future__ import annotations

import math
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from agentnet.chain import evaluate_chain
from agentnet.config import DEFAULT, ModelConfig, elam_fee
from agentnet.intents import LabelledIntent, validate_vector
from agentnet.network import generate_network
from agentnet.optimum import (
    OptimumUnavailable,
    SearchSpace,
    build_search_space,
    exact_optimum,
    normalized_score,
)
from agentnet.qoe import Objective
from lameta_proto.v1 import network_pb2
from servicekit import codec
from sim_ric.dynamics import Dynamics, DynamicsConfig
from sim_ric.env import DEFAULT_ELAMS
from sim_ric.journal import Journal, JournalRequest
from sim_ric.users import UserPool

NAN = float("nan")

REFUSAL_CODES: tuple[str, ...] = (
    "garbage",
    "unsupported_schema",
    "wrong_message_type",
    "missing_field",
    "invalid_field",
    "unknown_request",
    "duplicate",
    "late",
    "unknown_elam",
    "wrong_chain_length",
    "agent_out_of_range",
    "wrong_step_type",
    "invalid_predicted",
)
"""Codes of decisions refused without settling a request (see the module docstring)."""

RESOLVING_CODES: tuple[str, ...] = (
    "served",
    "rejected_by_xapp",
    "expired",
    "shutdown",
    "suspended",
)
"""Codes of outcomes that settle a request."""


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator core needs (built from ``SimSettings`` at the edge)."""

    network: str = field(default="default", metadata={"help": "network name of the topics"})
    seed: int = field(default=0, metadata={"help": "master seed: network, users, dynamics"})
    n_agents: int | None = field(default=None, metadata={"help": "N (default: the model's)"})
    pending_timeout_s: float = field(
        default=30.0, metadata={"help": "a request without a decision expires after this"}
    )
    elams: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_ELAMS),
        metadata={"help": "E-LAM id -> parameter count; the fee F(kappa) follows (MODEL.md)"},
    )
    objective: Objective = field(default="weighted", metadata={"help": "weighted or paper"})
    model: ModelConfig = field(default=DEFAULT, metadata={"help": "model constants"})
    dynamics: DynamicsConfig = field(
        default_factory=DynamicsConfig, metadata={"help": "arrival rate, shadowing, crashes"}
    )
    resolved_memory: int = field(
        default=100_000, metadata={"help": "settled request ids remembered (duplicates, late)"}
    )
    run_id: str = field(
        default="", metadata={"help": "prefix of request ids ('' = random per run)"}
    )

    def __post_init__(self) -> None:
        if not self.network:
            raise ValueError("network name must not be empty")
        if not self.pending_timeout_s > 0:
            raise ValueError(f"pending timeout must be positive, got {self.pending_timeout_s}")
        for elam, n_params in self.elams.items():
            if not elam:
                raise ValueError('"" is reserved for "no E-LAM" (fee 0); do not list it')
            if not (np.isfinite(n_params) and n_params >= 0):
                raise ValueError(f"E-LAM {elam!r}: parameter count must be >= 0, got {n_params}")
        if self.objective not in ("weighted", "paper"):
            raise ValueError(f"objective must be weighted or paper, got {self.objective!r}")
        if self.resolved_memory < 1:
            raise ValueError("resolved_memory must be >= 1")


@dataclass
class PendingRequest:
    """A published request awaiting its decision. ``true_vector`` never leaves the emulator."""

    request_id: str
    prompt: str
    app: str
    true_vector: tuple[float, float, float, float]
    created: float
    deadline: float
    timestamp_ns: int
    refused: int = 0
    announced: float = -math.inf
    """When the request was last announced (emulator clock); see :meth:`Emulator.stale_requests`."""


class Emulator:
    """The emulator core: one network, its dynamics, simulated users and pending requests.

    Seeded: the same ``cfg.seed`` gives the same network (the one ``sim-ric
    export-network --seed`` prints), the same users, the same dynamics and the same
    inter-arrival times.

    Args:
        intents: the labelled intents the simulated users are drawn from.
        cfg: configuration.
        clock: monotonic clock (seconds) for deadlines; injectable for tests.
        wall_clock_ns: wall clock (ns since the epoch) for message timestamps.
        journal: where issued and settled requests are recorded; a journal of an earlier
            run of this network and seed is taken up (its run id, its count of issued
            requests, its pending requests with fresh deadlines).
    """

    def __init__(
        self,
        intents: Sequence[LabelledIntent],
        cfg: EmulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ns: Callable[[], int] = time.time_ns,
        journal: Journal | None = None,
    ):
        self.cfg = cfg or EmulatorConfig()
        self.clock = clock
        self.wall_clock_ns = wall_clock_ns
        self.net = generate_network(self.cfg.seed, self.cfg.model, n_agents=self.cfg.n_agents)
        dyn_ss, users_ss, arrivals_ss = np.random.SeedSequence(self.cfg.seed).spawn(3)
        self.dynamics = Dynamics(self.net, np.random.default_rng(dyn_ss), self.cfg.dynamics)
        self.users = UserPool(intents, np.random.default_rng(users_ss))
        self._arrivals = np.random.default_rng(arrivals_ss)
        self.run_id = self.cfg.run_id or secrets.token_hex(3)
        self.fees: dict[str, float] = {
            k: elam_fee(v, self.cfg.model) for k, v in self.cfg.elams.items()
        }
        self.seq = 0
        self.pending: dict[str, PendingRequest] = {}
        self._resolved: OrderedDict[str, str] = OrderedDict()
        self._issued = 0
        self._last_created = -math.inf
        self._space: SearchSpace | None = None
        self._space_seq = -1
        self._space_error = ""
        self.outcomes: Counter[str] = Counter()
        """Outcomes produced, by code."""
        self.stats: Counter[str] = Counter()
        """Other counts: ticks, requests, decisions, crashes, recoveries."""
        self.policy: network_pb2.Policy | None = None
        """The policy in force (None: λ follows the dynamics)."""
        self.policy_events: Counter[str] = Counter()
        """Policy payloads by what became of them: applied, cleared, lapsed or a drop code."""
        self.journal = journal
        if journal is not None:
            self._take_up(journal)

    def _take_up(self, journal: Journal) -> None:
        """Continue the journal's run, or start the journal with this one."""
        state = journal.state(self.cfg.resolved_memory)
        if state is None:
            journal.begin(self.run_id)
            return
        self.run_id = state.run_id
        self._issued = state.issued
        for rid, code in state.settled:
            self._resolved[rid] = code
        now = self.clock()
        self._last_created = now
        for r in state.pending:
            self.pending[r.request_id] = PendingRequest(
                request_id=r.request_id,
                prompt=r.prompt,
                app=r.app,
                true_vector=r.true_vector,
                created=now,
                deadline=now + self.cfg.pending_timeout_s,
                timestamp_ns=r.timestamp_ns,
            )
        self.stats["requests_restored"] += len(state.pending)

    @property
    def issued(self) -> int:
        """Requests issued in this run (across restarts when journaled)."""
        return self._issued

    # ---- state --------------------------------------------------------------------------
    @property
    def chain_types(self) -> tuple[int, ...]:
        """Required service type of each step of a request."""
        return tuple(self.cfg.model.chain_types)

    def state(self) -> network_pb2.NetworkState:
        """The current network state as a message (does not advance time)."""
        return codec.state_message(
            self.net, network=self.cfg.network, seq=self.seq, timestamp_ns=self.wall_clock_ns()
        )

    def keyframe(self) -> network_pb2.StateKeyframe:
        """The fixed part of the state (no tick changes it), for the large-state format."""
        return codec.keyframe_message(self.net, network=self.cfg.network)

    def delta(self, keyframe: int) -> network_pb2.StateDelta:
        """What the ticks change of the current state, for keyframe id ``keyframe``."""
        return codec.delta_message(
            self.net,
            network=self.cfg.network,
            seq=self.seq,
            timestamp_ns=self.wall_clock_ns(),
            keyframe=keyframe,
        )

    def tick(self) -> network_pb2.NetworkState:
        """Advance the dynamics one tick, enforce the policy and return the new state."""
        self.advance()
        return self.state()

    def advance(self) -> None:
        """Advance the dynamics one tick and enforce the policy (no message built)."""
        counts = self.dynamics.tick()
        self._enforce()
        self.seq += 1
        self.stats["ticks"] += 1
        self.stats["crashes"] += counts["crashes"]
        self.stats["recoveries"] += counts["recoveries"]

    # ---- policy ---------------------------------------------------------------------------
    def apply_policy(self, payload: bytes) -> str:
        """Validate a payload of the policy topic and put it in force (module docstring).

        Returns:
            ``applied``, ``cleared`` (empty payload) or the drop code. Never raises on bad
            input.
        """
        if not payload:
            self.policy = None
            return self._policy_event("cleared")
        try:
            policy = codec.decode_policy(payload)
        except codec.DecodeError as exc:
            return self._policy_event(exc.code)
        if policy.network != self.cfg.network:
            return self._policy_event("wrong_network")
        if policy.valid_until_ns and policy.valid_until_ns <= self.wall_clock_ns():
            return self._policy_event("expired")
        if self.policy is not None and policy.timestamp_ns < self.policy.timestamp_ns:
            return self._policy_event("stale")
        self.policy = policy
        return self._policy_event("applied")

    def _policy_event(self, code: str) -> str:
        self.policy_events[code] += 1
        return code

    def _active_policy(self) -> network_pb2.Policy | None:
        p = self.policy
        if p is not None and p.valid_until_ns and p.valid_until_ns <= self.wall_clock_ns():
            self.policy = None
            self._policy_event("lapsed")
            return None
        return p

    def _enforce(self) -> None:
        """λ* replaces the dynamics' λ (a suspension leaves the offered λ in the state)."""
        p = self._active_policy()
        if p is not None and p.arrival_rate > 0:
            self.net.set_arrival_rate(p.arrival_rate)

    @property
    def suspended(self) -> bool:
        """True while a policy with λ* = 0 is in force."""
        p = self._active_policy()
        return p is not None and p.arrival_rate == 0

    def request_rate_scale(self) -> float:
        """λ* / λ_0 under a policy (0 while suspended), else 1."""
        p = self._active_policy()
        if p is None:
            return 1.0
        return p.arrival_rate / self.dynamics.base_rate

    def refuse_suspended(self, now: float | None = None) -> network_pb2.Outcome:
        """A request that arrives while admission is suspended: drawn, never published,
        settled at once with code ``suspended``."""
        pend = self._draw(now)
        policy = self.policy.negotiation_id if self.policy is not None else ""
        return self._settle_unserved(
            pend, "suspended", f"suspended: admission suspended by policy {policy}"
        )

    # ---- requests -------------------------------------------------------------------------
    def next_interarrival(self, rate: float) -> float:
        """Seconds until the next request of a Poisson process of ``rate`` req/s."""
        if not rate > 0:
            return float("inf")
        return float(self._arrivals.exponential(1.0 / rate))

    def new_request(self, now: float | None = None) -> network_pb2.ServiceRequest:
        """Draw a simulated user and register the request as pending.

        The returned message carries the prompt and the application; the user's true
        vector stays in :attr:`pending`.
        """
        pend = self._draw(now)
        self.pending[pend.request_id] = pend
        return self._request_message(pend)

    def _draw(self, now: float | None) -> PendingRequest:
        """A new request of a simulated user, journaled as issued (not yet registered as
        pending: a refused arrival is settled at once)."""
        # Deadlines stay in creation order (pending is insertion-ordered), which keeps
        # expiry O(expired): a clock that steps back is clamped.
        now = max(self.clock() if now is None else now, self._last_created)
        self._last_created = now
        user = self.users.draw()
        self._issued += 1
        rid = f"{self.run_id}-{self._issued:06d}"
        ts = self.wall_clock_ns()
        if self.journal is not None:
            self.journal.issue(JournalRequest(rid, user.prompt, user.app, user.s, ts))
        self.stats["requests"] += 1
        return PendingRequest(
            request_id=rid,
            prompt=user.prompt,
            app=user.app,
            true_vector=user.s,
            created=now,
            deadline=now + self.cfg.pending_timeout_s,
            timestamp_ns=ts,
        )

    def _request_message(self, p: PendingRequest) -> network_pb2.ServiceRequest:
        return codec.ServiceRequest(
            request_id=p.request_id,
            prompt=p.prompt,
            app=p.app,
            chain_types=self.chain_types,
            arrival_rate=self.net.arrival_rate,
            timestamp_ns=p.timestamp_ns,
        )

    def pending_requests(self) -> list[network_pb2.ServiceRequest]:
        """Every pending request as a message, oldest first: what is re-announced after a
        reconnect or a restart (the same ids: deciders recognise them)."""
        return [self._request_message(p) for p in self.pending.values()]

    def stale_requests(self, now: float, after: float) -> list[network_pb2.ServiceRequest]:
        """Pending requests announced ``after`` seconds ago or longer, oldest first; each is
        marked announced at ``now``.

        At-least-once on the request side: a decider that took a request and died before
        deciding it (an xApp replica killed, its shared-subscription share lost with its
        session) leaves it pending; announcing it again hands it to a live replica. The
        same id is settled once whatever number of decisions comes back.
        """
        out = []
        for p in self.pending.values():
            if now - max(p.announced, p.created) >= after:
                p.announced = now
                out.append(self._request_message(p))
        return out

    def expire(self, now: float | None = None) -> list[network_pb2.Outcome]:
        """Settle every pending request whose deadline has passed (code ``expired``)."""
        now = self.clock() if now is None else now
        due = []
        for p in self.pending.values():  # deadlines are in insertion order
            if p.deadline > now:
                break
            due.append(p)
        timeout = self.cfg.pending_timeout_s
        return [
            self._settle_unserved(p, "expired", f"expired: no decision within {timeout:g} s")
            for p in due
        ]

    def next_deadline(self) -> float:
        """The earliest pending deadline (``inf`` when nothing is pending)."""
        first = next(iter(self.pending.values()), None)
        return float("inf") if first is None else first.deadline

    def postpone(self, seconds: float) -> None:
        """Push every pending deadline back, e.g. by the length of a broker outage."""
        if seconds > 0:
            for p in self.pending.values():
                p.deadline += seconds

    def shutdown(self) -> list[network_pb2.Outcome]:
        """Settle every pending request because the emulator stops (code ``shutdown``)."""
        pending = list(self.pending.values())
        return [
            self._settle_unserved(p, "shutdown", "expired: emulator shutting down") for p in pending
        ]

    # ---- decisions ------------------------------------------------------------------------
    def handle_control(self, payload: bytes) -> network_pb2.Outcome:
        """Validate and serve one payload received on the control topic.

        Never raises on bad input: every refusal is an outcome with ``accepted = False``,
        a reason and a code (module docstring).
        """
        try:
            decision = codec.decode_decision(payload)
        except codec.DecodeError as exc:
            self.stats["decisions"] += 1
            rid = getattr(exc.message, "request_id", "") if exc.message is not None else ""
            pend = self.pending.get(rid) if rid else None
            if pend is not None:
                pend.refused += 1
            return self._refuse(rid, exc.code, exc.reason, pend=pend)
        return self.handle_decision(decision)

    def handle_decision(self, d: network_pb2.ControlDecision) -> network_pb2.Outcome:
        """Validate and serve a decoded decision (see :meth:`handle_control`)."""
        self.stats["decisions"] += 1
        rid = d.request_id
        if not rid:
            return self._refuse("", "missing_field", "missing field: decision.request_id")
        pend = self.pending.get(rid)
        if pend is None:
            settled = self._resolved.get(rid)
            if settled in ("expired", "shutdown"):
                return self._refuse(rid, "late", f"late decision: request {rid} already expired")
            if settled is not None:
                return self._refuse(
                    rid,
                    "duplicate",
                    f"duplicate decision: request {rid} was already decided ({settled})",
                )
            return self._refuse(rid, "unknown_request", f"unknown request id {rid!r}")
        if d.rejection:
            return self._settle_unserved(
                pend, "rejected_by_xapp", f"rejected by xApp: {d.rejection}", decision=d
            )
        problem = self._check(d)
        if problem is not None:
            pend.refused += 1
            return self._refuse(rid, *problem, decision=d, pend=pend)
        return self._serve(pend, d)

    def _check(self, d: network_pb2.ControlDecision) -> tuple[str, str] | None:
        """(code, reason) of what is wrong with a decision for a pending request, if any."""
        if not d.chain:
            return "missing_field", "missing field: decision.chain (or a rejection)"
        if d.elam and d.elam not in self.fees:
            known = ", ".join(sorted(self.fees)) or "none"
            return "unknown_elam", f"unknown E-LAM {d.elam!r} (known: {known}; '' for none)"
        types = self.chain_types
        chain = list(d.chain)
        if len(chain) != len(types):
            return (
                "wrong_chain_length",
                f"chain has {len(chain)} agents, the request needs {len(types)}",
            )
        n = self.net.n_agents
        bad = [a for a in chain if a >= n]
        if bad:
            return "agent_out_of_range", f"agent ids out of range [0, {n}): {bad}"
        for k, (a, t) in enumerate(zip(chain, types, strict=True)):
            if self.net.types[a] != t:
                return (
                    "wrong_step_type",
                    f"step {k + 1}: agent {a} has type {int(self.net.types[a])}, the step needs"
                    f" type {t}",
                )
        if d.predicted:
            try:
                validate_vector(list(d.predicted))
            except ValueError as exc:
                return "invalid_predicted", f"invalid predicted vector: {exc}"
        return None

    def _search_space(self) -> SearchSpace | None:
        if self._space_seq != self.seq:
            self._space_seq = self.seq
            try:
                self._space = build_search_space(self.net)
                self._space_error = ""
            except OptimumUnavailable as exc:
                self._space = None
                self._space_error = str(exc)
        return self._space

    def _serve(self, pend: PendingRequest, d: network_pb2.ControlDecision) -> network_pb2.Outcome:
        s = pend.true_vector
        fee = self.fees.get(d.elam, 0.0)
        obj = self.cfg.objective
        res = evaluate_chain(self.net, list(d.chain), s, objective=obj, fee=fee)
        norm = NAN
        space = self._search_space()
        if space is not None:
            try:
                opt = exact_optimum(space, s, fees=self.fees, objective=obj, cfg=self.net.cfg)
                norm = normalized_score(res.r_episode, opt.r_episode, opt.random_mean)
            except OptimumUnavailable:
                norm = NAN
        reason = "served" if res.feasible else f"served; chain infeasible: {res.reason}"
        out = self._outcome(
            pend.request_id,
            accepted=True,
            resolved=True,
            code="served",
            reason=reason,
            pend=pend,
            decision=d,
        )
        out.feasible = res.feasible
        out.C, out.B, out.L, out.P_outage = res.C, res.B, res.L, res.P_outage
        out.Q = res.Q
        out.Q_subjective = res.Q_subjective
        out.reward = res.r_episode
        out.normalized_score = norm
        self._forget(pend.request_id, "served")
        return out

    # ---- outcomes -------------------------------------------------------------------------
    def _outcome(
        self,
        rid: str,
        *,
        accepted: bool,
        resolved: bool,
        code: str,
        reason: str,
        pend: PendingRequest | None = None,
        decision: network_pb2.ControlDecision | None = None,
    ) -> network_pb2.Outcome:
        out = codec.Outcome(
            request_id=rid,
            accepted=accepted,
            resolved=resolved,
            code=code,
            reason=reason,
            timestamp_ns=self.wall_clock_ns(),
        )
        if not accepted:
            # Nothing was served: no factor or score exists.
            for name in ("C", "B", "L", "P_outage", "Q", "Q_subjective", "reward"):
                setattr(out, name, NAN)
            out.normalized_score = NAN
        if pend is not None:
            out.prompt = pend.prompt
            out.app = pend.app
        if decision is not None:
            out.elam = decision.elam
            out.chain.extend(decision.chain)
            out.predicted.extend(decision.predicted)
        self.outcomes[code] += 1
        return out

    def _refuse(
        self,
        rid: str,
        code: str,
        reason: str,
        *,
        decision: network_pb2.ControlDecision | None = None,
        pend: PendingRequest | None = None,
    ) -> network_pb2.Outcome:
        if pend is not None:
            reason = f"{reason}; request {rid} is still pending"
        return self._outcome(
            rid,
            accepted=False,
            resolved=False,
            code=code,
            reason=reason,
            pend=pend,
            decision=decision,
        )

    def _settle_unserved(
        self,
        pend: PendingRequest,
        code: str,
        reason: str,
        decision: network_pb2.ControlDecision | None = None,
    ) -> network_pb2.Outcome:
        out = self._outcome(
            pend.request_id,
            accepted=False,
            resolved=True,
            code=code,
            reason=reason,
            pend=pend,
            decision=decision,
        )
        self._forget(pend.request_id, code)
        return out

    def _forget(self, rid: str, code: str) -> None:
        if self.journal is not None:
            self.journal.settle(rid, code)
        self.pending.pop(rid, None)
        self._resolved[rid] = code
        while len(self._resolved) > self.cfg.resolved_memory:
            self._resolved.popitem(last=False)

    # ---- introspection --------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        """A snapshot: ``outcome.<code>`` counts plus ticks, requests, decisions, pending."""
        out = {f"outcome.{k}": v for k, v in sorted(self.outcomes.items())}
        out.update({f"policy.{k}": v for k, v in sorted(self.policy_events.items())})
        out.update(sorted(self.stats.items()))
        out["pending"] = len(self.pending)
        return out
