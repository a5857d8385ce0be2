"""LLM-made training data (the C-LAM of the Generative AI-in-the-loop case study).

Two routes, both measured:

- ``scenario``: the LLM writes an attack (or legitimate burst) as scenario parameters
  (:mod:`xapp_guard.scenarios`), which the stack model realises as sensor events and the
  featurizer turns into windows (:mod:`xapp_guard.traffic`);
- ``windows``: the LLM writes the feature windows themselves (the attacker's last
  :data:`K_WINDOWS` seconds, oldest first; earlier windows of the sequence are zero).

The prompt is one line naming the class followed by a list of examples, one JSON object
per line, which the model is asked to continue with one new line. A list to continue is
the one format SmolLM2-135M (the offline default) keeps to: with a paragraph describing
the protocol, the fields and their bounds before the list it answered 0 of 24 prompts
with JSON, with the bare list most of them. A large model behind an OpenAI-compatible
endpoint (``GUARD_LLM_BACKEND=openai``, ``GUARD_LLM_BASE_URL``, ``GUARD_LLM_MODEL``)
reads the same prompt; the bounds reach it through the feedback sentence when it
oversteps them. The examples are
recorded episodes of the class, and in the self-evolution loop also the synthetic ones
accepted so far; a feedback sentence says how the last round fared and why candidates
were refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic_settings import SettingsConfigDict

from llmkit.chat import ChatSettings, Message
from xapp_guard.features import FEATURES, INDEX, N_FEATURES, sequences
from xapp_guard.fill import Slot, choice, number, text
from xapp_guard.scenarios import CLASSES, SCHEMA, Scenario, ScenarioError, validate
from xapp_guard.traffic import StackModel

K_WINDOWS = 2
"""Windows the ``windows`` route writes per sample (short lines: a small model keeps to
the format of short lines, and writes them faster)."""

_UNIT_BOUND = {"msgs": 100_000.0, "calls": 100_000.0, "1": 100_000.0, "bytes": 1e10, "s": 1.0}
"""Largest value a feature of each unit can take in a one-second window."""


class GuardLlmSettings(ChatSettings):
    """The synthetic-traffic writer's chat model (environment prefix ``GUARD_LLM_``)."""

    model_config = SettingsConfigDict(env_prefix="GUARD_LLM_", env_file=".env", extra="ignore")


# --------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------
def scenario_prompt(cls: str, variant: str, examples: list[dict[str, Any]],
                    feedback: str = "") -> list[Message]:  # fmt: skip
    """The conversation asking for one new scenario of ``cls``/``variant``."""
    what = "legitimate situations" if cls == "benign" else f"({variant}) attack scenarios"
    head = f'Complete the list of "{cls}" {what}. {feedback}Each line is one JSON object with the same keys.'
    lines = [json.dumps({k: e[k] for k in SCHEMA[cls] if k in e}) for e in examples]
    return [{"role": "user", "content": " ".join(head.split()) + "\n" + "\n".join(lines) + "\n"}]


def window_line(seq: np.ndarray) -> str:
    """The last :data:`K_WINDOWS` windows of a sequence as one JSON line (zeros left out)."""
    out = []
    for x in seq[-K_WINDOWS:]:
        d = {}
        for i, f in enumerate(FEATURES):
            v = float(x[i])
            if v:
                d[f.name] = int(v) if v.is_integer() else round(v, 3)
        out.append(d)
    return json.dumps(out, separators=(",", ":"))


def window_prompt(cls: str, variant: str, examples: list[np.ndarray],
                  feedback: str = "") -> list[Message]:  # fmt: skip
    """The conversation asking for one new window sequence of ``cls``/``variant``."""
    head = (
        f'Complete the list of one-second traffic windows of a "{cls}" client ({variant}). '
        f"{feedback}Each line is a JSON list of its last {K_WINDOWS} windows."
    )
    lines = [window_line(x) for x in examples]
    return [{"role": "user", "content": " ".join(head.split()) + "\n" + "\n".join(lines) + "\n"}]


def scenario_template(cls: str) -> list[Slot]:
    """The scenario route's JSON with its values left open (template-constrained decoding)."""
    slots: list[Slot] = []
    for i, (name, p) in enumerate(SCHEMA[cls].items()):
        slots.append(text(("{" if i == 0 else ", ") + json.dumps(name) + ": "))
        slots.append(choice(name, p.choices) if p.choices else number(name, p.integer))
    slots.append(text("}"))
    return slots


def window_template(examples: list[np.ndarray]) -> list[Slot]:
    """The windows route's JSON: the features the examples' last windows use, in every window."""
    used = np.zeros(N_FEATURES, bool)
    for x in examples:
        used |= (x[-K_WINDOWS:] != 0).any(axis=0)
    names = [f.name for f, u in zip(FEATURES, used, strict=True) if u] or ["pub_req"]
    slots: list[Slot] = []
    for k in range(K_WINDOWS):
        for i, name in enumerate(names):
            lead = ("[{" if k == 0 else "}, {") if i == 0 else ", "
            slots.append(text(lead + json.dumps(name) + ": "))
            slots.append(number(name, integer=not name.startswith("iat_")))
    slots.append(text("}]"))
    return slots


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------
def first_json(text: str) -> Any:
    """The first JSON value in ``text`` that starts with ``{`` or ``[``.

    Raises:
        ValueError: there is none.
    """
    dec = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                return dec.raw_decode(text[i:])[0]
            except ValueError:
                continue
    raise ValueError("no JSON object in the answer")


def parse_scenario(text: str, cls: str, variant: str) -> Scenario:
    """The scenario in an answer (class and variant are the ones asked for).

    Raises:
        ScenarioError: no JSON object, or one outside the schema.
    """
    try:
        data = first_json(text)
    except ValueError as exc:
        raise ScenarioError([str(exc)]) from None
    if not isinstance(data, dict):
        raise ScenarioError(["the answer is not a JSON object"])
    if data.get("class", cls) != cls:
        raise ScenarioError([f"class: asked for {cls}, got {data.get('class')!r}"])
    return validate({**data, "class": cls, "variant": variant})


def parse_windows(text: str, length: int) -> np.ndarray:
    """The window sequence in an answer, as ``(length, N_FEATURES)``.

    Raises:
        ValueError: no list of :data:`K_WINDOWS` objects, an unknown key, a value that is
            not a number or outside what a one-second window can hold.
    """
    data = first_json(text)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise ValueError("expected a list of window objects")
    if len(data) > min(K_WINDOWS, length):
        raise ValueError(f"expected at most {K_WINDOWS} windows, got {len(data)}")
    seq = np.zeros((length, N_FEATURES), np.float32)
    start = length - len(data)
    for k, d in enumerate(data):
        for key, value in d.items():
            if key not in INDEX:
                raise ValueError(f"unknown feature {key!r}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key}: not a number ({value!r})")
            bound = _UNIT_BOUND[FEATURES[INDEX[key]].unit]
            if not 0 <= value <= bound:
                raise ValueError(f"{key}: {value} outside [0, {bound:g}]")
            seq[start + k, INDEX[key]] = value
    if not seq.any():
        raise ValueError("every window is empty")
    return seq


# --------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------
@dataclass
class Candidate:
    """One answer of the LLM and what became of it.

    Attributes:
        route: ``scenario`` or ``windows``.
        cls: the class asked for; variant: ``fast`` or ``slow``.
        text: the answer.
        scenario: the parsed scenario (scenario route).
        x: the sequences it yields ``(n, L, F)``; y: their classes (the scenario route
            adds the benign clients' windows around an attack, labelled benign).
        reason: why it was refused ("" while it stands).
    """

    route: str
    cls: str
    variant: str
    text: str
    scenario: Scenario | None = None
    x: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, N_FEATURES), np.float32))
    y: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    reason: str = ""

    @property
    def own(self) -> np.ndarray:
        """The sequences of the candidate's own class."""
        return self.x[self.y == CLASSES.index(self.cls)]


def realise(
    c: Candidate,
    model: StackModel,
    length: int,
    seed: int,
    benign_per_attack: int = 4,
) -> None:
    """Fill ``c.x``/``c.y`` (scenario route: through the stack model; windows route: the
    parsed sequence) or set ``c.reason`` when the answer cannot be used."""
    if c.route == "windows":
        try:
            seq = parse_windows(c.text, length)
        except ValueError as exc:
            c.reason = f"schema: {exc}"
            return
        c.x, c.y = seq[None], np.array([CLASSES.index(c.cls)])
        return
    try:
        c.scenario = parse_scenario(c.text, c.cls, c.variant)
    except ScenarioError as exc:
        c.reason = f"schema: {exc.problems[0]}"
        return
    ws, y, span = model.windows(c.scenario, seed)
    seqs = sequences(ws, length)
    cls = CLASSES.index(c.cls)
    if cls:
        own = np.flatnonzero(y == cls)
        rng = np.random.default_rng(seed)
        others = np.flatnonzero((y == 0) & span)
        others = rng.choice(others, size=min(benign_per_attack, len(others)), replace=False)
        keep = np.concatenate([own, np.sort(others)]).astype(np.int64)
    else:
        keep = np.flatnonzero(span & (y == 0))
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(keep, size=min(4 * benign_per_attack, len(keep)), replace=False))
    if not (y[keep] == cls).any():
        c.reason = "empty: the scenario produced no window of its class"
        return
    c.x, c.y = seqs[keep], y[keep]
