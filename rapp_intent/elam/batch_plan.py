"""Batches of prompts cut into forward passes that waste little compute on padding.

The prompts are sorted by token count and cut where padding would cost more than another
forward pass (:func:`plan_sub_batches`); :func:`encode_planned` runs a runtime's forward
over the passes and returns the embeddings in input order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rapp_intent.elam.encoder import EMBED_DIM, MAX_TOKENS

MAX_ROWS = 64
"""Most prompts in one forward pass."""
ROW_SIZES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
"""Row counts of sub-batches whose shapes are quantised (see :func:`plan_sub_batches`)."""
LENGTH_STEP = 8
"""Token counts of quantised sub-batches are multiples of this."""
FORWARD_COST = 300
"""Fixed cost of one forward pass, in padded tokens (all-MiniLM-L6-v2, 2-core CPU, batches
of 64 project prompts: plans made with 100, 300 and 1000 tried, 300 fastest or tied)."""


@dataclass(frozen=True)
class SubBatch:
    """One forward pass of a planned batch.

    Attributes:
        index: positions in the batch of the prompts it encodes, shortest first.
        rows: rows of its padded input (at least ``len(index)``; extra rows are filler).
        length: tokens per row of its padded input (at least the longest prompt's).
    """

    index: tuple[int, ...]
    rows: int
    length: int


def plan_sub_batches(lengths: Sequence[int], *, quantise: bool = False) -> list[SubBatch]:
    """Split a batch into forward passes that waste little compute on padding.

    The prompts are sorted by token count and cut into consecutive runs that minimise
    ``sum(FORWARD_COST + rows * length)`` over the passes (exact, by dynamic programming),
    with at most :data:`MAX_ROWS` prompts a pass. With ``quantise`` the shapes come from a
    small set: rows rounded up to :data:`ROW_SIZES`, length to a multiple of
    :data:`LENGTH_STEP`, so that kernels built per shape are reused across batches.

    Args:
        lengths: token count of each prompt (special tokens included).
        quantise: round shapes as described.

    Returns:
        The passes, covering every prompt exactly once.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    if quantise:
        rows_for = [next(r for r in ROW_SIZES if r >= c) for c in range(MAX_ROWS + 1)]
        padded = [LENGTH_STEP * math.ceil(lengths[i] / LENGTH_STEP) for i in order]
    else:
        rows_for = list(range(MAX_ROWS + 1))
        padded = [lengths[i] for i in order]
    # best[end]: least cost of the `end` shortest prompts; cut[end]: start of their last pass
    best = [0.0] + [math.inf] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        length = padded[end - 1]
        for start in range(max(0, end - MAX_ROWS), end):
            cost = best[start] + FORWARD_COST + rows_for[end - start] * length
            if cost < best[end]:
                best[end], cut[end] = cost, start
    plan: list[SubBatch] = []
    end = n
    while end > 0:
        start = cut[end]
        plan.append(SubBatch(tuple(order[start:end]), rows_for[end - start], padded[end - 1]))
        end = start
    return plan[::-1]


def encode_planned(
    tokenizer,
    texts: Sequence[str],
    forward: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    quantise: bool = False,
) -> np.ndarray:
    """Tokenise once, encode in the passes of :func:`plan_sub_batches`, keep input order.

    Args:
        tokenizer: the model's tokenizer (prompts truncated to :data:`MAX_TOKENS`).
        texts: the prompts.
        forward: ``(input_ids, attention_mask)`` int64 arrays of one pass to its
            embeddings (token type ids are all zero for single sentences).
        quantise: quantise the pass shapes (see :func:`plan_sub_batches`).

    Returns:
        float32 array (len(texts), 384).
    """
    out = np.empty((len(texts), EMBED_DIM), dtype=np.float32)
    if not texts:
        return out
    ids = tokenizer(list(texts), truncation=True, max_length=MAX_TOKENS)["input_ids"]
    pad = tokenizer.pad_token_id or 0
    for sub in plan_sub_batches([len(row) for row in ids], quantise=quantise):
        input_ids = np.full((sub.rows, sub.length), pad, dtype=np.int64)
        mask = np.zeros((sub.rows, sub.length), dtype=np.int64)
        for r, i in enumerate(sub.index):
            input_ids[r, : len(ids[i])] = ids[i]
            mask[r, : len(ids[i])] = 1
        # Filler rows repeat the first prompt; their embeddings are dropped.
        input_ids[len(sub.index) :] = input_ids[0]
        mask[len(sub.index) :] = mask[0]
        out[list(sub.index)] = forward(input_ids, mask)[: len(sub.index)]
    return out
