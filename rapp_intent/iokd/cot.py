"""Chain-of-thought construction (paper eqs. 21, 22).

For every demonstration d = <p, s> of D_demo = D_u u D_rel (eq. 21) the C-LAM is asked
why the prompt leads to the vector, R(d) = C-LAM(f_CoT(d)) (eq. 22); the reasoning is
kept with the sample and shown with it when the C-LAM augments (eq. 23).

Each explanation is checked (non-empty, of sensible length, names the factor the vector
weights most, or says the request is neutral for an even vector, and does not name a
weight the vector does not have). A rejected explanation is asked for again with the
reason fed back, up to ``max_rounds`` times; a sample that still has none gets the
rubric's reading of its vector (``reasoning_by="rubric"``) so that no demonstration goes
without one, and the count of such fallbacks is reported.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from llmkit.chat import ChatModel, Message
from rapp_intent.elam.base import format_vector
from rapp_intent.iokd.config import CotConfig
from rapp_intent.iokd.data import Sample
from rapp_intent.iokd.rubric import FACTORS, describe, find_cues

APP_DESCRIPTIONS = {
    "content": "multimedia content generation (reports, images, video, music, slides)",
    "qa": "question answering and assistants",
    "immersive": "real-time immersive media (3D rendering, AR/VR, cloud gaming, live translation)",
    "critical": "mission-critical operations (healthcare, industrial control, emergency "
    "response, finance)",
}

RUBRIC_BRIEF = """\
A preference vector [w_C, w_B, w_L, w_P] weighs four factors of the service: w_C \
capability (quality, depth, creativity, "best model"), w_B information loss (exact \
figures, code, tables, legal or medical wording, identifiers), w_L latency (real time, \
interactive, live, deadlines, "quick", games, AR/VR, chat), w_P outage probability \
(must not fail, emergencies, payments, scheduled broadcasts, long jobs). Weights are \
multiples of 0.05 and sum to 1. No stated or implied preference: [0.25, 0.25, 0.25, \
0.25]. Explicit emphasis 0.45 to 0.60, implicit 0.35 to 0.45, two factors together about \
0.35 each, a waived factor 0.05 to 0.10; the rest leans towards the application's \
typical profile."""

_FACTOR_WORDS = {
    "C": r"capab|quality|creativ|depth|detail|insight|polish|thorough|fidelity|expert",
    "B": r"exact|accura|information loss|error|precis|verbatim|integrity|garbl|correct "
    r"(figures|numbers)|fidelity of (the )?(data|content)",
    "L": r"latency|fast|quick|speed|real[- ]time|delay|lag|urgen|immediate|time|wait",
    "P": r"outage|reliab|fail|downtime|availab|interrupt|complete|drop|continu|uptime",
}
_NEUTRAL_WORDS = r"neutral|even|no (stated |particular |specific )?preference|equal|balanced"
_NUMBER = re.compile(r"\b0?\.\d+\b")
_PERCENT = re.compile(r"\d\s*%")
_UNITS = re.compile(r"\b0?\.\d+\s*(seconds|second|secs|ms|milliseconds|minutes)\b", re.I)


@dataclass
class CotReport:
    """Counts of the chain-of-thought step."""

    rounds: list[dict] = field(default_factory=list)
    by_clam: int = 0
    by_rubric: int = 0

    def to_json(self) -> dict:
        """Plain dict for the build report."""
        return {"rounds": self.rounds, "by_clam": self.by_clam, "by_rubric": self.by_rubric}


COT_INSTRUCTION = (
    "You are given a request, its application and its preference vector. In two or three "
    "sentences, explain why the request leads to this vector: which words raise or waive "
    "which factor, and what is left to the application's typical profile."
)


def cot_messages(sample: Sample) -> list[Message]:
    """f_CoT of eq. 22: ask the C-LAM why the prompt leads to the vector.

    The system message (rubric and instruction) is the same for every sample, so a
    backend with prefix caching computes it once.
    """
    return [
        {
            "role": "system",
            "content": "You explain how service requests map to preference vectors.\n"
            + RUBRIC_BRIEF
            + "\n"
            + COT_INSTRUCTION,
        },
        {
            "role": "user",
            "content": (
                f"Application: {sample.app} ({APP_DESCRIPTIONS[sample.app]})\n"
                f"Request: {sample.prompt}\n"
                f"Vector [w_C, w_B, w_L, w_P]: {format_vector(sample.s)}\n"
                f"Rubric reading: {rubric_reasoning(sample)}"
            ),
        },
    ]


def reasoning_problems(text: str, sample: Sample, config: CotConfig | None = None) -> list[str]:
    """What is wrong with an explanation of ``sample`` (empty list: acceptable)."""
    config = config or CotConfig()
    problems = []
    words = text.split()
    if len(words) < config.min_words:
        problems.append(f"it is too short ({len(words)} words)")
    if len(words) > config.max_words:
        problems.append(f"it is too long ({len(words)} words)")
    if len(words) >= 12 and len({w.lower().strip(".,;:") for w in words}) < 0.5 * len(words):
        problems.append("it repeats itself")
    low = text.lower()
    if "<|" in text or "vector [w_" in low or "rubric reading:" in low or "request:" in low:
        problems.append("it repeats the prompt instead of explaining it")
    if _PERCENT.search(text):
        problems.append("it quotes percentages; the weights are fractions")
    if _UNITS.search(text):
        problems.append("it gives a weight a unit; weights are shares of importance")
    top = max(sample.s)
    if top - min(sample.s) < 1e-9:
        if not re.search(_NEUTRAL_WORDS, low):
            problems.append("the vector is even, but it does not say the request is neutral")
    else:
        leaders = [f for f, w in zip(FACTORS, sample.s, strict=True) if w >= top - 1e-9]
        if not any(re.search(_FACTOR_WORDS[f], low) for f in leaders):
            problems.append(
                "it does not name the factor with the largest weight ("
                + ", ".join(f"w_{f}" for f in leaders)
                + ")"
            )
    allowed = {round(x, 2) for x in sample.s}
    for num in _NUMBER.findall(text):
        if round(float(num), 2) not in allowed:
            problems.append(f"it quotes a weight {num} that the vector does not have")
            break
    return problems


def rubric_reasoning(sample: Sample) -> str:
    """The fallback explanation: the rubric's reading of the vector and the cues found."""
    cues = find_cues(sample.prompt)
    found = [f"asks for w_{f}" for f in sorted(cues.raised)]
    found += [f"waives w_{f}" for f in sorted(cues.waived)]
    cue_text = ("The request " + ", ".join(found) + ". ") if found else ""
    if max(sample.s) - min(sample.s) < 1e-9:
        return cue_text + "No preference is stated or implied, so the vector is even (neutral)."
    return cue_text + f"Rubric reading for {sample.app}: {describe(sample.s)}."


def round_entry(round_no: int, attempted: int, accepted: int, reasons: Counter) -> dict:
    """One round of a quality loop in a build report: its counts and rejection reasons."""
    return {
        "round": round_no,
        "attempted": attempted,
        "accepted": accepted,
        "rejected": attempted - accepted,
        "reasons": dict(reasons.most_common()),
    }


def feedback_turns(previous: str, reasons: Sequence[str], instruction: str) -> list[Message]:
    """The turns that feed a rejection back to the C-LAM (Generative AI-in-the-loop)."""
    return [
        {"role": "assistant", "content": previous},
        {
            "role": "user",
            "content": "That answer was rejected: " + "; ".join(reasons) + ". " + instruction,
        },
    ]


def explain(
    samples: Sequence[Sample],
    clam: ChatModel,
    config: CotConfig | None = None,
    progress: bool = False,
) -> tuple[list[Sample], CotReport]:
    """Eq. 22 for every sample: attach the C-LAM's reasoning (or the rubric fallback).

    Args:
        samples: the demonstrations (D_demo).
        clam: the C-LAM.
        config: generation and check parameters.
        progress: show a tqdm bar per round.

    Returns:
        The samples with ``reasoning``/``reasoning_by`` set, and the step's counts.
    """
    config = config or CotConfig()
    report = CotReport()
    pending = {i: cot_messages(s) for i, s in enumerate(samples)}
    done: dict[int, str] = {}
    for round_no in range(1, config.max_rounds + 1):
        if not pending:
            break
        idx = sorted(pending)
        answers = chat_in_chunks(
            clam,
            [pending[i] for i in idx],
            config.max_tokens,
            config.temperature,
            progress,
            f"CoT round {round_no}",
        )
        reasons: Counter = Counter()
        accepted = 0
        for i, answer in zip(idx, answers, strict=True):
            if not answer.ok:
                problems = [f"C-LAM call failed ({answer.error})"]
                text = ""
            else:
                text = answer.text or ""
                problems = reasoning_problems(text, samples[i], config)
            if not problems:
                done[i] = text
                del pending[i]
                accepted += 1
                continue
            reasons.update(p.split(" (")[0] for p in problems)
            if answer.ok:
                pending[i] = pending[i] + feedback_turns(
                    text, problems, "Explain it again, fixing this."
                )
        report.rounds.append(round_entry(round_no, len(idx), accepted, reasons))
    out = []
    for i, sample in enumerate(samples):
        if i in done:
            out.append(sample.with_(reasoning=done[i], reasoning_by="clam"))
            report.by_clam += 1
        else:
            out.append(sample.with_(reasoning=rubric_reasoning(sample), reasoning_by="rubric"))
            report.by_rubric += 1
    return out, report


def chat_in_chunks(
    clam: ChatModel,
    conversations: list[list[Message]],
    max_tokens: int,
    temperature: float,
    progress: bool,
    desc: str,
    chunk: int = 32,
) -> list:
    """Call the C-LAM in chunks (a progress bar that moves; cache writes as it goes)."""
    out = []
    with tqdm(total=len(conversations), desc=desc, disable=not progress, unit="call") as bar:
        for start in range(0, len(conversations), chunk):
            part = conversations[start : start + chunk]
            out += clam.chat(part, max_tokens=max_tokens, temperature=temperature)
            bar.update(len(part))
    return out
