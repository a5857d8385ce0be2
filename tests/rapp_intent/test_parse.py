"""Parsing and formatting of SmolLM2 answers (no model needed)."""

from __future__ import annotations

import math

import pytest

from rapp_intent.elam.base import format_vector
from rapp_intent.elam.smollm2 import answer_space, parse_vector


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[0.40, 0.30, 0.15, 0.15]", (0.4, 0.3, 0.15, 0.15)),
        ("The vector is [0.25,0.25,0.25,0.25].", (0.25, 0.25, 0.25, 0.25)),
        ("[ .5 , 0.5, 0, 0 ]", (0.5, 0.5, 0.0, 0.0)),
        ("[1e-1, 0.4, 0.25, 0.25] and later [9, 9, 9, 9]", (0.1, 0.4, 0.25, 0.25)),
    ],
)
def test_parses_the_first_bracketed_vector(text, expected):
    t = parse_vector(text)
    assert t.ok, t.detail
    assert t.vector == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I think latency matters most.", "unparseable"),
        ("[0.4, 0.3, high, 0.1]", "unparseable"),
        ("[0.4, 0.3, 0.3", "unparseable"),
        ("[]", "unparseable"),
        ("[0.5, 0.5]", "wrong_length"),
        ("[NaN, 0.5, 0.25, 0.25]", "non_finite"),
        ("[Infinity, 0, 0, 0]", "non_finite"),
        ("[-0.5, 0.5, 0.5, 0.5]", "negative"),
        ("[0.20, 0.25, 0.25, 0.25]", "bad_sum"),
        ("[1, 1, 1, 1]", "bad_sum"),
    ],
)
def test_bad_answers_are_failures_with_a_reason(text, reason):
    t = parse_vector(text)
    assert not t.ok
    assert t.reason == reason
    assert t.raw == text


def test_format_then_parse_round_trips():
    v = (0.05, 0.1, 0.35, 0.5)
    assert format_vector(v) == "[0.05, 0.10, 0.35, 0.50]"
    assert parse_vector(format_vector(v)).vector == pytest.approx(v)


def test_answer_space_is_every_rubric_vector():
    space = answer_space()
    assert len(space) == math.comb(20 + 3, 3)  # multiples of 0.05 summing to 1
    assert len(set(space)) == len(space)
    for v in space:
        assert min(v) >= -1e-12 and math.isclose(sum(v), 1.0)
        assert parse_vector(format_vector(v)).ok
