"""One agent design for tenants and the mediator (maestro Fig. 2).

An :class:`Agent` runs the seven units around its LLM:

1. extraction (:mod:`~rapp_negotiation.messages`): value and reasoning of each received
   message; a malformed message is kept with its error, to be answered;
2. arbitral (:mod:`~rapp_negotiation.arbitral`): verdicts on received reasoning and,
   where incentives apply (the mediator), warnings and halved weights;
3. regulatory (:mod:`~rapp_negotiation.regulatory`): r_min, r_max and the rules' text;
4. observability (:mod:`~rapp_negotiation.observability`): λ_cap and the load;
5. optimizer (:mod:`~rapp_negotiation.optimizer`): eq. 1, as advice (``soft``), imposed
   (``hard``) or absent (``none``);
6. LLM: forms the decision from a :class:`DecisionRequest` (a
   :class:`~rapp_negotiation.negotiators.Negotiator` backend);
7. validation (:mod:`~rapp_negotiation.validation`): checks and falls back.

Tenants and the mediator differ only in the inputs of these units: a tenant's optimizer
pulls its own target towards the mediator's announcement; the mediator's optimizer runs
eq. 1 over every tenant's declared target and current weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rapp_negotiation.arbitral import Arbitral, Incentives, Verdict
from rapp_negotiation.messages import Extracted, extract
from rapp_negotiation.optimizer import OptimizerConfig, Problem, consensus, tenant_proposal
from rapp_negotiation.regulatory import Constraints
from rapp_negotiation.scenario import Tenant
from rapp_negotiation.validation import Decision, ValidationConfig, validate

MEDIATOR = "maestro"
"""The mediator's name in messages and logs."""


@dataclass(frozen=True)
class Inbound:
    """A received message after extraction and arbitral review."""

    sender: str
    extracted: Extracted
    verdict: Verdict | None = None


@dataclass(frozen=True)
class DecisionRequest:
    """Everything an agent's LLM decides from, in one round.

    Attributes:
        role: ``tenant`` or ``mediator``.
        name: the agent's name.
        personality: the agent's personality (maestro IV-A).
        design: ``none``, ``soft`` or ``hard``.
        intent: the tenant's business intent ('' for the mediator).
        target: the tenant's target t_i (None for the mediator).
        round: this round, from 1.
        rounds: the round cap.
        capacity: λ_cap.
        load: the current λ.
        constraints: the regulatory unit's answer.
        advice: the optimizer's proposal (None without optimizer).
        previous: the agent's previous value (None in its first round).
        inbox: the messages it answers.
        weights: the mediator's current weight per tenant.
        middle_ground: the pinned fair middle ground of a two-tenant game, if any.
        counterpart: who the inbox comes from (``maestro`` or the other tenant).
    """

    role: str
    name: str
    personality: str
    design: str
    intent: str
    target: float | None
    round: int
    rounds: int
    capacity: float
    load: float
    constraints: Constraints
    advice: float | None
    previous: float | None
    inbox: tuple[Inbound, ...] = ()
    weights: dict[str, float] = field(default_factory=dict)
    middle_ground: float | None = None
    counterpart: str = MEDIATOR


@dataclass(frozen=True)
class Units:
    """The unit settings an agent runs with."""

    design: str
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    tenant_pressure: float = 50.0
    """c_t / a_i of a tenant's optimizer in its second round: how hard the first
    announcement pulls its proposal."""
    pressure_growth: float = 4.0
    """c_t grows by this factor per round (as c grows, eq. 1's proposals meet)."""


class Agent:
    """An agent of maestro Fig. 2 (module docstring).

    Args:
        name: the agent's name (a tenant's, or :data:`MEDIATOR`).
        role: ``tenant`` or ``mediator``.
        units: design and unit settings.
        tenant: the tenant's business intent (tenants only).
        arbitral: the arbitral unit (None: received reasoning is not reviewed).
        origin: what writes its texts, ``llm`` or ``scripted`` (the source of its accepted
            decisions).
    """

    def __init__(
        self,
        name: str,
        role: str,
        units: Units,
        tenant: Tenant | None = None,
        arbitral: Arbitral | None = None,
        origin: str = "llm",
    ):
        if role not in ("tenant", "mediator"):
            raise ValueError(f"role must be tenant or mediator, got {role!r}")
        if role == "tenant" and tenant is None:
            raise ValueError("a tenant agent needs its tenant")
        self.name = name
        self.role = role
        self.units = units
        self.tenant = tenant
        self.arbitral = arbitral
        self.origin = origin
        self.previous: float | None = None
        self.decisions: list[Decision] = []
        self._advice: dict[Problem, float] = {}

    @property
    def personality(self) -> str:
        """The tenant's personality ('normal' for the mediator)."""
        return self.tenant.personality if self.tenant is not None else "normal"

    # ---- units 1-2: extraction and arbitral ---------------------------------------------
    def receive(
        self, messages: Sequence[tuple[str, str | None]], incentives: Incentives | None = None
    ) -> list[Inbound]:
        """Extract every ``(sender, text)`` message and review the readable ones."""
        extracted = [(sender, extract(text)) for sender, text in messages]
        verdicts: dict[int, Verdict] = {}
        if self.arbitral is not None:
            readable = [(i, s, e.reasoning) for i, (s, e) in enumerate(extracted)
                        if e.reasoning.strip()]  # fmt: skip
            reviewed = self.arbitral.review([(s, r) for _, s, r in readable], incentives)
            verdicts = {i: v for (i, _, _), v in zip(readable, reviewed, strict=True)}
        return [Inbound(s, e, verdicts.get(i)) for i, (s, e) in enumerate(extracted)]

    # ---- unit 5: optimizer --------------------------------------------------------------
    def tenant_advice(
        self, target: float, announced: float | None, c: Constraints, round_: int
    ) -> float:
        """A tenant's optimizer proposal: its target first, then eq. 1 towards ``announced``
        with c_t / a_i = tenant_pressure · pressure_growth^(round − 2)."""
        if announced is None:
            return min(max(target, c.r_min), c.r_max)
        weight = self.tenant.weight if self.tenant is not None else 1.0
        u = self.units
        pressure = u.tenant_pressure * u.pressure_growth ** max(round_ - 2, 0)
        return tenant_proposal(target, weight, announced, pressure, c.r_min, c.r_max)

    def mediator_advice(self, problem: Problem, start: Sequence[float] | None) -> float:
        """The mediator's optimizer proposal: eq. 1's consensus over every tenant.

        The costs are convex, so the consensus does not depend on the start: it is
        computed once per problem (a new one only when a penalty changes a weight).
        """
        if problem not in self._advice:
            self._advice[problem] = consensus(problem, self.units.optimizer, start).value
        return self._advice[problem]

    # ---- unit 7: validation -------------------------------------------------------------
    def decide(self, text: str | None, request: DecisionRequest, fallback: float) -> Decision:
        """Validate the LLM's text for ``request``; remember and return the decision."""
        if request.advice is not None:
            why = f"Following the optimizer's proposal of {request.advice:.3g} requests/s."
        else:
            why = f"Keeping {fallback:.3g} requests/s until the negotiation moves."
        decision = validate(
            extract(text),
            constraints=request.constraints,
            capacity=request.capacity,
            design=request.design,
            advice=request.advice,
            fallback=fallback,
            fallback_reasoning=why,
            cfg=self.units.validation,
            origin=self.origin,
        )
        self.previous = decision.value
        self.decisions.append(decision)
        return decision
