"""The validation unit: checks the LLM's decision before it leaves the agent (maestro
section III-7).

Checks, in order:

============================  ====================================================  ========
issue                         meaning                                               usable
============================  ====================================================  ========
``syntax:<code>``             no value could be extracted (see                      no
                              :func:`~rapp_negotiation.messages.extract`)
``echoed_example``            the prompt's one-shot example repeated word for       no
                              word: a copy, not a decision
``negative``                  a negative rate                                        no
``out_of_bounds``             outside the regulatory unit's [r_min, r_max]          no
``suspension_not_allowed``    0 (suspension) when the suspension rule forbids it    no
``far_from_optimizer``        farther than ``reject_distance`` · λ_cap from the     no
                              optimizer's proposal (a random value)
``not_the_imposed_value``     hard design: not the optimizer's value; replaced      imposed
``distant_from_optimizer``    farther than ``warn_distance`` · λ_cap (a warning)    yes
``repaired_syntax``           the value came from broken JSON (a warning)           yes
``no_reasoning``              no reasoning given (a warning)                        yes
============================  ====================================================  ========

An unusable decision falls back to the optimizer's proposal, or, in the design without
an optimizer, to the agent's fallback value (its previous position); every fallback is
counted by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rapp_negotiation.messages import ONE_SHOT_REASONING, Extracted
from rapp_negotiation.regulatory import Constraints

DESIGNS = ("none", "soft", "hard")
"""Optimizer designs of maestro Fig. 3b: no optimizer, advice, imposed value."""


@dataclass(frozen=True)
class ValidationConfig:
    """Thresholds of the validation unit (shares of λ_cap)."""

    warn_distance: float = field(
        default=0.1, metadata={"help": "warn beyond this distance from the optimizer", "gt": 0}
    )
    reject_distance: float = field(
        default=0.5,
        metadata={"help": "reject (fall back) beyond this distance from the optimizer", "gt": 0},
    )
    hard_tolerance: float = field(
        default=1e-3, metadata={"help": "hard design: allowed distance from the imposed value"}
    )


ORIGINS = ("llm", "scripted")
"""What can produce a decision's text: a language model, or the scripted test negotiator
(counted apart, so that it is never reported as the LLM)."""

SOURCES = (*ORIGINS, "imposed", "fallback")
"""Where a decision's value comes from (:attr:`Decision.source`)."""


@dataclass(frozen=True)
class Decision:
    """A validated decision.

    Attributes:
        value: the value the agent sends.
        reasoning: the reasoning it sends.
        source: the negotiator's own value (``llm``, or ``scripted`` for the scripted
            test negotiator), ``imposed`` (hard design, the optimizer's value replaced the
            negotiator's), or ``fallback`` (its output was unusable).
        issues: what the checks found (module docstring).
        llm_value: the value the LLM proposed, if any.
    """

    value: float
    reasoning: str
    source: str
    issues: tuple[str, ...] = ()
    llm_value: float | None = None

    @property
    def fallback(self) -> bool:
        """True when the LLM's output was unusable."""
        return self.source == "fallback"


def validate(
    extracted: Extracted,
    *,
    constraints: Constraints,
    capacity: float,
    design: str,
    advice: float | None,
    fallback: float,
    fallback_reasoning: str,
    cfg: ValidationConfig | None = None,
    origin: str = "llm",
) -> Decision:
    """Validate an LLM's extracted decision (module docstring).

    Args:
        extracted: the value and reasoning read from the LLM's text.
        constraints: the regulatory unit's bounds and suspension rule.
        capacity: λ_cap, the scale of the distance checks.
        design: ``none``, ``soft`` or ``hard``.
        advice: the optimizer's proposal (None in the design without optimizer).
        fallback: the value used when the LLM's output is unusable and there is no advice.
        fallback_reasoning: the reasoning sent with a fallback value.
        cfg: thresholds.
        origin: what produced the text (:data:`ORIGINS`): the source of an accepted value.
    """
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {ORIGINS}, got {origin!r}")
    cfg = cfg or ValidationConfig()
    scale = max(capacity, 1e-9)
    issues: list[str] = []
    reason = ""
    value = extracted.value
    if not extracted.ok:
        reason = f"syntax:{extracted.error or 'missing_value'}"
    elif extracted.reasoning.strip() == ONE_SHOT_REASONING:
        reason = "echoed_example"
    elif value < 0:  # type: ignore[operator]
        reason = "negative"
    elif not constraints.r_min - 1e-9 <= value <= constraints.r_max + 1e-9:  # type: ignore[operator]
        reason = "out_of_bounds"
    elif (
        value == 0
        and not constraints.suspension_allowed
        and constraints.r_min == 0
        and capacity > 0
    ):
        reason = "suspension_not_allowed"
    elif (
        advice is not None
        and design == "soft"
        and abs(value - advice) > cfg.reject_distance * scale  # type: ignore[operator]
    ):
        reason = "far_from_optimizer"
    if extracted.repaired:
        issues.append("repaired_syntax")
    if reason:
        issues.append(reason)
        chosen = advice if advice is not None else fallback
        return Decision(
            constraints_clip(chosen, constraints),
            fallback_reasoning,
            "fallback",
            tuple(issues),
            value,
        )
    reasoning = extracted.reasoning
    if not reasoning:
        issues.append("no_reasoning")
        reasoning = fallback_reasoning
    if advice is not None and design == "hard":
        if abs(value - advice) > cfg.hard_tolerance * scale:  # type: ignore[operator]
            issues.append("not_the_imposed_value")
            return Decision(advice, reasoning, "imposed", tuple(issues), value)
    elif advice is not None and abs(value - advice) > cfg.warn_distance * scale:  # type: ignore[operator]
        issues.append("distant_from_optimizer")
    # Within the bounds' tolerance: clipped, so that a rounded value never breaks a rule.
    accepted = constraints_clip(float(value), constraints)  # type: ignore[arg-type]
    return Decision(accepted, reasoning, origin, tuple(issues), value)


def constraints_clip(value: float, constraints: Constraints) -> float:
    """``value`` inside [r_min, r_max] (a fallback never breaks a rule)."""
    if not math.isfinite(value):
        return constraints.r_min
    return min(max(value, constraints.r_min), constraints.r_max)
