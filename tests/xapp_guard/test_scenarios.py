"""The scenario schema: what is accepted, what is refused and why, schedules."""

from __future__ import annotations

import numpy as np
import pytest

from xapp_guard.scenarios import ATTACKS, CLASSES, SCHEMA, ScenarioError, draw, schedule, validate


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("variant", ["fast", "slow"])
def test_drawn_scenarios_validate(cls: str, variant: str) -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        s = draw(cls, variant, rng)
        assert validate(s.to_json()) == s


def test_slow_variants_stay_under_the_fast_rates() -> None:
    for cls in ATTACKS:
        rate = SCHEMA[cls]["rate_hz"]
        assert rate.slow[1] < rate.fast[0], cls


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"class": "nope"}, "class: must be one of"),
        ({"class": "request_flood", "rate_hz": 5}, "jitter: missing"),
        ({"class": "request_flood", "rate_hz": 500.0, "jitter": 0.1, "burst": 1,
          "duration_s": 10, "prompt_bytes": 100}, "rate_hz: must be in [0.02, 200]"),
        ({"class": "request_flood", "rate_hz": 5, "jitter": 0.1, "burst": 1.5,
          "duration_s": 10, "prompt_bytes": 100}, "burst: must be an integer"),
        ({"class": "request_flood", "rate_hz": "fast", "jitter": 0.1, "burst": 1,
          "duration_s": 10, "prompt_bytes": 100}, "rate_hz: must be a number"),
        ({"class": "request_flood", "rate_hz": float("nan"), "jitter": 0.1, "burst": 1,
          "duration_s": 10, "prompt_bytes": 100}, "rate_hz: must be finite"),
        ({"class": "request_flood", "rate_hz": 5, "jitter": 0.1, "burst": 1,
          "duration_s": 10, "prompt_bytes": 100, "colour": "red"}, "unknown keys ['colour']"),
        ({"class": "oversize", "rate_hz": 1, "jitter": 0, "burst": 1, "duration_s": 10,
          "size_bytes": 50_000, "topic": "state", "garbage": "yes"}, "topic: must be one of"),
        ({"class": "replay", "variant": "medium", "rate_hz": 1, "jitter": 0, "burst": 1,
          "duration_s": 10, "what": "requests", "delay_s": 1}, "variant: must be one of"),
    ],
)  # fmt: skip
def test_invalid_scenarios_name_their_problem(data: dict, needle: str) -> None:
    with pytest.raises(ScenarioError) as err:
        validate(data)
    assert needle in str(err.value)


def test_schedule_follows_rate_burst_and_duration() -> None:
    s = validate({"class": "forged_decision", "rate_hz": 10.0, "jitter": 0.0, "burst": 2,
                  "duration_s": 5.0, "target": "unknown", "valid_chain": "yes"})  # fmt: skip
    t = schedule(s, np.random.default_rng(0))
    assert len(t) in (50, 52)  # 25 ticks of 2 (or one more tick from the random phase)
    assert (t < 5.0).all() and (np.diff(t) >= 0).all()
    ticks = np.unique(t)
    np.testing.assert_allclose(np.diff(ticks), 0.2, atol=1e-9)
