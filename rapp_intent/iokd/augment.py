"""Dataset augmentation (paper eq. 23) with the quality loop of Generative AI-in-the-loop.

The C-LAM writes N_aug new samples for the target application, few-shot from the
demonstrations D_demo and their chain-of-thought reasons (eq. 22). Each generation
request names a *source* demonstration of the application's users (example 1 of its
prompt) and asks for a new request with the same intent in other words.

Every candidate is checked before it may enter D_IoKD (the self-evolving synthetic data of
Generative AI-in-the-loop: generated, verified against the real data, fed back):

- it parses: a ``Request:`` line of sensible length, in English, free of chat markup;
- its label is a valid vector (length 4, finite, non-negative, sums to 1) and follows
  the rubric's format (multiples of 0.05 within [0.05, 0.60]);
- its label agrees with the rubric's cues in its own text (:func:`.rubric.label_problems`)
  and with its source: the source's label within ``max_source_distance`` (eq. 24) when
  the C-LAM labels, and the source's cues kept (:func:`.rubric.cue_problems`);
- by SBERT similarity it is neither a near-duplicate (>= ``tau_dup``) of a demonstration,
  a history prompt or an accepted synthetic sample, nor off-topic (< ``tau_topic`` to
  every demonstration it was shown).

A rejected candidate is asked for again with the reasons fed back, up to ``max_rounds``
rounds; accepted and rejected counts (with reasons) are reported per round.

Who labels: ``labels="clam"`` takes the C-LAM's vector (a large model behind the
``openai`` backend); ``labels="source"`` gives the candidate its source's vector (the
offline ``local`` backend, whose 135 M-parameter model cannot label: it only rewrites).
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from agentnet.intents import validate_vector
from llmkit.chat import ChatModel, Message
from rapp_intent.elam.base import format_vector
from rapp_intent.iokd.config import AugmentConfig
from rapp_intent.iokd.contrastive import angular_distance
from rapp_intent.iokd.cot import (
    APP_DESCRIPTIONS,
    RUBRIC_BRIEF,
    chat_in_chunks,
    feedback_turns,
    reasoning_problems,
    round_entry,
    rubric_reasoning,
)
from rapp_intent.iokd.data import Sample
from rapp_intent.iokd.filtering import Embedder, cosine_matrix
from rapp_intent.iokd.rubric import cue_problems, format_problems, label_problems

_REQUEST = re.compile(
    r"request\s*:\s*(.+?)\s*(?:\n\s*(?:reasoning|vector)\s*:|$)", re.IGNORECASE | re.DOTALL
)
_REASONING = re.compile(r"reasoning\s*:\s*(.+?)\s*(?:\n\s*vector\s*:|$)", re.IGNORECASE | re.DOTALL)
_META = (
    "example",
    "the above",
    "rewrite",
    "rewritten",
    "vector",
    "w_c",
    "as an ai",
    "would you like",
    "user:",
    "assistant:",
    "a user of",
    "this application",
    "the application is",
    "application:",
    "requirement:",
    "the request ",
    "requests from",
)
"""Phrases of a model talking about the task or to the user, not of a user's request."""
_DIGITS = re.compile(r"\d+")
_VECTOR = re.compile(r"vector[^:\n]*:\s*\[([^\[\]]*)\]", re.IGNORECASE)


@dataclass
class AugmentReport:
    """Counts of one application's augmentation."""

    app: str
    requested: int = 0
    rounds: list[dict] = field(default_factory=list)
    accepted: int = 0
    dropped: int = 0

    def to_json(self) -> dict:
        """Plain dict for the build report."""
        return {
            "app": self.app,
            "requested": self.requested,
            "accepted": self.accepted,
            "dropped": self.dropped,
            "rounds": self.rounds,
        }


@dataclass
class _Slot:
    number: int
    source: Sample
    demos: list[Sample]
    base: list[Message]
    messages: list[Message]


INSTRUCTION = (
    "You are shown numbered example requests of one application, each with the reasoning "
    "from request to preference vector. Write one new request that another user of this "
    "application could type, with the same intent as example 1: the same priorities (keep "
    "every requirement about quality, exactness, speed and reliability that example 1 "
    "states, and add none), in different words. Answer in exactly this form:\n"
    "Request: <the new request>\n"
    "Vector: [w_C, w_B, w_L, w_P]"
)


def generation_messages(app: str, demos: Sequence[Sample]) -> list[Message]:
    """The few-shot prompt of eq. 23: demonstrations with their reasons and vectors.

    The system message (rubric and instruction) is shared by every request, so a backend
    with prefix caching computes it once.
    """
    lines = [f"Application: {app} ({APP_DESCRIPTIONS[app]})", "Examples:"]
    for j, d in enumerate(demos, 1):
        lines.append(f"{j}. Request: {d.prompt}")
        if d.reasoning:
            lines.append(f"   Reasoning: {d.reasoning}")
        lines.append(f"   Vector: {format_vector(d.s)}")
    return [
        {
            "role": "system",
            "content": "You write realistic service requests that users type into an "
            "agentic network, to train smaller models.\n" + RUBRIC_BRIEF + "\n" + INSTRUCTION,
        },
        {"role": "user", "content": "\n".join(lines)},
    ]


@dataclass(frozen=True)
class Parsed:
    """A candidate as parsed from the C-LAM's answer."""

    request: str | None
    reasoning: str
    vector: tuple[float, float, float, float] | None
    vector_error: str | None


def parse_candidate(text: str) -> Parsed:
    """Split an answer into request, reasoning and vector (each may be missing)."""
    match = _REQUEST.search(text)
    if match:
        request = match.group(1)
    else:
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        request = None if re.match(r"\s*(vector|reasoning)\s*:", first, re.I) else first
    if request is not None:
        request = request.strip().strip('"\u201c\u201d').strip()
        request = request.splitlines()[0].strip() if request else ""
        request = re.sub(r"^(request|prompt)\s*:\s*", "", request, flags=re.I).strip()
    reasoning_match = _REASONING.search(text)
    reasoning = reasoning_match.group(1).strip() if reasoning_match else ""
    vec_match = _VECTOR.search(text)
    vector, error = None, "no 'Vector: [...]' line"
    if vec_match:
        try:
            values = [float(x) for x in vec_match.group(1).split(",")]
            vector = validate_vector(values)
            error = None
        except ValueError as exc:
            error = f"invalid vector ({exc})"
    return Parsed(request or None, reasoning, vector, error)


def _text_problems(request: str | None, config: AugmentConfig) -> list[str]:
    if not request:
        return ["no 'Request:' line in the answer"]
    problems = []
    if len(request.split()) < config.min_words:
        problems.append(f"the request is too short (fewer than {config.min_words} words)")
    if len(request) > config.max_chars:
        problems.append(f"the request is longer than {config.max_chars} characters")
    if "<|" in request or "im_start" in request or "im_end" in request:
        problems.append("the request contains chat markup")
    low = request.lower()
    meta = [m for m in _META if m in low]
    if meta:
        problems.append(f"it talks about the task instead of being a request ({meta[0]!r})")
    letters = [c for c in request if c.isalpha()]
    if letters and sum(c.isascii() for c in letters) / len(letters) < 0.9:
        problems.append("the request is not in English")
    return problems


def _round_to_step(s: Sequence[float]) -> tuple[float, float, float, float]:
    return tuple(round(x, 6) for x in s)  # type: ignore[return-value]


def augment(
    app: str,
    d_u: Sequence[Sample],
    d_demo: Sequence[Sample],
    d_h: Sequence[Sample],
    clam: ChatModel,
    embed: Embedder,
    config: AugmentConfig | None = None,
    progress: bool = False,
) -> tuple[list[Sample], AugmentReport]:
    """Eq. 23 for one application: synthetic samples that pass the quality loop.

    Args:
        app: the target application.
        d_u: its user samples (sources of the generation requests).
        d_demo: D_demo = D_u u D_rel with reasoning (few-shot material).
        d_h: the history (near-duplicate check).
        clam: the C-LAM.
        embed: SBERT embedder.
        config: see :class:`AugmentConfig`.
        progress: show tqdm bars.

    Returns:
        The accepted synthetic samples and the per-round report.
    """
    config = config or AugmentConfig()
    report = AugmentReport(app=app)
    n_aug = round(config.ratio * len(d_u))
    report.requested = n_aug
    if n_aug == 0 or not d_u:
        return [], report
    rng = np.random.default_rng([config.seed, zlib.crc32(app.encode())])
    sources = [d_u[i] for i in rng.permutation(len(d_u))]
    pool = list(d_demo)
    slots: list[_Slot] = []
    per_source: Counter = Counter()
    for number in range(n_aug):
        source = sources[number % len(sources)]
        per_source[source.id] += 1
        others = [d for d in pool if d.id != source.id]
        pick = rng.choice(len(others), size=min(config.shots - 1, len(others)), replace=False)
        demos = [source] + [others[int(i)] for i in pick]
        base = generation_messages(app, demos)
        slots.append(_Slot(per_source[source.id], source, demos, base, list(base)))

    known = [h.prompt for h in d_h] + [d.prompt for d in d_demo]
    known_emb = embed(known)
    accepted_prompts: list[str] = []
    accepted_emb: list[np.ndarray] = []
    out: list[Sample] = []
    pending = slots
    for round_no in range(1, config.max_rounds + 1):
        if not pending:
            break
        answers = chat_in_chunks(
            clam,
            [s.messages for s in pending],
            config.max_tokens,
            config.temperature,
            progress,
            f"augment {app} round {round_no}",
        )
        reasons: Counter = Counter()
        still: list[_Slot] = []
        n_ok = 0
        candidates = [parse_candidate(a.text) if a.ok else None for a in answers]
        texts = [c.request if c is not None and c.request else "" for c in candidates]
        cand_emb = embed([t or " " for t in texts])
        for slot, answer, cand, emb in zip(pending, answers, candidates, cand_emb, strict=True):
            label = slot.source.s
            if cand is None:
                problems = [f"the C-LAM call failed ({answer.error})"]
            else:
                problems, label = _check(slot, cand, config)
            if not problems:
                problems = _similarity_problems(emb, slot, embed, known_emb, accepted_emb, config)
            if problems:
                reasons.update(p.split(" (")[0] for p in problems)
                if answer.ok:
                    slot.messages = slot.base + feedback_turns(
                        answer.text or "",
                        problems,
                        "Write a different request in the same form that fixes this.",
                    )
                still.append(slot)
                continue
            n_ok += 1
            accepted_prompts.append(cand.request)  # type: ignore[union-attr]
            accepted_emb.append(emb)
            sims = cosine_matrix(emb[None, :], embed([d.prompt for d in slot.demos]))[0]
            sample = Sample(
                id=f"{slot.source.id}~syn{slot.number}",
                prompt=cand.request,  # type: ignore[union-attr,arg-type]
                s=label,
                app=app,
                split="synthetic",
                origin="synthetic",
                source_id=slot.source.id,
                reasoning=cand.reasoning,  # type: ignore[union-attr]
                reasoning_by="clam",
                target_app=app,
                role="synthetic",
                similarity=float(sims.max()),
            )
            if not sample.reasoning or reasoning_problems(sample.reasoning, sample):
                # Every sample keeps an explanation (eq. 22): the rubric's when the C-LAM's
                # own is missing or fails the checks of the chain-of-thought step.
                sample = sample.with_(reasoning=rubric_reasoning(sample), reasoning_by="rubric")
            out.append(sample)
        report.rounds.append(round_entry(round_no, len(pending), n_ok, reasons))
        pending = still
    report.accepted = len(out)
    report.dropped = len(pending)
    return out, report


def _check(
    slot: _Slot, cand: Parsed, config: AugmentConfig
) -> tuple[list[str], tuple[float, float, float, float]]:
    """Text, label and consistency checks; returns the problems and the label."""
    problems = _text_problems(cand.request, config)
    source = slot.source
    if config.labels == "clam":
        if cand.vector is None:
            return [*problems, f"the label is missing or invalid: {cand.vector_error}"], source.s
        label = _round_to_step(cand.vector)
        problems += [f"the label breaks the rubric: {p}" for p in format_problems(label)]
        dis = float(angular_distance(label, source.s))
        if dis > config.max_source_distance:
            problems.append(
                f"the label {format_vector(label)} does not match the intent of example 1 "
                f"{format_vector(source.s)} (angular distance {dis:.3f})"
            )
    else:
        label = source.s
    if cand.request:
        problems += [
            f"the label contradicts the request: {p}" for p in label_problems(cand.request, label)
        ]
        problems += [f"unlike example 1, {p}" for p in cue_problems(source.prompt, cand.request)]
        longest = max(config.max_length_ratio * len(source.prompt.split()), 12)
        if len(cand.request.split()) > longest:
            problems.append(
                f"it is much longer than example 1 ({len(cand.request.split())} words, "
                f"example 1 has {len(source.prompt.split())})"
            )
        added = sorted(set(_DIGITS.findall(cand.request)) - set(_DIGITS.findall(source.prompt)))
        if added:
            problems.append(
                "it adds figures that example 1 does not have (" + ", ".join(added[:3]) + ")"
            )
    return problems, label


def _similarity_problems(
    emb: np.ndarray,
    slot: _Slot,
    embed: Embedder,
    known_emb: np.ndarray,
    accepted_emb: list[np.ndarray],
    config: AugmentConfig,
) -> list[str]:
    """SBERT checks: near-duplicate of anything known, or off-topic for its examples."""
    demo_sim = cosine_matrix(emb[None, :], embed([d.prompt for d in slot.demos]))[0]
    j = int(demo_sim.argmax())
    if demo_sim[j] >= config.tau_dup:
        return [f"it nearly copies example {j + 1} (similarity {demo_sim[j]:.2f})"]
    if demo_sim.max() < config.tau_topic:
        return [
            f"it is off-topic: it does not resemble the examples (similarity {demo_sim.max():.2f})"
        ]
    if demo_sim[0] < config.tau_source:
        return [
            f"it drifted from example 1, whose intent it had to keep (similarity {demo_sim[0]:.2f})"
        ]
    others = known_emb if not accepted_emb else np.vstack([known_emb, np.array(accepted_emb)])
    dup = float(cosine_matrix(emb[None, :], others)[0].max())
    if dup >= config.tau_dup:
        return [f"it nearly copies an existing request (similarity {dup:.2f})"]
    return []
