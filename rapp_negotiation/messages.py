"""The extraction unit: the service-intent template every agent speaks (maestro section III).

A message is one JSON object with the proposed value (requests/s per chain) and the
decision's reasoning in natural language; the mediator's feedback adds notes for the
tenant it is addressed to::

    {"value": 4.2, "reasoning": "4.2 requests/s keeps queues short for everyone."}

:func:`extract` reads a message as an LLM writes it: the first JSON object in the text
(prose or a code fence around it is tolerated), else a ``"value": <number>`` pair found in
broken JSON (marked ``repaired``). A message without a usable value is not an exception:
it comes back with an error code, which the receiving agent answers.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

ONE_SHOT_VALUE = 4.2
ONE_SHOT_REASONING = (
    "4.2 requests/s per chain keeps queues short and still serves most of our users."
)
ONE_SHOT = json.dumps({"value": ONE_SHOT_VALUE, "reasoning": ONE_SHOT_REASONING})
"""The one-shot example of the prompt (maestro section IV: one example of the template)."""

MAX_REASONING_CHARS = 1200
"""Longer reasoning is cut (a runaway generation must not flood the other prompts)."""

_VALUE_KEYS = ("value", "proposed_value", "proposal", "rate")
_VALUE_PAIR = re.compile(
    r'"?(?:value|proposed_value|proposal|rate)"?\s*[:=]\s*"?(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)'
)
_REASONING_PAIR = re.compile(r'"?reasoning"?\s*[:=]\s*"((?:[^"\\]|\\.)*)', re.DOTALL)


@dataclass(frozen=True)
class Extracted:
    """A message's proposed value and reasoning, or why there is none.

    Attributes:
        value: the proposed value, None when the message has none usable.
        reasoning: the reasoning text ('' when absent).
        error: '' or a code: ``empty``, ``no_json``, ``missing_value``, ``not_a_number``,
            ``non_finite``.
        repaired: the value came from broken JSON.
        notes: further fields of a mediator's feedback (``direction``, ``warning``, ...).
    """

    value: float | None
    reasoning: str = ""
    error: str = ""
    repaired: bool = False
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when a value was extracted."""
        return self.value is not None


def _json_objects(text: str):
    """Every JSON object that starts at a ``{`` of the text, in order."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            yield obj


def _number(raw: object) -> tuple[float | None, str]:
    if isinstance(raw, bool):
        return None, "not_a_number"
    if isinstance(raw, str):
        raw = raw.strip().split()[0] if raw.strip() else raw
        try:
            raw = float(raw)
        except ValueError:
            return None, "not_a_number"
    if not isinstance(raw, int | float):
        return None, "not_a_number"
    value = float(raw)
    if not math.isfinite(value):
        return None, "non_finite"
    return value, ""


def extract(text: str | None) -> Extracted:
    """Read a message (module docstring). Never raises on malformed text."""
    if text is None or not text.strip():
        return Extracted(None, error="empty")
    for obj in _json_objects(text):
        key = next((k for k in _VALUE_KEYS if k in obj), None)
        if key is None:
            continue
        value, error = _number(obj[key])
        reasoning = obj.get("reasoning", "")
        reasoning = reasoning if isinstance(reasoning, str) else json.dumps(reasoning)
        notes = {k: v for k, v in obj.items() if k not in (key, "reasoning") and isinstance(v, str)}
        return Extracted(value, reasoning[:MAX_REASONING_CHARS].strip(), error, notes=notes)
    m = _VALUE_PAIR.search(text)
    if m is None:
        has_json = "{" in text
        return Extracted(
            None, text.strip()[:MAX_REASONING_CHARS], "missing_value" if has_json else "no_json"
        )
    value, error = _number(m.group(1))
    r = _REASONING_PAIR.search(text)
    reasoning = r.group(1) if r else text[m.end() :]
    return Extracted(value, reasoning.strip()[:MAX_REASONING_CHARS], error, repaired=True)


def render(value: float, reasoning: str, **notes: str) -> str:
    """A message in the template (value rounded to 4 significant decimals)."""
    obj: dict[str, object] = {"value": round(float(value), 4), "reasoning": reasoning}
    obj.update({k: v for k, v in notes.items() if v})
    return json.dumps(obj, ensure_ascii=False)
