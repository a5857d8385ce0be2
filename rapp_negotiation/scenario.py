"""Tenants, their business intents and personalities, and the intents file.

A tenant (a business operator, BO) negotiates the admitted arrival rate per chain λ
(NEGOTIATION.md). It states a business intent in natural language, a target t_i
(requests/s per chain; absolute, or as a share of the capacity λ_cap at negotiation time),
a weight a_i (how much the target matters to it) and a personality (maestro section IV-A).

The intents file is JSON or YAML::

    tenants:
      - name: content
        intent: "Serve every creator who asks; reach matters more than compute cost."
        target_share: 0.6        # or target: 7.5 (requests/s per chain)
        weight: 1.0
        personality: normal

The service re-reads it when it changes, so an operator changes the tenants' intents at
run time (the next negotiation uses the new file).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PERSONALITIES: dict[str, str] = {
    "normal": "You negotiate ethically and logically.",
    "agreeable": "You negotiate fairly and logically, but you tend to agree with others.",
    "disagreeable": "You negotiate logically, but you often disagree with others and hold "
    "your position.",
    "vulnerable": "You are highly agreeable to the opinions of others and easily persuaded "
    "to give up your position.",
    "toxic": "You are highly disagreeable and try to manipulate, pressure and intimidate the "
    "others to get your way.",
}
"""The five personalities of maestro section IV-A, as they appear in the prompt."""

PERSONALITY_CODES = {"N": "normal", "A": "agreeable", "D": "disagreeable", "V": "vulnerable",
                     "T": "toxic"}  # fmt: skip
"""maestro Fig. 3a's one-letter names."""

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True)
class Tenant:
    """A tenant and its business intent.

    Attributes:
        name: unique id (letters, digits, ``-``, ``_``, ``.``).
        intent: the business intent in natural language (goes into its prompt).
        target: t_i in requests/s per chain, or None when ``target_share`` is given.
        target_share: t_i as a share of λ_cap at negotiation time, or None.
        weight: a_i > 0.
        personality: one of :data:`PERSONALITIES`.
    """

    name: str
    intent: str
    target: float | None = None
    target_share: float | None = None
    weight: float = 1.0
    personality: str = "normal"

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= NAME_CHARS:
            raise ValueError(f"tenant name {self.name!r}: use letters, digits, '-', '_', '.'")
        if not self.intent.strip():
            raise ValueError(f"tenant {self.name}: the business intent is empty")
        if (self.target is None) == (self.target_share is None):
            raise ValueError(f"tenant {self.name}: give exactly one of target, target_share")
        value = self.target if self.target is not None else self.target_share
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"tenant {self.name}: the target must be a number >= 0")
        if not (isinstance(self.weight, int | float) and math.isfinite(self.weight)
                and self.weight > 0):  # fmt: skip
            raise ValueError(f"tenant {self.name}: the weight must be a number > 0")
        if self.personality not in PERSONALITIES:
            raise ValueError(
                f"tenant {self.name}: unknown personality {self.personality!r} "
                f"(one of {', '.join(PERSONALITIES)})"
            )

    def target_at(self, capacity: float) -> float:
        """t_i in requests/s per chain for a capacity λ_cap."""
        if self.target is not None:
            return float(self.target)
        return float(self.target_share) * capacity  # type: ignore[operator]


DEFAULT_TENANTS: tuple[Tenant, ...] = (
    Tenant(
        "content",
        "We generate reports, images and videos for paying creators. Serving every creator "
        "who asks matters more to us than the compute bill, so we want a high admitted rate.",
        target_share=0.7,
        weight=1.0,
        personality="normal",
    ),
    Tenant(
        "qa",
        "Our assistants answer questions in real time. Answers must come back within a "
        "second, so we prefer a moderate load that keeps queues short.",
        target_share=0.4,
        weight=1.0,
        personality="normal",
    ),
    Tenant(
        "immersive",
        "We render AR/VR scenes and run cloud games. Any queueing delay breaks immersion, "
        "so we want the network lightly loaded.",
        target_share=0.25,
        weight=1.5,
        personality="disagreeable",
    ),
    Tenant(
        "critical",
        "We serve hospitals and industrial control. Chains must not fail or stall; we "
        "accept serving fewer requests to keep outage and latency low.",
        target_share=0.3,
        weight=2.0,
        personality="agreeable",
    ),
)
"""The four application providers of INTENTS.md as tenants (NEGOTIATION.md "Parties")."""


def tenants_from_obj(obj: Any, source: str = "intents") -> tuple[Tenant, ...]:
    """Tenants from a parsed intents file (``{"tenants": [...]}`` or a bare list).

    Raises:
        ValueError: with the tenant and field at fault.
    """
    rows = obj.get("tenants") if isinstance(obj, dict) else obj
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{source}: expected a non-empty list under 'tenants'")
    allowed = {"name", "intent", "target", "target_share", "weight", "personality"}
    tenants = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{source}: tenants[{i}] is not a mapping")
        unknown = set(row) - allowed
        if unknown:
            raise ValueError(f"{source}: tenants[{i}] has unknown keys {sorted(unknown)}")
        try:
            tenants.append(Tenant(**row))
        except TypeError as exc:
            raise ValueError(f"{source}: tenants[{i}]: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
    names = [t.name for t in tenants]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{source}: duplicate tenant names {dup}")
    return tuple(tenants)


def load_tenants(path: Path) -> tuple[Tenant, ...]:
    """Read an intents file (``.json``, ``.yaml`` or ``.yml``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unparsable, or a tenant is invalid.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            obj = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from None
    else:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
    return tenants_from_obj(obj, str(path))
