"""The non-LLM baseline: more training sequences by noise and interpolation.

Half of the added sequences of a class are a real sequence of that class with every
non-zero feature scaled by log-normal noise (jitter); the other half interpolate, SMOTE-
style, between a real sequence and one of its ``k`` nearest neighbours of the same class
(in log1p feature space), ``a + u (b - a)`` with ``u ~ U(0, 1)``. Neither knows anything
about the protocol: this is what the LLM-made traffic has to beat.
"""

from __future__ import annotations

import numpy as np


def jitter(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.2) -> np.ndarray:
    """``x`` with each non-zero entry scaled by ``exp(N(0, sigma))``."""
    noise = np.exp(rng.normal(0.0, sigma, x.shape)).astype(np.float32)
    return np.where(x != 0, x * noise, 0.0).astype(np.float32)


def smote(x: np.ndarray, n: int, rng: np.random.Generator, k: int = 5) -> np.ndarray:
    """``n`` interpolations between sequences of ``x`` (one class) and their neighbours."""
    if len(x) < 2:
        return np.repeat(x, n, axis=0)[:n]
    z = np.log1p(np.maximum(x.reshape(len(x), -1), 0))
    d = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1)[:, : min(k, len(x) - 1)]
    a = rng.integers(len(x), size=n)
    b = near[a, rng.integers(near.shape[1], size=n)]
    u = rng.random((n, 1, 1)).astype(np.float32)
    return (x[a] + u * (x[b] - x[a])).astype(np.float32)


def noise_augment(
    x: np.ndarray, y: np.ndarray, per_class: dict[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Added sequences: ``per_class[c]`` for each class ``c`` (half jitter, half SMOTE)."""
    xs, ys = [], []
    for c, n in per_class.items():
        own = x[y == c]
        if n <= 0 or len(own) == 0:
            continue
        n_j = n // 2
        xs.append(jitter(own[rng.integers(len(own), size=n_j)], rng))
        xs.append(smote(own, n - n_j, rng))
        ys.append(np.full(n, c, np.int64))
    if not xs:
        return np.zeros((0, *x.shape[1:]), np.float32), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys)
