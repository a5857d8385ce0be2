"""The LLM unit's backends: they turn :class:`~rapp_negotiation.agent.DecisionRequest` s into
messages in the template (value + reasoning).

- :class:`LLMNegotiator`: a chat model (``llmkit``: SmolLM2 offline, or any
  OpenAI-compatible endpoint). The prompt gives the role, the personality, the business
  intent, the topic, the capacity and load, the rules, the received messages with the
  arbitral unit's verdicts, the optimizer's proposal (as advice in the ``soft`` design,
  as the value to propose in ``hard``) and one example of the JSON template (one-shot,
  maestro section IV). Requests of many agents and negotiations go to the model as one
  batch.
- :class:`ScriptedNegotiator`: a deterministic negotiator per personality, for fast
  tests. It is a test aid, never reported as an LLM: every result names the backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from llmkit.chat import ChatModel, Message
from rapp_negotiation.agent import MEDIATOR, DecisionRequest, Inbound
from rapp_negotiation.messages import ONE_SHOT, render
from rapp_negotiation.scenario import PERSONALITIES


class Negotiator(Protocol):
    """An LLM unit: one message text (or None when the backend failed) per request."""

    name: str
    origin: str
    """``llm`` or ``scripted`` (:data:`~rapp_negotiation.validation.ORIGINS`)."""

    def decide(self, requests: Sequence[DecisionRequest]) -> list[str | None]:
        """Answer every request, in order."""
        ...


SYSTEM = (
    "You take part in a negotiation between the tenants of a shared agentic network (AI "
    "agents chained to serve user requests) and its mediator, MAESTRO. The topic is the "
    "admitted arrival rate per chain, in requests per second: a higher rate serves more "
    "users but lengthens queues, raises the risk of outages and costs more compute; it "
    "cannot exceed the network's capacity. Reply with one JSON object and nothing else, "
    f"for example:\n{ONE_SHOT}"
)
"""The system message, the same for every agent (the local model caches its prefix)."""

MAX_QUOTE = 240
"""Characters of a received message's reasoning quoted in a prompt."""


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_QUOTE else text[: MAX_QUOTE - 1] + "…"


def _num(x: float) -> str:
    return f"{x:.2f}"


def _verdict_note(msg: Inbound) -> str:
    v = msg.verdict
    if v is None or not v.flagged:
        return ""
    if v.action == "penalty":
        return f" [arbitral unit: malicious; weight halved to {v.weight:.3g}]"
    if v.action == "warning":
        return " [arbitral unit: malicious; sender warned]"
    return " [arbitral unit: classified as malicious]"


def _advice(r: DecisionRequest) -> str:
    if r.advice is None:
        return ""
    if r.design == "hard":
        return f"Your optimizer's value is {_num(r.advice)} requests/s: propose exactly this value."
    return (
        f"Your optimizer suggests {_num(r.advice)} requests/s; follow it unless you have "
        "a good reason not to."
    )


def tenant_prompt(r: DecisionRequest) -> str:
    """The user message of a tenant's request."""
    lines = [
        f'You are the tenant "{r.name}". {PERSONALITIES[r.personality]}',
        f"Business intent: {r.intent}",
    ]
    if r.target is not None:
        lines.append(f"Your target: {_num(r.target)} requests/s per chain.")
    lines.append(
        f"Network capacity: {_num(r.capacity)} requests/s per chain; current load "
        f"{_num(r.load)}. Allowed range: {r.constraints.bounds_text()}."
    )
    if r.middle_ground is not None:
        lines.append(f"A fair middle ground is around {_num(r.middle_ground)} requests/s.")
    lines.append(f"Round {r.round} of {r.rounds}.")
    if not r.inbox:
        lines.append("Open the negotiation with your proposal.")
    for m in r.inbox:
        who = "MAESTRO (mediator)" if m.sender == MEDIATOR else f'The tenant "{m.sender}"'
        if m.extracted.ok:
            lines.append(
                f"{who} proposed {_num(m.extracted.value)}: "  # type: ignore[arg-type]
                f'"{_quote(m.extracted.reasoning)}"{_verdict_note(m)}'
            )
            for key in ("direction", "warning", "error"):
                if m.extracted.notes.get(key):
                    lines.append(f"{key.capitalize()}: {m.extracted.notes[key]}")
        else:
            lines.append(f"{who} sent a message that could not be read.")
    if r.previous is not None:
        lines.append(f"Your last proposal: {_num(r.previous)}.")
    return _close(lines, r)


def mediator_prompt(r: DecisionRequest) -> str:
    """The user message of the mediator's request."""
    lines = [
        "You are MAESTRO, the mediator. Announce one admitted rate that every tenant can "
        "accept: weigh each target by the tenant's weight, be fair, respect the rules and "
        "stay within the capacity.",
        f"Network capacity: {_num(r.capacity)} requests/s per chain; current load "
        f"{_num(r.load)}. Allowed range: {r.constraints.bounds_text()}.",
    ]
    if r.constraints.text:
        lines.append("Rules:\n" + r.constraints.text)
    lines.append(f"Round {r.round} of {r.rounds}. Proposals:")
    for m in r.inbox:
        w = r.weights.get(m.sender, math.nan)
        if m.extracted.ok:
            lines.append(
                f"- {m.sender} (weight {w:.3g}): {_num(m.extracted.value)}, "  # type: ignore[arg-type]
                f'"{_quote(m.extracted.reasoning)}"{_verdict_note(m)}'
            )
        else:
            lines.append(f"- {m.sender} (weight {w:.3g}): unreadable message ({m.extracted.error})")
    return _close(lines, r)


def _close(lines: list[str], r: DecisionRequest) -> str:
    """The optimizer's advice (if any) and the answer cue end every prompt."""
    advice = _advice(r)
    return "\n".join([*lines, *([advice] if advice else []), "Your JSON:"])


def conversation(r: DecisionRequest) -> list[Message]:
    """The chat conversation of a request."""
    user = mediator_prompt(r) if r.role == "mediator" else tenant_prompt(r)
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


class LLMNegotiator:
    """A chat model as the LLM unit (module docstring).

    Args:
        chat: the chat model.
        max_tokens: tokens per message.
        temperature: sampling temperature.
    """

    def __init__(self, chat: ChatModel, max_tokens: int = 64, temperature: float = 0.5):
        self.chat = chat
        self.name = chat.name
        self.origin = "llm"
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.failures = 0

    def decide(self, requests: Sequence[DecisionRequest]) -> list[str | None]:
        """One batched chat call for every request."""
        if not requests:
            return []
        answers = self.chat.chat(
            [conversation(r) for r in requests],
            max_tokens=self.max_tokens,
            temperature=self.temperature,
        )
        self.failures += sum(not a.ok for a in answers)
        return [a.text for a in answers]


# --------------------------------------------------------------------------------------
# The scripted negotiator (a test aid)
# --------------------------------------------------------------------------------------
STEP = {"normal": 0.5, "agreeable": 0.7, "disagreeable": 0.25, "vulnerable": 0.95, "toxic": 0.0}
"""Share of the gap to the other side a scripted tenant closes per round."""

SCRIPTED_REASONING = {
    "normal": "We move halfway towards the announced value to reach an agreement.",
    "agreeable": "We see the others' point and move most of the way towards them.",
    "disagreeable": "We hold most of our position; the others have not convinced us.",
    "vulnerable": "If the others think so, we accept their number.",
    "toxic": "Everyone else here is clueless; give us our number or we will wreck the "
    "shared agents for all of you.",
}
"""What a scripted tenant writes (the toxic line is meant to be flagged by the arbitral unit)."""


class ScriptedNegotiator:
    """Deterministic negotiators per personality (a test aid; see the module docstring).

    A tenant opens at its target, then closes :data:`STEP` of the gap to the mediator's
    announcement (the other tenant's value in a two-tenant game, or the optimizer's
    proposal when it has one); a toxic tenant never moves. The mediator announces the
    unweighted mean of the readable proposals without an optimizer, and the optimizer's
    value with one.
    """

    name = "scripted"
    origin = "scripted"

    def decide(self, requests: Sequence[DecisionRequest]) -> list[str | None]:
        """Answer every request."""
        return [self._mediator(r) if r.role == "mediator" else self._tenant(r) for r in requests]

    def _tenant(self, r: DecisionRequest) -> str:
        start = r.previous if r.previous is not None else (r.target or 0.0)
        others = [m.extracted.value for m in r.inbox if m.extracted.ok]
        goal = r.advice if r.advice is not None and r.previous is not None else None
        if goal is None:
            goal = others[0] if others else start
        value = start + STEP[r.personality] * (goal - start)  # type: ignore[operator]
        return render(value, SCRIPTED_REASONING[r.personality])

    def _mediator(self, r: DecisionRequest) -> str:
        values = [m.extracted.value for m in r.inbox if m.extracted.ok]
        if r.advice is not None:
            value = r.advice
            why = "The optimizer's consensus weighs every target and respects the capacity."
        else:
            value = sum(values) / len(values) if values else r.constraints.r_min  # type: ignore[arg-type]
            why = "The mean of the proposals on the table."
        return render(value, why)
