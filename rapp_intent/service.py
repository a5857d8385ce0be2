"""The intent rApp's domain logic: checked inputs in, served vectors out.

The gRPC servicer (:mod:`rapp_intent.server`) is a thin adapter around
:class:`IntentTranslator`: it converts protobuf messages to the dataclasses below, calls
one method and maps :class:`RequestError` subclasses to status codes. Nothing here knows
about gRPC, so the same logic runs behind the CLI and in tests without a server.
"""

from __future__ import annotations

import math
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

import structlog

from agentnet.intents import validate_vector
from rapp_intent.elam.base import ELam, MemoryContext, MemoryRecord, Vector
from rapp_intent.elam.registry import Registry, UnknownModel
from rapp_intent.memory import Appended, CalibrationConfig, Memory, apply_memory
from rapp_intent.settings import RappSettings

log = structlog.get_logger(__name__)

MAX_REQUEST_ID = 128


class RequestError(Exception):
    """A request the service refuses; the message says why (shown to the caller)."""


class InvalidInput(RequestError):
    """Malformed input (gRPC INVALID_ARGUMENT)."""


class NotFound(RequestError):
    """An unknown E-LAM id (gRPC NOT_FOUND)."""


class Unavailable(RequestError):
    """The service cannot take requests now: loading or shutting down (UNAVAILABLE)."""


class DeadlineTooShort(RequestError):
    """The caller's deadline leaves too little time for the work (DEADLINE_EXCEEDED)."""


@dataclass(frozen=True)
class Limits:
    """Input limits (settings ``RAPP_MAX_*``) and the accepted application ids."""

    max_prompt_bytes: int = 4096
    max_batch: int = 256
    apps: tuple[str, ...] = ("content", "qa", "immersive", "critical")
    memory_k: int = 8


@dataclass(frozen=True)
class TranslateInput:
    """One translation request (the fields of ``TranslateRequest``)."""

    prompt: str
    model: str = ""
    app: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class TranslateOutput:
    """One served translation (the fields of ``TranslateResponse``).

    Attributes:
        failure: why the E-LAM failed (with ``fallback``), else "".
        failure_reason: failure category for metrics (``unparseable``, ...), else "".
        source: where the vector came from (see :class:`rapp_intent.memory.Served`).
    """

    preference: Vector
    model: str
    calibrated: bool
    fallback: bool
    latency_ms: float
    request_id: str = ""
    failure: str = ""
    failure_reason: str = ""
    source: str = "elam"


@dataclass(frozen=True)
class ModelInfo:
    """One entry of ListModels."""

    id: str
    parameters: int
    fee: float
    family: str
    artefact: str
    is_default: bool
    metrics: dict[str, float] = field(default_factory=dict)


# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F; tab, newline and
# carriage return are allowed. Format characters (Cf: zero-width spaces, direction marks)
# are legitimate in multilingual text and are not refused.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad_characters(text: str) -> list[str]:
    """Control characters (Unicode category Cc) other than tab, newline and return."""
    return sorted({f"U+{ord(ch):04X}" for ch in _CONTROL.findall(text)})


def check_prompt(prompt: str | bytes, max_bytes: int, where: str = "prompt") -> str:
    """Validate a prompt: UTF-8 text, not blank, at most ``max_bytes``, no control characters.

    Raises:
        InvalidInput: with the reason.
    """
    if isinstance(prompt, bytes):
        try:
            prompt = prompt.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{where} is not valid UTF-8 (byte {exc.start})") from None
    if _SURROGATE.search(prompt):
        raise InvalidInput(f"{where} is not valid UTF-8 (lone surrogate)")
    if not prompt.strip():
        raise InvalidInput(f"{where} is empty or whitespace only")
    size = len(prompt.encode("utf-8"))
    if size > max_bytes:
        raise InvalidInput(f"{where} is {size} bytes; the limit is {max_bytes}")
    bad = _bad_characters(prompt)
    if bad:
        raise InvalidInput(f"{where} contains control characters ({', '.join(bad[:5])})")
    return prompt


def check_app(app: str, apps: Sequence[str], where: str = "app") -> str | None:
    """Validate an application id ("" means none)."""
    if not app:
        return None
    if app not in apps:
        raise InvalidInput(f"{where} {app[:64]!r} is unknown; expected one of {', '.join(apps)}")
    return app


def check_request_id(request_id: str, where: str = "request_id") -> str:
    """Validate a caller's request id (free text up to 128 characters, no controls)."""
    if len(request_id) > MAX_REQUEST_ID:
        raise InvalidInput(f"{where} is longer than {MAX_REQUEST_ID} characters")
    if _bad_characters(request_id):
        raise InvalidInput(f"{where} contains control characters")
    return request_id


def check_preference(values: Sequence[float], where: str = "preference") -> Vector:
    """Validate a reported vector (MODEL.md rules) and renormalise it."""
    try:
        return validate_vector(values)
    except ValueError as exc:
        raise InvalidInput(f"{where}: {exc}") from None


class IntentTranslator:
    """Translate requests with the registry's E-LAMs and the in-context memory.

    Args:
        registry: the loaded E-LAMs.
        memory: the in-context memory store.
        calibration: thresholds of eq. 46.
        limits: input limits.
    """

    def __init__(
        self,
        registry: Registry,
        memory: Memory,
        calibration: CalibrationConfig | None = None,
        limits: Limits | None = None,
    ):
        self.registry = registry
        self.memory = memory
        self.calibration = calibration or CalibrationConfig()
        self.limits = limits or Limits()

    @classmethod
    def from_settings(
        cls, registry: Registry, memory: Memory, settings: RappSettings
    ) -> IntentTranslator:
        """A translator with the calibration (eq. 46) and limits the settings give."""
        s = settings
        calibration = CalibrationConfig(
            low=s.calib_low,
            high=s.calib_high,
            iota_min=s.calib_iota_min,
            spread_max=s.calib_spread_max,
            min_records=s.memory_min_records,
        )
        limits = Limits(
            max_prompt_bytes=s.max_prompt_bytes,
            max_batch=s.max_batch,
            apps=tuple(s.apps),
            memory_k=s.memory_k,
        )
        return cls(registry, memory, calibration, limits)

    # --- Translate / TranslateBatch -------------------------------------------------------
    def check_item(self, item: TranslateInput, where: str = "") -> tuple[str, ELam, str | None]:
        """Validate one request: (prompt, its E-LAM, its application or None).

        Raises:
            InvalidInput: a malformed prompt, request id or application.
            NotFound: an unknown E-LAM.
        """
        prompt = check_prompt(item.prompt, self.limits.max_prompt_bytes, f"{where}prompt")
        check_request_id(item.request_id, f"{where}request_id")
        app = check_app(item.app, self.limits.apps, f"{where}app")
        try:
            elam = self.registry.get(item.model)
        except UnknownModel as exc:
            raise NotFound(f"{where}{exc}") from None
        return prompt, elam, app

    def translate(self, item: TranslateInput, deadline: float | None = None) -> TranslateOutput:
        """Translate one request (see :meth:`translate_batch`)."""
        return self.translate_batch([item], deadline, single=True)[0]

    def check_deadline(self, prompts_per_model: dict[str, int], deadline: float | None) -> None:
        """Refuse work that cannot finish before ``deadline`` (None: no deadline).

        Raises:
            DeadlineTooShort: the expected time of the E-LAMs exceeds what is left.
        """
        if deadline is None:
            return
        expected = sum(
            self.registry.get(mid).estimate_seconds(n) for mid, n in prompts_per_model.items()
        )
        remaining = deadline - time.monotonic()
        if remaining <= 0 or expected > remaining:
            raise DeadlineTooShort(
                f"deadline leaves {max(remaining, 0) * 1000:.0f} ms; the work needs "
                f"about {expected * 1000:.0f} ms"
            )

    def translate_batch(
        self,
        items: Sequence[TranslateInput],
        deadline: float | None = None,
        *,
        single: bool = False,
    ) -> list[TranslateOutput]:
        """Translate a batch: every item is checked first, then each E-LAM runs once.

        Args:
            items: the requests.
            deadline: ``time.monotonic()`` by which the answer is due (None: no deadline).
            single: label errors without an item index (the single-request RPC).

        Raises:
            InvalidInput: an item is malformed (the message names its index).
            NotFound: an item names an unknown E-LAM.
            DeadlineTooShort: the expected work does not fit before the deadline.
        """
        if not items:
            raise InvalidInput("the batch is empty")
        if len(items) > self.limits.max_batch:
            raise InvalidInput(
                f"the batch has {len(items)} requests; the limit is {self.limits.max_batch}"
            )
        checked = [
            self.check_item(item, "" if single else f"requests[{i}].")
            for i, item in enumerate(items)
        ]
        groups: dict[str, list[int]] = {}
        for i, (_, elam, _) in enumerate(checked):
            groups.setdefault(elam.id, []).append(i)
        self.check_deadline({mid: len(idx) for mid, idx in groups.items()}, deadline)
        contexts: dict[str | None, MemoryContext] = {}
        out: list[TranslateOutput | None] = [None] * len(items)
        for model_id, idx in groups.items():
            elam = self.registry.get(model_id)
            ctx = []
            for i in idx:
                app = checked[i][2]
                if app not in contexts:
                    contexts[app] = self.memory.context(app, self.limits.memory_k)
                ctx.append(contexts[app])
            start = time.perf_counter()
            results = elam.translate([checked[i][0] for i in idx], ctx, deadline=deadline)
            per_item_ms = 1000.0 * (time.perf_counter() - start) / len(idx)
            for i, context, result in zip(idx, ctx, results, strict=True):
                served = apply_memory(result, context, self.calibration)
                out[i] = TranslateOutput(
                    preference=served.vector,
                    model=elam.id,
                    calibrated=served.calibrated,
                    fallback=served.fallback,
                    latency_ms=per_item_ms,
                    request_id=items[i].request_id,
                    failure=result.detail if served.fallback else "",
                    failure_reason=(result.reason or "") if served.fallback else "",
                    source=served.source,
                )
        return [o for o in out if o is not None]

    # --- ReportOutcome ----------------------------------------------------------------
    def report_outcome(
        self,
        prompt: str | bytes,
        preference: Sequence[float],
        reward: float,
        app: str,
        request_id: str = "",
    ) -> Appended:
        """Append <prompt, vector, reward> to the application's memory (eq. 44).

        Returns:
            What the memory did with it (stored, a repeated request id, quarantined).

        Raises:
            InvalidInput: bad prompt, vector, reward or application.
        """
        text = check_prompt(prompt, self.limits.max_prompt_bytes)
        vector = check_preference(preference)
        if not math.isfinite(reward):
            raise InvalidInput("reward must be a finite number (got NaN or infinity)")
        checked_app = check_app(app, self.limits.apps)
        if checked_app is None:
            raise InvalidInput("app is required: the memory is kept per application")
        check_request_id(request_id)
        record = MemoryRecord(prompt=text, vector=vector, reward=float(reward), app=checked_app)
        return self.memory.append(record, request_id=request_id)

    # --- ListModels ----------------------------------------------------------------------
    def list_models(self) -> list[ModelInfo]:
        """The served E-LAMs, default first flagged."""
        default = self.registry.default_id
        return [
            ModelInfo(
                id=e.id,
                parameters=e.n_parameters,
                fee=e.fee,
                family=e.family,
                artefact=e.artefact,
                is_default=e.id == default,
                metrics=e.metrics(),
            )
            for e in self.registry
        ]


class MicroBatcher:
    """Dynamic micro-batching of single translations, as Triton's and TorchServe's batchers.

    Calls of :meth:`translate` from concurrent threads (the gRPC workers) queue their
    request; one dispatcher thread takes the first, gathers the ones that arrive within
    ``window_s`` of it (at most ``max_size`` in all) and runs them as one
    :meth:`IntentTranslator.translate_batch`, so each E-LAM makes one encoder pass for the
    whole group. With ``window_s`` 0 it groups only what queued up while the previous
    batch ran: no added wait at low load, larger batches as the load grows.

    Each request is validated in its caller's thread first, so a bad request fails alone
    and never the batch it would have joined; answers are those of single calls (the
    memory context is read once per application and batch, as in ``translate_batch``).

    With ``new_apart``, a request whose prompt needs the E-LAM's costly, cacheable step
    (MiniLM: a prompt not in its embedding cache, :meth:`ELam.uncached`) does not hold up
    the others: the dispatcher hands it to a second thread, which gathers such requests, runs that step
    for them in one pass (:meth:`ELam.precompute`) and then translates them; requests
    with cached prompts are answered meanwhile. The answers are the same.

    Args:
        translator: the service.
        window_s: how long the dispatcher waits for more requests after the first one.
        max_size: the most requests in one batch (at most the translator's ``max_batch``).
        on_batch: told the size of every batch run (metrics).
        new_apart: run the costly step of new prompts in the second thread (see above).
    """

    def __init__(
        self,
        translator: IntentTranslator,
        window_s: float,
        max_size: int,
        on_batch: Callable[[int], None] = lambda _: None,
        *,
        new_apart: bool = False,
    ):
        if window_s < 0 or max_size < 1:
            raise ValueError("window_s must be >= 0 and max_size >= 1")
        self.translator = translator
        self.window_s = float(window_s)
        self.max_size = min(int(max_size), translator.limits.max_batch)
        self._on_batch = on_batch
        self.new_apart = new_apart
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._cold: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._closed = False
        self._cold_thread: threading.Thread | None = None
        if new_apart:  # the second thread exists only when it has work
            self._cold_thread = threading.Thread(
                target=self._run_cold, name="rapp-batcher-cold", daemon=True
            )
            self._cold_thread.start()
        self._thread = threading.Thread(target=self._run, name="rapp-batcher", daemon=True)
        self._thread.start()

    def translate(self, item: TranslateInput, deadline: float | None = None) -> TranslateOutput:
        """Translate one request in the next batch (errors as :meth:`IntentTranslator.translate`).

        Raises:
            Unavailable: the batcher is closed.
        """
        _, elam, _ = self.translator.check_item(item)
        self.translator.check_deadline({elam.id: 1}, deadline)
        if self._closed:
            raise Unavailable("the service is shutting down")
        pending = _Pending(item, deadline)
        self._queue.put(pending)
        return pending.future.result()

    def close(self, timeout: float = 10.0) -> None:
        """Run what is queued, then stop the dispatcher (idempotent)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout)

    @staticmethod
    def _gather(
        source: queue.SimpleQueue[_Pending | None], first: _Pending, window_s: float, size: int
    ) -> tuple[list[_Pending], bool]:
        batch, end = [first], time.monotonic() + window_s
        while len(batch) < size:
            wait = end - time.monotonic()
            try:
                nxt = source.get(timeout=wait) if wait > 0 else source.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
        return batch, False

    def _run_batch(self, batch: list[_Pending], ahead_ms: dict[str, float] | None = None) -> None:
        """Translate ``batch`` and answer its callers; ``ahead_ms``: per E-LAM, the time per
        prompt of the work :meth:`ELam.precompute` did for it, added to ``latency_ms``."""
        deadlines = [p.deadline for p in batch]
        # An E-LAM may stop early at the deadline: the latest one, so that no request
        # is cut short by another's.
        latest = None if None in deadlines else max(d for d in deadlines if d is not None)
        try:
            outs = self.translator.translate_batch([p.item for p in batch], latest)
        except BaseException as exc:  # every caller of the batch gets the error
            for p in batch:
                p.future.set_exception(exc)
            return
        for p, out in zip(batch, outs, strict=True):
            if ahead_ms and out.model in ahead_ms:
                out = replace(out, latency_ms=out.latency_ms + ahead_ms[out.model])
            p.future.set_result(out)

    def _elam(self, item: TranslateInput) -> ELam | None:
        try:
            return self.translator.check_item(item)[1]
        except RequestError:  # checked by the caller already; translate_batch reports it
            return None

    def _needs_precompute(self, p: _Pending) -> bool:
        if not self.new_apart:
            return False
        elam = self._elam(p.item)
        return elam is not None and bool(elam.uncached([p.item.prompt]))

    def _batches(
        self, source: queue.SimpleQueue[_Pending | None], window_s: float
    ) -> Iterator[list[_Pending]]:
        """The batches gathered from ``source`` until its stop mark."""
        stop = False
        while not stop:
            first = source.get()
            if first is None:
                return
            batch, stop = self._gather(source, first, window_s, self.max_size)
            yield batch

    def _run_cold(self) -> None:
        for batch in self._batches(self._cold, 0.0):
            groups: dict[str, tuple[ELam, list[str]]] = {}
            for p in batch:
                elam = self._elam(p.item)
                if elam is not None:
                    groups.setdefault(elam.id, (elam, []))[1].append(p.item.prompt)
            ahead_ms: dict[str, float] = {}
            for elam, prompts in groups.values():
                start = time.perf_counter()
                try:
                    elam.precompute(prompts)
                except Exception:  # translate_batch runs the step again and reports it
                    log.exception("batcher.precompute_failed", model=elam.id)
                ahead_ms[elam.id] = 1000.0 * (time.perf_counter() - start) / len(prompts)
            self._run_batch(batch, ahead_ms)

    def _run(self) -> None:
        for batch in self._batches(self._queue, self.window_s):
            self._on_batch(len(batch))
            ready = []
            for p in batch:
                if self._needs_precompute(p):
                    self._cold.put(p)
                else:
                    ready.append(p)
            if ready:
                self._run_batch(ready)
        # What the cold lane holds is translated before the stop completes.
        if self._cold_thread is not None:
            self._cold.put(None)
            self._cold_thread.join()
        # A request queued behind the stop mark (a race with close) is refused, not lost.
        while True:
            try:
                late = self._queue.get_nowait()
            except queue.Empty:
                return
            if late is not None:
                late.future.set_exception(Unavailable("the service is shutting down"))


class _Pending:
    """A queued request and where its answer goes."""

    __slots__ = ("deadline", "future", "item")

    def __init__(self, item: TranslateInput, deadline: float | None):
        self.item, self.deadline = item, deadline
        self.future: Future[TranslateOutput] = Future()
