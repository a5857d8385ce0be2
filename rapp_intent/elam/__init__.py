"""E-LAMs: the common interface and the two families (``minilm``, ``smollm2``).

Heavy modules (torch, transformers) are imported by :mod:`rapp_intent.elam.minilm` and
:mod:`rapp_intent.elam.smollm2` only; this package exposes the light interface.
"""

from rapp_intent.elam.base import (
    FAILURE_REASONS,
    ELam,
    MemoryContext,
    MemoryRecord,
    Translation,
    Vector,
    validate_output,
)

__all__ = [
    "FAILURE_REASONS",
    "ELam",
    "MemoryContext",
    "MemoryRecord",
    "Translation",
    "Vector",
    "validate_output",
]
