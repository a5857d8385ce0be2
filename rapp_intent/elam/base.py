"""The common E-LAM interface: prompts (plus memory context) in, validated vectors out.

Every E-LAM family (encoder with a simplex head, generative model with a parser) produces
raw outputs; this module validates each one exactly as MODEL.md defines a valid vector
(length 4, finite, non-negative, sums to 1 within 1e-3, then renormalised, via
:func:`agentnet.intents.validate_vector`) and counts failures with their reason.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agentnet.config import elam_fee
from agentnet.intents import validate_vector

Vector = tuple[float, float, float, float]

FAILURE_REASONS = ("unparseable", "wrong_length", "non_finite", "negative", "bad_sum", "error")
"""Failure categories counted per E-LAM (the label of the failure metric)."""


@dataclass(frozen=True)
class MemoryRecord:
    """One record m_i = <p_i, s_i, r_i> of the in-context memory (paper eq. 44)."""

    prompt: str
    vector: Vector
    reward: float
    app: str
    created: float = 0.0


@dataclass(frozen=True)
class MemoryContext:
    """What an E-LAM knows about a request besides its prompt.

    Attributes:
        app: application id of the request (INTENTS.md), or None when unknown.
        records: the k most recent memory records of that application, newest first
            (paper eq. 45).
        anchor: the application's long-run robust centre (see :mod:`rapp_intent.memory`);
            the recent mean is kept within :attr:`QuarantineConfig.reference_radius` of
            it. None: no anchor (the recent mean as is).
    """

    app: str | None = None
    records: tuple[MemoryRecord, ...] = ()
    anchor: Vector | None = None

    @property
    def mean(self) -> Vector | None:
        """Mean vector of the records (the s-bar of eq. 46), or None without records."""
        if not self.records:
            return None
        sums = [sum(r.vector[i] for r in self.records) for i in range(4)]
        total = sum(sums)
        return tuple(x / total for x in sums)  # type: ignore[return-value]


@dataclass(frozen=True)
class Translation:
    """Result of one prompt: a validated vector, or a failure with its reason.

    Attributes:
        vector: the renormalised vector, None on failure.
        reason: failure category (one of :data:`FAILURE_REASONS`), None on success.
        detail: human-readable failure message.
        raw: the raw model output (generative E-LAMs), for diagnosis.
    """

    vector: Vector | None
    reason: str | None = None
    detail: str = ""
    raw: str | None = None

    @property
    def ok(self) -> bool:
        """True when the translation produced a valid vector."""
        return self.vector is not None

    @classmethod
    def failure(cls, reason: str, detail: str, raw: str | None = None) -> Translation:
        """A failed translation."""
        if reason not in FAILURE_REASONS:
            raise ValueError(f"unknown failure reason {reason!r}")
        return cls(vector=None, reason=reason, detail=detail, raw=raw)


def format_vector(vector: Sequence[float]) -> str:
    """The text of a vector in every prompt and answer, e.g. ``[0.40, 0.30, 0.15, 0.15]``."""
    return "[" + ", ".join(f"{v:.2f}" for v in vector) + "]"


def _failure_reason(values: Sequence[Any]) -> str:
    """Category of an invalid vector (checks in the order of ``validate_vector``)."""
    try:
        floats = [float(v) for v in values]
    except (TypeError, ValueError):
        return "unparseable"
    if len(floats) != 4:
        return "wrong_length"
    if not all(math.isfinite(v) for v in floats):
        return "non_finite"
    if any(v < 0 for v in floats):
        return "negative"
    return "bad_sum"


def validate_output(values: Sequence[Any], raw: str | None = None) -> Translation:
    """Validate one raw E-LAM output (MODEL.md: length 4, finite, >= 0, sum 1 within 1e-3).

    Args:
        values: the numbers the model produced.
        raw: the model's raw text, kept for diagnosis.

    Returns:
        A successful translation with the renormalised vector, or a failure.
    """
    try:
        vector = validate_vector(values)
    except ValueError as exc:
        return Translation.failure(_failure_reason(values), str(exc), raw)
    return Translation(vector=vector, raw=raw)


@dataclass(frozen=True)
class Batch:
    """Prompts as an E-LAM family receives them (:meth:`ELam._translate`).

    Attributes:
        prompts: the requests' texts.
        context: one memory context per prompt (None: no context).
        deadline: ``time.monotonic()`` value after which a slow E-LAM may stop early.
    """

    prompts: list[str]
    context: list[MemoryContext | None]
    deadline: float | None = None


@dataclass
class ElamStats:
    """Thread-safe runtime counters of one E-LAM."""

    translations: int = 0
    failures: Counter = field(default_factory=Counter)
    busy_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, results: Sequence[Translation], seconds: float) -> None:
        """Account one batch of results that took ``seconds``."""
        with self._lock:
            self.translations += len(results)
            self.busy_s += seconds
            for r in results:
                if not r.ok:
                    self.failures[r.reason] += 1

    def snapshot(self) -> dict[str, float]:
        """Counters as a flat dict of floats (the ``metrics`` map of ListModels)."""
        with self._lock:
            n = self.translations
            failed = sum(self.failures.values())
            out = {
                "translations": float(n),
                "failures": float(failed),
                "failure_rate": failed / n if n else 0.0,
                "mean_latency_ms": 1000.0 * self.busy_s / n if n else 0.0,
            }
            return out


class ELam(ABC):
    """An E-LAM: translates natural-language requests into preference vectors.

    Subclasses set :attr:`id`, :attr:`family`, :attr:`n_parameters`, :attr:`artefact`
    and :attr:`card` and implement :meth:`_translate`. Callers use :meth:`translate`,
    which validates every raw output and counts failures.

    Attributes:
        id: model id used by the service (``minilm``, ``smollm2``).
        family: ``encoder`` or ``generative``.
        n_parameters: parameter count (sets the fee, MODEL.md).
        artefact: ``"raw"`` or the sha256 of the loaded distilled artefact.
        card: the distilled artefact's model card (empty for a raw model).
        decoding_options: how outputs are produced from the weights, when that is a choice
            (smollm2: ``{"decoding": "expected", "beams": 4}``); empty when the weights
            alone determine the outputs. Together with :attr:`artefact` it identifies
            what a stored evaluation or cached prediction was made with.
    """

    id: str
    family: str
    n_parameters: int
    artefact: str = "raw"
    card: dict[str, Any]

    def __init__(self) -> None:
        self.stats = ElamStats()
        self.card = {}
        # One worker thread runs every forward pass of this E-LAM. Besides serialising
        # access to the model, it keeps torch's OpenMP team on one thread: when the
        # calls of a gRPC thread pool each use torch from their own thread, every thread
        # gets its own OpenMP team and the teams fight over the cores (measured: 2-3x
        # slower single-prompt latency).
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="elam")

    @property
    def fee(self) -> float:
        """Service fee F(kappa) of this E-LAM (MODEL.md, proportional to parameters)."""
        return elam_fee(self.n_parameters)

    @property
    def decoding_options(self) -> dict[str, Any]:
        """The output-producing options besides the weights (see the class docstring)."""
        return {}

    @property
    def variant(self) -> str:
        """Short tag of :attr:`decoding_options` (``""`` when none), e.g. ``expected-b4``."""
        d = self.decoding_options
        if not d:
            return ""
        return "-".join(f"{v}" if k == "decoding" else f"{k[0]}{v}" for k, v in d.items())

    @property
    def distilled(self) -> bool:
        """True when a distilled artefact is loaded."""
        return self.artefact != "raw"

    def translate(
        self,
        prompts: Sequence[str],
        context: Sequence[MemoryContext | None] | None = None,
        *,
        deadline: float | None = None,
    ) -> list[Translation]:
        """Translate a batch of prompts.

        Args:
            prompts: the requests' texts (already checked by the service).
            context: one memory context per prompt (None entries: no context).
            deadline: ``time.monotonic()`` value after which a slow E-LAM may stop early;
                prompts not reached are failures with reason ``error``.

        Returns:
            One :class:`Translation` per prompt, in order.
        """
        if context is None:
            context = [None] * len(prompts)
        if len(context) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(context)} contexts")
        if not prompts:
            return []
        start = time.perf_counter()
        job = self._worker.submit(self._translate, Batch(list(prompts), list(context), deadline))
        results = job.result()
        if len(results) != len(prompts):
            raise RuntimeError(f"{self.id} returned {len(results)} results for {len(prompts)}")
        self.stats.record(results, time.perf_counter() - start)
        return results

    def uncached(self, prompts: Sequence[str]) -> list[str]:
        """The distinct prompts whose translation needs more than a cache look-up and a
        cheap final step; :meth:`precompute` does that work ahead. Default: none (an
        E-LAM without such a cache translates every prompt in :meth:`translate`)."""
        return []

    def precompute(self, prompts: Sequence[str]) -> None:  # noqa: B027 (optional hook)
        """Do the cacheable part of translating ``prompts`` now, so that a later
        :meth:`translate` of them is quick; its results are the same either way.
        Default: nothing (see :meth:`uncached`)."""

    @abstractmethod
    def _translate(self, batch: Batch) -> list[Translation]:
        """Family-specific translation; every result passes through validate_output."""

    def warmup(self) -> None:
        """Run a few translations so that the first request does not pay for lazy set-up."""
        self.translate(
            ["warm-up: render the scene for my headset, no lag", "what time is it"],
            [MemoryContext(app="immersive"), None],
        )

    def estimate_seconds(self, n_prompts: int) -> float:
        """Expected time for ``n_prompts`` prompts (deadline checks), from the counters."""
        snap = self.stats.snapshot()
        per_prompt = snap["mean_latency_ms"] / 1000.0 if snap["translations"] else 0.0
        return per_prompt * n_prompts

    def metrics(self) -> dict[str, float]:
        """Runtime counters plus the numeric metrics of the model card (``card_`` prefix)."""
        out = self.stats.snapshot()
        for key, value in (self.card.get("metrics") or {}).items():
            if isinstance(value, int | float) and math.isfinite(value):
                out[f"card_{key}"] = float(value)
        return out
