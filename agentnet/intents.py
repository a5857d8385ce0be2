"""Intent vocabulary of INTENTS.md: applications, their profiles, preference vectors and
the labelled-intent JSON Lines format (the one reader of it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
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

INTENTS_DIR = Path(__file__).resolve().parent / "data" / "intents"
"""The project's labelled intents (``<app>.jsonl``, INTENTS.md format plus ``id`` and
``split``); see ``LABELLING.md`` there."""

SPLITS = ("train", "heldout")
"""Values of the ``split`` key of the project's labelled intents."""


class IntentFormatError(ValueError):
    """A labelled-intent line does not follow INTENTS.md."""


@dataclass(frozen=True)
class LabelledIntent:
    """One labelled request: prompt, true vector s, application."""

    prompt: str
    s: tuple[float, float, float, float]
    app: str
    id: str = ""
    split: str = ""


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
    return LabelledIntent(
        prompt=prompt, s=vec, app=app, id=str(obj.get("id", "")), split=str(obj.get("split", ""))
    )


def read_records(paths: str | Path | Iterable[str | Path]) -> Iterator[tuple[dict, str]]:
    """The JSON objects of one or more JSON Lines files, each with ``"file:line: "``.

    Raises:
        IntentFormatError: a line is not valid JSON or not a JSON object.
        OSError: a file cannot be read.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    for path in map(Path, paths):
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}: "
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise IntentFormatError(f"{where}invalid JSON: {exc}") from None
                if not isinstance(obj, dict):
                    raise IntentFormatError(f"{where}expected a JSON object")
                yield obj, where


def load_intents(
    paths: str | Path | Iterable[str | Path], split: str | None = None
) -> list[LabelledIntent]:
    """Labelled intents (INTENTS.md JSON Lines) from one or more files, every record
    validated.

    Args:
        paths: one or more JSON Lines files.
        split: keep only the records whose ``split`` key equals this (records without
            the key, such as those of ``dev_intents.jsonl``, are then left out); None
            keeps every record.

    Raises:
        IntentFormatError: a malformed line (the message names file and line), or no
            record is left.
        OSError: a file cannot be read.
    """
    paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    out = []
    for obj, where in read_records(paths):
        intent = parse_intent(obj, where)
        if split is None or intent.split == split:
            out.append(intent)
    if not out:
        which = "" if split is None else f" of split {split!r}"
        raise IntentFormatError(f"no intents{which} in {[str(p) for p in paths]}")
    return out


def project_intent_files(directory: Path = INTENTS_DIR) -> list[Path]:
    """The project's labelled intents, one JSON Lines file per application."""
    files = sorted(Path(directory).glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no labelled intents (*.jsonl) in {directory}")
    return files


def project_intents(split: str | None = None) -> list[LabelledIntent]:
    """The project's labelled intents, optionally of one split (``train`` or ``heldout``)."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return load_intents(project_intent_files(), split)
