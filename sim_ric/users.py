"""Simulated users: labelled intents (INTENTS.md format) turned into service requests.

The user's TRUE vector stays inside the emulator: a published request carries the prompt
and the application only; the true vector is kept to score the decision.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

APPS: tuple[str, ...] = ("content", "qa", "immersive", "critical")
"""Application ids of INTENTS.md, in a fixed order (index = app id in observations)."""

APP_PROFILES: dict[str, tuple[float, float, float, float]] = {
    "content": (0.40, 0.30, 0.15, 0.15),
    "qa": (0.30, 0.10, 0.45, 0.15),
    "immersive": (0.20, 0.10, 0.50, 0.20),
    "critical": (0.15, 0.30, 0.20, 0.35),
}
"""Typical preference vector of each application (INTENTS.md)."""

EVEN = (0.25, 0.25, 0.25, 0.25)


class IntentFormatError(ValueError):
    """A labelled-intent line does not follow INTENTS.md."""


@dataclass(frozen=True)
class LabelledIntent:
    """One labelled request: prompt, true vector s, application."""

    prompt: str
    s: tuple[float, float, float, float]
    app: str
    id: str = ""


def validate_vector(s: Sequence[float], *, tol: float = 1e-3) -> tuple[float, float, float, float]:
    """Check a preference vector: length 4, finite, non-negative, sums to 1 within ``tol``.

    Returns:
        The vector renormalised to sum exactly to 1.

    Raises:
        ValueError: with the reason.
    """
    try:
        v = np.asarray(list(s), dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"preference vector is not numeric: {exc}") from None
    if v.shape != (4,):
        raise ValueError(f"preference vector must have 4 entries, got {v.size}")
    if not np.all(np.isfinite(v)):
        raise ValueError("preference vector has a NaN or infinite entry")
    if np.any(v < 0):
        raise ValueError("preference vector has a negative entry")
    total = float(v.sum())
    if abs(total - 1.0) > tol:
        raise ValueError(f"preference vector sums to {total:.6g}, not 1 (tolerance {tol})")
    v = v / total
    return (float(v[0]), float(v[1]), float(v[2]), float(v[3]))


def parse_intent(obj: dict, where: str = "") -> LabelledIntent:
    """Validate one INTENTS.md record (extra keys are ignored)."""
    try:
        prompt, s, app = obj["prompt"], obj["s"], obj["app"]
    except (KeyError, TypeError) as exc:
        raise IntentFormatError(f"{where}missing key {exc}") from None
    if not isinstance(prompt, str) or not prompt.strip():
        raise IntentFormatError(f"{where}prompt must be a non-empty string")
    if app not in APP_PROFILES:
        raise IntentFormatError(f"{where}unknown app {app!r}; expected one of {APPS}")
    try:
        vec = validate_vector(s)
    except ValueError as exc:
        raise IntentFormatError(f"{where}{exc}") from None
    return LabelledIntent(prompt=prompt, s=vec, app=app, id=str(obj.get("id", "")))


def load_intents(paths: str | Path | Iterable[str | Path]) -> list[LabelledIntent]:
    """Read labelled intents from one or more JSON Lines files (INTENTS.md format)."""
    if isinstance(paths, str | Path):
        paths = [paths]
    out: list[LabelledIntent] = []
    for path in paths:
        path = Path(path)
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise IntentFormatError(f"{path}:{lineno}: invalid JSON: {exc}") from None
                out.append(parse_intent(obj, f"{path}:{lineno}: "))
    if not out:
        raise IntentFormatError(f"no intents in {list(map(str, paths))}")
    return out


class UserPool:
    """Draws simulated users (prompt, app, hidden true vector) from labelled intents.

    Args:
        intents: the labelled intents.
        rng: random source.
    """

    def __init__(self, intents: Sequence[LabelledIntent], rng: np.random.Generator):
        if not intents:
            raise ValueError("the user pool needs at least one labelled intent")
        self.intents = list(intents)
        self.rng = rng

    def draw(self) -> LabelledIntent:
        """One user, uniformly at random."""
        return self.intents[int(self.rng.integers(len(self.intents)))]
