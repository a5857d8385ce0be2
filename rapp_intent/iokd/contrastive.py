"""Contrastive sampling (paper eqs. 24, 25): the most divergent vectors of D_h.

For each sample of D_IoKD the k preference vectors of the history D_h that are furthest
from its own vector by angular distance (eq. 24) become its contrastive set C^i (eq. 25):
the E-LAM is taught to prefer s_p over each of them (eq. 31).

Labelled vectors repeat (the rubric's codebook has a few dozen distinct vectors), so the
top-k is taken over *distinct* vectors: k copies of one vector would teach one
comparison k times.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rapp_intent.iokd.data import Sample


def angular_distance(a: np.ndarray | Sequence, b: np.ndarray | Sequence) -> np.ndarray:
    """Eq. 24: Dis(a, b) = arccos(a . b / (|a| |b|)) / pi, for every row pair.

    Args:
        a: vectors, shape (n, d) or (d,).
        b: vectors, shape (m, d) or (d,).

    Returns:
        Distances in [0, 1] of shape (n, m) (scalars and 1-D collapse accordingly);
        0 for identical directions, 0.5 for orthogonal ones.
    """
    a_arr = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b_arr = np.atleast_2d(np.asarray(b, dtype=np.float64))
    na = np.linalg.norm(a_arr, axis=1, keepdims=True)
    nb = np.linalg.norm(b_arr, axis=1, keepdims=True)
    if np.any(na == 0) or np.any(nb == 0):
        raise ValueError("angular distance of a zero vector is undefined")
    cos = np.clip((a_arr / na) @ (b_arr / nb).T, -1.0, 1.0)
    out = np.arccos(cos) / np.pi
    if np.ndim(a) == 1 and np.ndim(b) == 1:
        return out[0, 0]
    if np.ndim(a) == 1:
        return out[0]
    if np.ndim(b) == 1:
        return out[:, 0]
    return out


def top_k_contrastive(samples: Sequence[Sample], hist: Sequence[Sample], k: int) -> list[Sample]:
    """Eq. 25: attach the top-k most divergent distinct vectors of ``hist`` to each sample.

    Ties (equal distance) are broken by the id of the first history sample carrying the
    vector, so the result does not depend on the order of ``hist``.

    Args:
        samples: the samples of D_IoKD.
        hist: the history D_h.
        k: contrastive vectors per sample.

    Returns:
        Copies of ``samples`` with ``contrastive`` and ``contrastive_ids`` set.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    if not hist:
        raise ValueError("contrastive sampling needs a non-empty history D_h")
    # Distinct vectors of D_h, each represented by its smallest sample id.
    first: dict[tuple[float, ...], str] = {}
    for h in sorted(hist, key=lambda h: h.id):
        first.setdefault(tuple(round(x, 6) for x in h.s), h.id)
    vectors = np.array(list(first))
    ids = list(first.values())
    if not samples:
        return []
    dist = angular_distance(np.array([s.s for s in samples]), vectors)
    out = []
    for row, sample in zip(dist, samples, strict=True):
        order = sorted(range(len(ids)), key=lambda j: (-round(row[j], 12), ids[j]))[:k]
        out.append(
            sample.with_(
                contrastive=tuple(tuple(float(x) for x in vectors[j]) for j in order),
                contrastive_ids=tuple(ids[j] for j in order),
            )
        )
    return out
