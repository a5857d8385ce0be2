"""Helpers of the fuzz tests."""

from __future__ import annotations


def mutate(data: bytes, flips: list[int], cut: int) -> bytes:
    """``data`` with one bit flipped at each position in ``flips`` (modulo its length) and
    ``cut`` bytes removed from its end."""
    out = bytearray(data)
    for pos in flips:
        if out:
            out[pos % len(out)] ^= 1 << (pos % 8)
    return bytes(out[: max(0, len(out) - cut)])
