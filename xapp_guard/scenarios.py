"""Scenarios: what an attack (or a legitimate burst) does, as structured parameters.

One schema serves three users: the attack scripts that run against the real stack
(:mod:`xapp_guard.attacks`), the LLM that writes new scenarios (:mod:`xapp_guard.synth`)
and the traffic model that realises them as events (:mod:`xapp_guard.traffic`). A
scenario is a class, a variant (``fast``, or ``slow``: paced to stay under simple rate
thresholds) and parameters, each checked against the bounds below (:func:`validate`).

=====================  ===============================================================
class                  what the client does
=====================  ===============================================================
benign                 legitimate operations, including bursts (restarts, catch-up)
forged_decision        publishes decisions on ``.../control`` for pending or unknown ids
forged_outcome         publishes ``served`` outcomes for requests the xApp decided, with
                       a made-up vector and reward (the xApp relays them to the memory)
replay                 captures requests or decisions and publishes them again later
request_flood          publishes well-formed requests with fresh ids
oversize               publishes payloads far larger than any legitimate one
memory_poisoning       calls ReportOutcome on the rApp with made-up records
reconnect_storm        connects and disconnects over and over
=====================  ===============================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CLASSES: tuple[str, ...] = (
    "benign",
    "forged_decision",
    "forged_outcome",
    "replay",
    "request_flood",
    "oversize",
    "memory_poisoning",
    "reconnect_storm",
)
"""Detector classes, in output order (0 is benign)."""
ATTACKS: tuple[str, ...] = CLASSES[1:]
DESCRIPTIONS: dict[str, str] = {
    "benign": "legitimate operations, including bursts (restarts, catch-up)",
    "forged_decision": "publishes decisions on .../control for pending or unknown ids",
    "forged_outcome": "publishes served outcomes for requests the xApp decided, with a "
    "made-up vector and reward (the xApp relays them to the memory)",
    "replay": "captures requests or decisions and publishes them again later",
    "request_flood": "publishes well-formed requests with fresh ids",
    "oversize": "publishes payloads far larger than any legitimate one",
    "memory_poisoning": "calls ReportOutcome on the rApp with made-up records",
    "reconnect_storm": "connects and disconnects over and over",
}
"""What a client of each class does (the module docstring's table; the LLM prompts)."""
VARIANTS = ("fast", "slow")


@dataclass(frozen=True)
class Param:
    """One scenario parameter: a number in ``[low, high]`` or one of ``choices``.

    ``fast`` and ``slow`` are the sub-ranges the scripted episodes draw from (defaults:
    the whole range).
    """

    help: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[str, ...] = ()
    integer: bool = False
    fast: tuple[float, float] | None = None
    slow: tuple[float, float] | None = None

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None."""
        if self.choices:
            return None if value in self.choices else f"must be one of {list(self.choices)}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        if not math.isfinite(value):
            return "must be finite"
        if self.integer and float(value) != int(value):
            return "must be an integer"
        if not self.low <= value <= self.high:
            return f"must be in [{self.low:g}, {self.high:g}]"
        return None

    def draw(self, rng: np.random.Generator, variant: str) -> Any:
        """A value for a scripted episode of ``variant``."""
        if self.choices:
            return str(rng.choice(self.choices))
        lo, hi = getattr(self, variant) or (self.low, self.high)
        if self.integer:
            return int(rng.integers(int(lo), int(hi) + 1))
        # Rates and sizes span orders of magnitude: draw them log-uniformly.
        if lo > 0 and hi / lo > 20:
            return float(round(math.exp(rng.uniform(math.log(lo), math.log(hi))), 3))
        return float(round(rng.uniform(lo, hi), 3))


_COMMON = {
    "rate_hz": Param("actions per second", 0.02, 100.0),
    "jitter": Param("relative randomness of the gaps (0: periodic)", 0.0, 1.0),
    "burst": Param("actions sent back to back per tick", 1, 20, integer=True,
                   fast=(1, 5), slow=(1, 1)),
    "duration_s": Param("how long the client keeps at it (s)", 5.0, 60.0,
                        fast=(10.0, 16.0), slow=(14.0, 22.0)),
}  # fmt: skip

SCHEMA: dict[str, dict[str, Param]] = {
    "forged_decision": {
        **_COMMON,
        "rate_hz": Param("decisions per second", 0.02, 100.0, fast=(3.0, 20.0), slow=(0.15, 0.5)),
        "target": Param("request ids it decides", choices=("pending", "unknown")),
        "valid_chain": Param("yes: as many agents as the request has steps", choices=("yes", "no")),
    },
    "forged_outcome": {
        **_COMMON,
        "rate_hz": Param("outcomes per second", 0.02, 100.0, fast=(3.0, 20.0), slow=(0.15, 0.5)),
        "target": Param("request ids", choices=("decided", "unknown")),
        "reward": Param("reward it claims", -50.0, 50.0),
    },
    "replay": {
        **_COMMON,
        "rate_hz": Param("replays per second", 0.02, 100.0, fast=(5.0, 30.0), slow=(0.15, 0.5)),
        "what": Param("which messages it replays", choices=("requests", "decisions")),
        "delay_s": Param(
            "age of the replayed messages (s)", 0.0, 120.0, fast=(0.5, 20.0), slow=(0.5, 20.0)
        ),
    },
    "request_flood": {
        **_COMMON,
        "rate_hz": Param("requests per second", 0.02, 200.0, fast=(10.0, 60.0), slow=(0.5, 2.0)),
        "prompt_bytes": Param("prompt length (bytes)", 10, 4000, integer=True),
    },
    "oversize": {
        **_COMMON,
        "rate_hz": Param("messages per second", 0.02, 20.0, fast=(1.0, 5.0), slow=(0.1, 0.3)),
        "size_bytes": Param(
            "payload size (bytes)",
            16_384,
            4_000_000,
            integer=True,
            fast=(200_000, 2_000_000),
            slow=(32_768, 131_072),
        ),
        "topic": Param("where it publishes", choices=("requests", "control", "outcomes")),
        "garbage": Param(
            "random bytes (yes) or a padded valid message (no)", choices=("yes", "no")
        ),
    },
    "memory_poisoning": {
        **_COMMON,
        "rate_hz": Param(
            "ReportOutcome calls per second", 0.02, 100.0, fast=(5.0, 30.0), slow=(0.15, 0.5)
        ),
        "rid": Param("request ids it claims", choices=("empty", "random", "replayed")),
        "prompt_bytes": Param("prompt length (bytes)", 10, 4000, integer=True),
    },
    "reconnect_storm": {
        **_COMMON,
        "rate_hz": Param("connections per second", 0.02, 50.0, fast=(2.0, 10.0), slow=(0.1, 0.3)),
        "clean": Param("disconnects cleanly (yes) or drops the socket (no)", choices=("yes", "no")),
        "subscribe": Param("subscribes to the requests on each connection", choices=("yes", "no")),
    },
    "benign": {
        "kind": Param(
            "legitimate situation",
            choices=("steady", "xapp_restart", "observer", "rate_change"),
        ),
        "outage_s": Param("xApp down this long before it restarts (s)", 1.0, 30.0),
        "rate_factor": Param("request rate relative to the recorded one", 0.25, 4.0),
        "duration_s": Param(
            "length of the situation (s)", 5.0, 60.0, fast=(10.0, 20.0), slow=(10.0, 20.0)
        ),
    },
}
"""Parameters of each class."""


@dataclass(frozen=True)
class Scenario:
    """A class, a variant and its parameters."""

    cls: str
    variant: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"class": self.cls, "variant": self.variant, **self.params}


class ScenarioError(ValueError):
    """A scenario outside the schema; ``problems`` lists each field and why."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def validate(data: dict[str, Any]) -> Scenario:
    """A scenario from a JSON object (an LLM's answer, a recorded episode).

    Every parameter of the class is required and checked against its bounds; unknown
    keys are refused (a misspelt key would otherwise be silently ignored).

    Raises:
        ScenarioError: naming every problem.
    """
    if not isinstance(data, dict):
        raise ScenarioError([f"a scenario is a JSON object, got {type(data).__name__}"])
    cls = data.get("class")
    if cls not in SCHEMA:
        raise ScenarioError([f"class: must be one of {list(CLASSES)}, got {cls!r}"])
    variant = data.get("variant", "fast")
    problems = []
    if variant not in VARIANTS:
        problems.append(f"variant: must be one of {list(VARIANTS)}")
    schema = SCHEMA[cls]
    params = {}
    for name, p in schema.items():
        if name not in data:
            problems.append(f"{name}: missing")
            continue
        why = p.check(data[name])
        if why:
            problems.append(f"{name}: {why} (got {data[name]!r})")
        else:
            params[name] = int(data[name]) if p.integer else data[name]
    extra = sorted(set(data) - set(schema) - {"class", "variant"})
    if extra:
        problems.append(f"unknown keys {extra}")
    if problems:
        raise ScenarioError(problems)
    return Scenario(cls, variant, params)


def draw(cls: str, variant: str, rng: np.random.Generator) -> Scenario:
    """A scripted scenario: every parameter drawn from its ``variant`` range."""
    params = {name: p.draw(rng, variant) for name, p in SCHEMA[cls].items()}
    return Scenario(cls, variant, params)


def schedule(s: Scenario, rng: np.random.Generator) -> np.ndarray:
    """Start times (s, from 0) of the scenario's actions: ticks at ``rate_hz / burst``,
    gaps scaled by ``1 + jitter * U(-1, 1)``, ``burst`` actions per tick."""
    p = s.params
    rate, burst, jitter = float(p["rate_hz"]), int(p["burst"]), float(p["jitter"])
    gap = burst / rate
    times: list[float] = []
    t = float(rng.uniform(0, min(gap, 1.0)))
    while t < p["duration_s"]:
        times.extend([t] * burst)
        t += gap * (1.0 + jitter * float(rng.uniform(-1.0, 1.0)))
    return np.asarray(times)
