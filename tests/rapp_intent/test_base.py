"""The common E-LAM interface: output validation and counters."""

from __future__ import annotations

import math

import pytest

from rapp_intent.elam.base import (
    ElamStats,
    MemoryContext,
    MemoryRecord,
    Translation,
    validate_output,
)


def test_valid_vector_is_renormalised():
    t = validate_output([0.4, 0.3, 0.15, 0.1505])
    assert t.ok and t.reason is None
    assert math.isclose(sum(t.vector), 1.0, abs_tol=1e-12)
    assert t.vector[3] == pytest.approx(0.1505 / 1.0005)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([0.5, 0.5, 0.0], "wrong_length"),
        ([0.2, 0.2, 0.2, 0.2, 0.2], "wrong_length"),
        ([math.nan, 0.5, 0.25, 0.25], "non_finite"),
        ([math.inf, 0.0, 0.0, 0.0], "non_finite"),
        ([-0.1, 0.6, 0.25, 0.25], "negative"),
        ([0.25, 0.25, 0.25, 0.2], "bad_sum"),
        ([25, 25, 25, 25], "bad_sum"),
        (["a", 0.5, 0.25, 0.25], "unparseable"),
    ],
)
def test_invalid_vectors_fail_with_their_reason(values, reason):
    t = validate_output(values, raw="raw text")
    assert not t.ok
    assert t.reason == reason
    assert t.detail and t.raw == "raw text"


def test_sum_tolerance_is_1e_3():
    assert validate_output([0.25, 0.25, 0.25, 0.2509]).ok
    assert not validate_output([0.25, 0.25, 0.25, 0.2511]).ok


def test_failure_requires_a_known_reason():
    with pytest.raises(ValueError):
        Translation.failure("because", "x")


def test_context_mean_is_the_average_of_records():
    recs = tuple(
        MemoryRecord(prompt="p", vector=v, reward=1.0, app="qa")
        for v in ((0.4, 0.2, 0.2, 0.2), (0.2, 0.4, 0.2, 0.2))
    )
    assert MemoryContext(app="qa", records=recs).mean == pytest.approx((0.3, 0.3, 0.2, 0.2))
    assert MemoryContext(app="qa").mean is None


def test_stats_count_failures_by_reason():
    stats = ElamStats()
    stats.record([validate_output([1, 0, 0, 0]), validate_output([1, 1, 1, 1])], 0.5)
    snap = stats.snapshot()
    assert snap["translations"] == 2 and snap["failures"] == 1
    assert snap["failure_rate"] == 0.5
    assert snap["mean_latency_ms"] == pytest.approx(250.0)
    assert stats.failures["bad_sum"] == 1
