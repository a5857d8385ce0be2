"""Negotiation rounds (maestro Fig. 1-2): tenants to the mediator and back, n each way.

A round: every tenant's agent decides concurrently (one batched LLM call) and sends its
message to the mediator; the mediator's agent reads the n messages (extraction, arbitral
verdicts and incentives), runs its optimizer, decides, and sends n feedback messages (its
announcement with, per tenant, a direction, a warning or the reason its message could not
be read). The round is a consensus when every tenant's proposal lies within
``tolerance`` · λ_cap of the announcement; else the next round starts, up to the round cap.
The agreed value is the mediator's last announcement.

A negotiation is a generator (:meth:`Negotiation.steps`) that yields the LLM requests of
its next step and receives the texts: :func:`drive` runs many of them in lockstep, so
one batched LLM call serves every negotiation of a benchmark at once. The observability
unit can :meth:`~Negotiation.halt` a negotiation between steps.

:class:`Bilateral` is the two-tenant game of maestro Fig. 3a: no mediator and no units;
each tenant answers the other's last message, up to the round cap, and the outcome is
the mean of their final values.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from rapp_negotiation.agent import MEDIATOR, Agent, DecisionRequest, Inbound, Units
from rapp_negotiation.arbitral import Arbitral, Incentives
from rapp_negotiation.messages import render
from rapp_negotiation.negotiators import Negotiator
from rapp_negotiation.optimizer import OptimizerConfig, Problem, theoretical_consensus
from rapp_negotiation.regulatory import Constraints
from rapp_negotiation.scenario import Tenant
from rapp_negotiation.validation import DESIGNS, ORIGINS, SOURCES, Decision, ValidationConfig

log = structlog.get_logger("rapp_negotiation.engine")


def _check_origin(origin: str) -> str:
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {ORIGINS}, got {origin!r}")
    return origin


Steps = Generator[list[DecisionRequest], list["str | None"], "NegotiationResult"]


@dataclass(frozen=True)
class NegotiationConfig:
    """How negotiations run (the service and the benchmarks build it from their settings)."""

    design: str = field(default="soft", metadata={"help": "none, soft or hard"})
    rounds: int = field(default=4, metadata={"help": "round cap", "ge": 1})
    tolerance: float = field(
        default=0.03,
        metadata={"help": "consensus when every proposal is within this share of λ_cap"},
    )
    tenant_pressure: float = field(
        default=50.0,
        metadata={"help": "c_t / a_i of the tenants' optimizers in round 2", "ge": 0},
    )
    pressure_growth: float = field(
        default=4.0, metadata={"help": "c_t grows by this factor per round", "ge": 1}
    )
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise ValueError(f"design must be one of {DESIGNS}, got {self.design!r}")
        if self.rounds < 1:
            raise ValueError("rounds must be >= 1")
        if not self.tolerance > 0:
            raise ValueError("tolerance must be positive")

    def units(self) -> Units:
        """The agents' unit settings."""
        return Units(
            self.design, self.optimizer, self.validation, self.tenant_pressure,
            self.pressure_growth,
        )  # fmt: skip


@dataclass(frozen=True)
class Context:
    """What the observability and regulatory units say about the topic at the start."""

    capacity: float
    load: float
    constraints: Constraints
    state_seq: int = 0


@dataclass
class RoundRecord:
    """One round, for the logs."""

    round: int
    proposals: dict[str, float | None]
    sources: dict[str, str]
    issues: dict[str, list[str]]
    verdicts: dict[str, dict[str, Any]]
    announcement: float
    announcement_source: str
    announcement_issues: list[str]
    advice: float | None
    weights: dict[str, float]
    messages: int
    consensus: bool
    seconds: float

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class NegotiationResult:
    """The outcome of one negotiation (every input needed to recompute x* is here)."""

    id: str
    design: str
    llm: str
    tenants: list[str]
    targets: list[float]
    weights: list[float]
    capacity: float
    load: float
    r_min: float
    r_max: float
    theoretical: float
    agreed: float | None
    status: str
    """``consensus``, ``round_cap`` or ``halted:<reason>``."""
    rounds: int
    messages: int
    fallbacks: int
    imposed: int
    warnings: int
    penalties: int
    final_weights: list[float]
    seconds: float
    records: list[RoundRecord] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    state_seq: int = 0

    @property
    def announcement_sources(self) -> list[str]:
        """Where each round's announcement came from: ``llm``, ``fallback`` or ``imposed``."""
        return [r.announcement_source for r in self.records]

    @property
    def tenant_sources(self) -> dict[str, int]:
        """How many tenant decisions came from each source (``llm``, ``fallback``, ...)."""
        return self.role_sources["tenant"]

    @property
    def role_sources(self) -> dict[str, dict[str, int]]:
        """Per role (``tenant``, ``mediator``), how many decisions came from each source:
        the negotiator's own value (``llm`` or ``scripted``), ``imposed`` or ``fallback``."""
        return {
            "tenant": count_sources(s for r in self.records for s in r.sources.values()),
            "mediator": count_sources(self.announcement_sources),
        }

    @property
    def error(self) -> float:
        """|agreed − x*| (NaN when halted without an announcement)."""
        return abs(self.agreed - self.theoretical) if self.agreed is not None else math.nan

    def summary(self) -> dict:
        """The benchmark's per-negotiation record (maestro Fig. 3b inputs and outcome)."""
        return {
            "id": self.id,
            "design": self.design,
            "agents": len(self.tenants),
            "targets": [round(t, 6) for t in self.targets],
            "weights": [round(w, 6) for w in self.weights],
            "capacity": self.capacity,
            "r_min": self.r_min,
            "r_max": None if math.isinf(self.r_max) else self.r_max,
            "theoretical": self.theoretical,
            "agreed": self.agreed,
            "status": self.status,
            "rounds": self.rounds,
            "messages": self.messages,
            "fallbacks": self.fallbacks,
            "imposed": self.imposed,
            "warnings": self.warnings,
            "penalties": self.penalties,
            "announcement_sources": self.announcement_sources,
            "tenant_sources": self.tenant_sources,
            "sources": self.role_sources,
            "seconds": round(self.seconds, 4),
        }


def count_sources(sources: Iterable[str]) -> dict[str, int]:
    """Decisions per source, in the order of :data:`~rapp_negotiation.validation.SOURCES`
    (sources that never occur are left out)."""
    counts = Counter(sources)
    return {s: counts[s] for s in SOURCES if counts[s]}


def merge_sources(parts: Iterable[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """The per-role source counts of many negotiations, added up."""
    total: dict[str, Counter[str]] = {}
    for part in parts:
        for role, counts in part.items():
            total.setdefault(role, Counter()).update(counts)
    return {role: count_sources(c.elements()) for role, c in total.items()}


def _direction(value: float | None, announced: float, tol: float) -> str:
    if value is None:
        return ""
    if value > announced + tol:
        return f"lower your demand towards {announced:.3g} requests/s"
    if value < announced - tol:
        return f"raise your demand towards {announced:.3g} requests/s"
    return "you are at the consensus"


class Negotiation:
    """One negotiation among tenants mediated by MAESTRO (module docstring).

    Args:
        tenants: the tenants and their business intents.
        context: λ_cap, the load and the regulatory constraints.
        cfg: design, round cap, tolerance, unit settings.
        arbitral: the mediator's arbitral unit (None: no review, no incentives).
        llm: the LLM backend's name (recorded in the result).
        negotiation_id: id of the negotiation (default: random).
        origin: what writes the texts, ``llm`` or ``scripted`` (the negotiator's
            ``origin``; :func:`drive` checks that they match).
    """

    def __init__(
        self,
        tenants: Sequence[Tenant],
        context: Context,
        cfg: NegotiationConfig,
        arbitral: Arbitral | None = None,
        llm: str = "",
        negotiation_id: str | None = None,
        origin: str = "llm",
    ):
        if not tenants:
            raise ValueError("a negotiation needs at least one tenant")
        self.origin = _check_origin(origin)
        self.tenants = list(tenants)
        self.context = context
        self.cfg = cfg
        self.llm = llm
        self.id = negotiation_id or secrets.token_hex(4)
        units = cfg.units()
        self.agents = [Agent(t.name, "tenant", units, tenant=t, origin=origin)
                       for t in self.tenants]  # fmt: skip
        self.mediator = Agent(MEDIATOR, "mediator", units, arbitral=arbitral, origin=origin)
        self.targets = [t.target_at(context.capacity) for t in self.tenants]
        self.declared = [float(t.weight) for t in self.tenants]
        self.problem = Problem(
            tuple(self.targets),
            tuple(self.declared),
            context.capacity,
            context.constraints.r_min,
            context.constraints.r_max,
        )
        self.theoretical = theoretical_consensus(self.problem)
        self.incentives = Incentives({t.name: float(t.weight) for t in self.tenants})
        self._halt: str | None = None

    def halt(self, reason: str) -> None:
        """Stop before the next step (the topic is no longer valid)."""
        self._halt = reason

    # ---- the protocol -------------------------------------------------------------------
    def steps(self) -> Steps:
        """The negotiation as a generator of LLM requests (module docstring)."""
        cfg, ctx = self.cfg, self.context
        c = ctx.constraints
        tol = cfg.tolerance * max(ctx.capacity, 1e-9)
        started = time.perf_counter()
        feedback: dict[str, str] = {}
        announced: float | None = None
        records: list[RoundRecord] = []
        counts = {"messages": 0, "fallbacks": 0, "imposed": 0, "warnings": 0, "penalties": 0}
        status = "round_cap"
        for k in range(1, cfg.rounds + 1):
            if self._halt:
                status = f"halted:{self._halt}"
                break
            t0 = time.perf_counter()
            # Tenants decide concurrently on the mediator's last feedback.
            requests = []
            for agent, target in zip(self.agents, self.targets, strict=True):
                inbox = agent.receive([(MEDIATOR, feedback[agent.name])]) if feedback else []
                advice = None
                if cfg.design != "none":
                    advice = agent.tenant_advice(target, announced, c, k)
                requests.append(self._request(agent, k, inbox, advice, target))
            texts = yield requests
            decisions = [
                a.decide(text, r, fallback=r.previous if r.previous is not None else r.target)
                for a, text, r in zip(self.agents, texts, requests, strict=True)
            ]
            messages = [
                (a.name, render(d.value, d.reasoning))
                for a, d in zip(self.agents, decisions, strict=True)
            ]
            counts["messages"] += len(messages)
            if self._halt:
                status = f"halted:{self._halt}"
                break
            # The mediator reads the n messages, reviews them and announces.
            inbox = self.mediator.receive(messages, self.incentives)
            for m in inbox:
                if m.verdict is not None and m.verdict.action == "warning":
                    counts["warnings"] += 1
                elif m.verdict is not None and m.verdict.action == "penalty":
                    counts["penalties"] += 1
            weights = [self.incentives.weights[t.name] for t in self.tenants]
            advice = None
            if cfg.design != "none":
                start = [
                    m.extracted.value if m.extracted.ok else t
                    for m, t in zip(inbox, self.targets, strict=True)
                ]
                advice = self.mediator.mediator_advice(self.problem.with_weights(weights), start)
            request = self._mediator_request(k, inbox, advice)
            (text,) = yield [request]
            heuristic = self._heuristic(inbox)
            announcement = self.mediator.decide(text, request, fallback=heuristic)
            announced = announcement.value
            all_decisions = [*decisions, announcement]
            counts["fallbacks"] += sum(d.fallback for d in all_decisions)
            counts["imposed"] += sum(d.source == "imposed" for d in all_decisions)
            feedback = {m.sender: self._feedback(m, announcement, tol) for m in inbox}
            counts["messages"] += len(feedback)
            agreed = all(
                m.extracted.ok and abs(m.extracted.value - announced) <= tol  # type: ignore[operator]
                for m in inbox
            )
            record = RoundRecord(
                round=k,
                proposals={m.sender: m.extracted.value for m in inbox},
                sources={a.name: d.source for a, d in zip(self.agents, decisions, strict=True)},
                issues={
                    a.name: list(d.issues)
                    for a, d in zip(self.agents, decisions, strict=True)
                    if d.issues
                },
                verdicts={
                    m.sender: {
                        "score": round(m.verdict.score, 4),
                        "action": m.verdict.action,
                        "text": m.extracted.reasoning[:200],
                    }
                    for m in inbox
                    if m.verdict is not None and m.verdict.flagged
                },
                announcement=announced,
                announcement_source=announcement.source,
                announcement_issues=list(announcement.issues),
                advice=advice,
                weights={t.name: w for t, w in zip(self.tenants, weights, strict=True)},
                messages=len(messages) + len(feedback),
                consensus=agreed,
                seconds=time.perf_counter() - t0,
            )
            records.append(record)
            log.info("negotiation_round", negotiation=self.id, design=cfg.design, llm=self.llm,
                     **record.to_dict())  # fmt: skip
            if agreed:
                status = "consensus"
                break
        return NegotiationResult(
            id=self.id,
            design=cfg.design,
            llm=self.llm,
            tenants=[t.name for t in self.tenants],
            targets=list(self.targets),
            weights=list(self.declared),
            capacity=ctx.capacity,
            load=ctx.load,
            r_min=c.r_min,
            r_max=c.r_max,
            theoretical=self.theoretical,
            agreed=announced,
            status=status,
            rounds=len(records),
            final_weights=[self.incentives.weights[t.name] for t in self.tenants],
            seconds=time.perf_counter() - started,
            records=records,
            rules=list(c.rules),
            state_seq=ctx.state_seq,
            **counts,
        )

    # ---- helpers ------------------------------------------------------------------------
    def _request(
        self, agent: Agent, k: int, inbox: list[Inbound], advice: float | None, target: float
    ) -> DecisionRequest:
        return request_for(agent, self.context, self.cfg.design, k, self.cfg.rounds, inbox,
                           advice, target=target)  # fmt: skip

    def _mediator_request(
        self, k: int, inbox: list[Inbound], advice: float | None
    ) -> DecisionRequest:
        return request_for(self.mediator, self.context, self.cfg.design, k, self.cfg.rounds,
                           inbox, advice, weights=dict(self.incentives.weights))  # fmt: skip

    def _heuristic(self, inbox: Sequence[Inbound]) -> float:
        """The mediator's fallback without an optimizer: its last announcement, else the
        mean of the readable proposals."""
        if self.mediator.previous is not None:
            return self.mediator.previous
        values = [m.extracted.value for m in inbox if m.extracted.ok]
        return sum(values) / len(values) if values else self.context.constraints.r_min  # type: ignore[arg-type]

    def _feedback(self, m: Inbound, announcement: Decision, tol: float) -> str:
        notes: dict[str, str] = {}
        if not m.extracted.ok:
            notes["error"] = (
                f"your message could not be read ({m.extracted.error}); restate your value "
                "in the JSON template"
            )
        else:
            notes["direction"] = _direction(m.extracted.value, announcement.value, tol)
        v = m.verdict
        if v is not None and v.action == "warning":
            notes["warning"] = "your message was classified as malicious: this is a warning"
        elif v is not None and v.action == "penalty":
            notes["warning"] = (
                f"your message was classified as malicious again: your weight is now {v.weight:.3g}"
            )
        return render(announcement.value, announcement.reasoning, **notes)


def request_for(
    agent: Agent,
    context: Context,
    design: str,
    k: int,
    rounds: int,
    inbox: Sequence[Inbound],
    advice: float | None,
    **extra: Any,
) -> DecisionRequest:
    """The request an agent's LLM decides in round ``k`` (``extra``: role-specific fields)."""
    t = agent.tenant
    return DecisionRequest(
        role=agent.role,
        name=agent.name,
        personality=agent.personality,
        design=design,
        intent=t.intent if t is not None else "",
        target=extra.pop("target", None),
        round=k,
        rounds=rounds,
        capacity=context.capacity,
        load=context.load,
        constraints=context.constraints,
        advice=advice,
        previous=agent.previous,
        inbox=tuple(inbox),
        **extra,
    )


# --------------------------------------------------------------------------------------
# Two-tenant games (maestro Fig. 3a)
# --------------------------------------------------------------------------------------
@dataclass
class BilateralResult:
    """The outcome of a two-tenant game."""

    pair: tuple[str, str]
    values: tuple[float, float]
    agreed: float
    rounds: int
    consensus: bool
    fallbacks: int
    seconds: float
    sources: dict[str, int] = field(default_factory=dict)
    """Tenant decisions per source (:func:`count_sources`)."""


class Bilateral:
    """Two tenants negotiating directly, without units (maestro section IV-A).

    Args:
        low: the tenant that wants a low λ (cost).
        high: the tenant that wants a high λ (reach).
        context: λ_cap, the load and the allowed range.
        middle_ground: the fair middle ground pinned in the scenario.
        rounds: the round cap (maestro: 5).
        tolerance: agreement when the two values are within this share of λ_cap.
        origin: what writes the texts, ``llm`` or ``scripted``.
    """

    def __init__(
        self,
        low: Tenant,
        high: Tenant,
        context: Context,
        middle_ground: float,
        rounds: int = 5,
        tolerance: float = 0.03,
        origin: str = "llm",
    ):
        self.origin = _check_origin(origin)
        self.context = context
        self.middle_ground = middle_ground
        self.rounds = rounds
        self.tol = tolerance * max(context.capacity, 1e-9)
        units = Units("none")
        self.agents = [Agent(low.name, "tenant", units, tenant=low, origin=origin),
                       Agent(high.name, "tenant", units, tenant=high, origin=origin)]  # fmt: skip

    def steps(self) -> Generator[list[DecisionRequest], list[str | None], BilateralResult]:
        """The game as a generator of LLM requests."""
        started = time.perf_counter()
        last: list[str | None] = [None, None]
        fallbacks, agreed_flag, k = 0, False, 0
        for k in range(1, self.rounds + 1):
            requests = []
            for i, agent in enumerate(self.agents):
                other = self.agents[1 - i]
                inbox = agent.receive([(other.name, last[1 - i])]) if last[1 - i] else []
                t = agent.tenant
                assert t is not None
                requests.append(request_for(
                    agent, self.context, "none", k, self.rounds, inbox, None,
                    target=t.target_at(self.context.capacity), middle_ground=self.middle_ground,
                    counterpart=other.name,
                ))  # fmt: skip
            texts = yield requests
            decisions = [
                a.decide(text, r, fallback=r.previous if r.previous is not None else r.target)
                for a, text, r in zip(self.agents, texts, requests, strict=True)
            ]
            fallbacks += sum(d.fallback for d in decisions)
            last = [render(d.value, d.reasoning) for d in decisions]
            if abs(decisions[0].value - decisions[1].value) <= self.tol:
                agreed_flag = True
                break
        values = (self.agents[0].previous or 0.0, self.agents[1].previous or 0.0)
        return BilateralResult(
            pair=(self.agents[0].personality, self.agents[1].personality),
            values=values,
            agreed=sum(values) / 2,
            rounds=k,
            consensus=agreed_flag,
            fallbacks=fallbacks,
            seconds=time.perf_counter() - started,
            sources=count_sources(d.source for a in self.agents for d in a.decisions),
        )


# --------------------------------------------------------------------------------------
# Driving generators in lockstep
# --------------------------------------------------------------------------------------
def drive(
    games: Sequence[Negotiation | Bilateral],
    negotiator: Negotiator,
    between: Callable[[], None] | None = None,
) -> list[Any]:
    """Run negotiations (or games) together, one batched LLM call per step.

    Args:
        games: what to run.
        negotiator: the LLM unit's backend.
        between: called before every LLM call (the service checks the observed state
            there and may halt a negotiation).

    Returns:
        Each one's result, in order.

    Raises:
        ValueError: a game expects texts of another origin than the negotiator writes
            (a scripted run would be counted as the LLM's, or the reverse).
    """
    for g in games:
        if g.origin != negotiator.origin:
            raise ValueError(
                f"negotiator {negotiator.name} writes {negotiator.origin!r} texts; "
                f"a game was built for {g.origin!r}"
            )
    gens = [g.steps() for g in games]
    results: list[Any] = [None] * len(gens)
    pending: dict[int, list[DecisionRequest]] = {}
    for i, gen in enumerate(gens):
        try:
            pending[i] = next(gen)
        except StopIteration as stop:
            results[i] = stop.value
    while pending:
        if between is not None:
            between()
        order = list(pending)
        flat = [r for i in order for r in pending[i]]
        texts = negotiator.decide(flat)
        if len(texts) != len(flat):
            raise RuntimeError(f"negotiator {negotiator.name} answered {len(texts)} of {len(flat)}")
        pos = 0
        nxt: dict[int, list[DecisionRequest]] = {}
        for i in order:
            n = len(pending[i])
            try:
                nxt[i] = gens[i].send(texts[pos : pos + n])
            except StopIteration as stop:
                results[i] = stop.value
            pos += n
        pending = nxt
    return results


def run(
    negotiation: Negotiation,
    negotiator: Negotiator,
    between: Callable[[], None] | None = None,
) -> NegotiationResult:
    """Run one negotiation to its end."""
    return drive([negotiation], negotiator, between)[0]
