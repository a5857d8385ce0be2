"""Machine-checkable parts of the INTENTS.md rubric, used to check synthetic samples.

A synthetic sample of the augmentation loop (:mod:`.augment`) must carry a label that
the rubric allows. Two kinds of checks live here:

- format (rule 1, rules 3-5): non-negative multiples of 0.05 summing to 1, every weight
  within [0.05, 0.60] (an emphasis tops out at 0.60, a waived factor keeps 0.05);
- cues: phrases that INTENTS.md lists as raising or waiving a factor. A text that waives
  a factor ("no rush", "rough draft is fine") must not carry a label that leans on it;
  a text that explicitly asks for a factor ("asap", "verbatim", "must not fail") must
  not carry a label that drops it below neutral.

The cue lists are written from the rubric's table and its rules 3-5; they are a
checker's lexicon, not a labeller: a phrase missing from them makes no check fail.
``tests/rapp_intent/test_iokd_construction.py`` holds the rules to the project's own
labels: they must accept almost every human-labelled training sample.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

FACTORS = ("C", "B", "L", "P")
FACTOR_NAMES = {
    "C": "capability (quality of the result)",
    "B": "information loss (exact content)",
    "L": "latency (speed)",
    "P": "outage probability (must not fail)",
}
STEP = 0.05
MIN_WEIGHT = 0.05
MAX_WEIGHT = 0.60
WAIVED_MAX = 0.15
"""A factor the text waives may carry at most this weight (rule 5 says 0.05-0.10)."""
RAISED_MIN = 0.20
"""A factor the text explicitly asks for carries at least this weight (rules 3, 4)."""

_RAISE = {
    "C": [
        r"\bthorough(ly)?\b",
        r"\bin[- ]depth\b",
        r"\bpolished\b",
        r"\bprofessional(ly)?\b",
        r"\bpublication[- ]ready\b",
        r"\bhigh[- ]quality\b",
        r"\bbest (possible )?(quality|model|you can)\b",
        r"\bphoto[- ]?real(istic)?\b",
        r"\bhigh[- ]fidelity\b",
        r"\bcinematic\b",
        r"\bwell[- ]argued\b",
        r"\bnuanced\b",
        r"\binsightful\b",
        r"\bexpert[- ]level\b",
        r"\bno compromises?\b",
    ],
    "B": [
        r"\bverbatim\b",
        r"\bword[- ]for[- ]word\b",
        r"\bcharacter[- ]for[- ]character\b",
        r"\bbit[- ]exact\b",
        r"\bexact(ly)? (as|the same)\b",
        r"\bevery (single )?(number|figure|digit|value|dose|dosage|amount|decimal)s?\b",
        r"\bnot a single (character|digit|number)\b",
        r"\bdon'?t garble\b",
        r"\bwithout (any )?(error|typo)s?\b",
    ],
    "L": [
        r"\basap\b",
        r"\bright now\b",
        r"\bimmediately\b",
        r"\breal[- ]time\b",
        r"\binstant(ly)?\b",
        r"\bno lag\b",
        r"\bzero lag\b",
        r"\bas fast as\b",
        r"\bas quick(ly)? as\b",
        r"\bhurry\b",
        r"\bin (\d+|a few|ten|five|two|thirty) (seconds|secs|sec|minutes|mins|min)\b",
    ],
    "P": [
        r"\b(must|can'?t|cannot|can not|must not) (ever )?(fail|go down|drop)\b",
        r"\bmission[- ]critical\b",
        r"\bno downtime\b",
        r"\bzero downtime\b",
        r"\b24/7\b",
        r"\bwithout (any )?interruption\b",
        r"\bnever (drop|fail|stop|go down)s?\b",
        r"\bnothing matters more\b",
        r"\b(has|have|needs?|must) to stay (up|online|connected|live)\b",
        r"\b(can'?t|cannot|must not|mustn'?t) (crash|drop out|go offline|be interrupted)\b",
        r"\bwhatever happens\b",
    ],
}

_WAIVE = {
    "C": [
        r"\brough draft\b",
        r"\b(doesn'?t|does not|don'?t|do not) (have|need) to be (pretty|polished|fancy)\b",
        r"\bnothing fancy\b",
        r"\b(don'?t|do not) need anything fancy\b",
        r"\blow[- ]poly\b",
        r"\bpotato (graphics|quality)\b",
        r"\bquality (is|doesn'?t) (secondary|matter)\b",
        r"\bquality and \w+ are secondary\b",
        r"\bquick and dirty\b",
    ],
    "B": [
        r"\brough (numbers|figures|estimate)\b",
        r"\bballpark\b",
        r"\bapproximate (translation|numbers|figures) (is|are) fine\b",
        r"\btypos (are )?(fine|ok|okay)\b",
        r"\b(a few )?wrong words (are )?(fine|ok|okay)\b",
    ],
    "L": [
        r"\bno rush\b",
        r"\bno hurry\b",
        r"\bnot in a hurry\b",
        r"\bnot urgent\b",
        r"\b(i )?(don'?t|do not) mind waiting\b",
        r"\bcan take (hours|all night|the weekend|a while|days)\b",
        r"\bwhenever (it'?s|you'?re) (done|ready)\b",
        r"\btake (your|all the) time\b",
        r"\b(delay|latency|speed) (is|are) secondary\b",
        r"\band (delay|latency|speed) are secondary\b",
    ],
    "P": [
        r"\bif it drops,? i'?ll (just )?(restart|retry)\b",
        r"\b(it'?s|this is) (just )?a (drill|rehearsal|sandbox|test run)\b",
        r"\bfine if it fails\b",
        r"\bif it (crashes|drops|fails),? (it'?s )?(no big deal|fine|whatever|no problem)\b",
        r"\bno big deal if it (crashes|drops|fails)\b",
    ],
}

_RAISE_RE = {f: re.compile("|".join(p), re.IGNORECASE) for f, p in _RAISE.items()}
_WAIVE_RE = {f: re.compile("|".join(p), re.IGNORECASE) for f, p in _WAIVE.items()}


@dataclass(frozen=True)
class Cues:
    """Rubric cues found in a text: the factors it explicitly raises and waives."""

    raised: frozenset[str]
    waived: frozenset[str]


def find_cues(text: str) -> Cues:
    """Factors whose raise or waive phrases occur in ``text``.

    A factor both raised and waived by the text ("take your time, make it thorough")
    counts as waived only for the waived factor; phrases are matched case-insensitively.
    """
    norm = text.replace("\u2019", "'")
    waived = frozenset(f for f in FACTORS if _WAIVE_RE[f].search(norm))
    raised = frozenset(f for f in FACTORS if _RAISE_RE[f].search(norm) and f not in waived)
    return Cues(raised=raised, waived=waived)


def format_problems(s: Sequence[float]) -> list[str]:
    """Rubric rule 1 and the ranges of rules 3-5: what is wrong with a label's numbers."""
    problems = []
    if len(s) != 4:
        return [f"the vector has {len(s)} weights, not 4"]
    if abs(sum(s) - 1.0) > 1e-3:
        problems.append(f"the weights sum to {sum(s):.3f}, not 1")
    for f, w in zip(FACTORS, s, strict=True):
        if abs(w / STEP - round(w / STEP)) > 1e-4:
            problems.append(f"w_{f}={w:g} is not a multiple of 0.05")
        if w < MIN_WEIGHT - 1e-9 or w > MAX_WEIGHT + 1e-9:
            problems.append(f"w_{f}={w:g} is outside [{MIN_WEIGHT}, {MAX_WEIGHT}]")
    return problems


def label_problems(text: str, s: Sequence[float]) -> list[str]:
    """Contradictions between a text's cues and its label (empty list: consistent)."""
    cues = find_cues(text)
    problems = []
    for i, f in enumerate(FACTORS):
        if f in cues.waived and s[i] > WAIVED_MAX + 1e-9:
            problems.append(
                f"the request waives {FACTOR_NAMES[f]} but w_{f}={s[i]:g} > {WAIVED_MAX}"
            )
        if f in cues.raised and s[i] < RAISED_MIN - 1e-9:
            problems.append(
                f"the request asks for {FACTOR_NAMES[f]} but w_{f}={s[i]:g} < {RAISED_MIN}"
            )
    return problems


def cue_problems(source: str, candidate: str) -> list[str]:
    """Cues of ``source`` that ``candidate`` lost or reversed (a rewrite keeps them)."""
    before, after = find_cues(source), find_cues(candidate)
    problems = []
    for f in sorted(before.raised - after.raised):
        problems.append(f"it dropped the request for {FACTOR_NAMES[f]}")
    for f in sorted(before.waived - after.waived):
        problems.append(f"it dropped the waiver of {FACTOR_NAMES[f]}")
    for f in sorted(after.raised & before.waived):
        problems.append(f"it asks for {FACTOR_NAMES[f]}, which the original waives")
    for f in sorted(after.waived & before.raised):
        problems.append(f"it waives {FACTOR_NAMES[f]}, which the original asks for")
    return problems


def describe(s: Sequence[float]) -> str:
    """A short rubric reading of a vector, e.g. ``latency 0.55 (emphasised), ...``."""
    parts = []
    for f, w in sorted(zip(FACTORS, s, strict=True), key=lambda fw: -fw[1]):
        if w >= 0.45:
            level = "explicitly emphasised"
        elif w >= 0.35:
            level = "emphasised"
        elif w <= 0.10:
            level = "waived"
        else:
            level = "background"
        parts.append(f"{FACTOR_NAMES[f].split(' (')[0]} {w:.2f} ({level})")
    return ", ".join(parts)
