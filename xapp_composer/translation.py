"""What the decision core needs from the rApp, and the vector it falls back on.

:class:`Translator` is the interface (``xapp_composer.rapp_client.RappClient`` implements
it over gRPC; tests script it); :class:`Translation` is one preference vector it returns,
:class:`TranslationFailed` what it raises when it has none. When a translation fails the
core decides on :meth:`FallbackVectors.vector`: the recent mean of the application's
successful translations, else the application's profile (INTENTS.md), else the even
vector.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from agentnet.intents import APP_PROFILES, EVEN, validate_vector


@dataclass(frozen=True)
class Translation:
    """A preference vector from the rApp.

    Attributes:
        vector: [w_C, w_B, w_L, w_P].
        elam: the E-LAM that translated it (may differ from the one asked for).
        calibrated: the rApp calibrated it with its in-context memory (eq. 46).
        fallback: the rApp's E-LAM failed and it returned its own fallback.
        failure: why, when ``fallback``.
    """

    vector: tuple[float, float, float, float]
    elam: str
    calibrated: bool = False
    fallback: bool = False
    failure: str = ""


class TranslationFailed(RuntimeError):
    """The translator gave no usable vector.

    Attributes:
        cause: short machine-readable cause (``unavailable``, ``deadline``, ``error``,
            ``invalid_vector``, ``circuit_open``, ...), a metrics label.
    """

    def __init__(self, cause: str, detail: str = ""):
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause
        self.detail = detail


class Translator(Protocol):
    """What the core needs from the rApp (``xapp_composer.rapp_client.RappClient``)."""

    def translate(self, prompt: str, elam: str, app: str, request_id: str) -> Translation:
        """Translate ``prompt`` with E-LAM ``elam`` ("" = the rApp's default).

        Raises:
            TranslationFailed: no usable vector.
        """
        ...

    def served_models(self) -> frozenset[str] | None:
        """The E-LAMs the rApp serves, or None when unknown."""
        ...


class FallbackVectors:
    """Recent mean of successful translations per app (the fallback vector).

    Args:
        window: translations per app averaged.
    """

    def __init__(self, window: int = 32):
        self.window = int(window)
        self._recent: dict[str, deque[tuple[float, ...]]] = {}
        self._lock = threading.Lock()

    def add(self, app: str, vector: Sequence[float]) -> None:
        """Remember a successful translation."""
        with self._lock:
            q = self._recent.setdefault(app, deque(maxlen=self.window))
            q.append(tuple(float(v) for v in vector))

    def vector(self, app: str) -> tuple[tuple[float, float, float, float], str]:
        """The fallback vector of an app and where it comes from.

        Returns:
            ``(vector, source)``, source ``"recent_mean"``, ``"app_profile"`` or ``"even"``.
        """
        with self._lock:
            q = self._recent.get(app)
            rows = list(q) if q else []
        if rows:
            mean = np.mean(np.asarray(rows), axis=0)
            return validate_vector(mean / mean.sum()), "recent_mean"
        if app in APP_PROFILES:
            return APP_PROFILES[app], "app_profile"
        return EVEN, "even"
