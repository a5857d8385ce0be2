"""The quality checks refuse crafted bad samples, each for its own reason, and pass good ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xapp_guard.features import INDEX, N_FEATURES
from xapp_guard.quality import QualityChecks, QualityConfig
from xapp_guard.scenarios import CLASSES, Scenario
from xapp_guard.synth import Candidate, realise, window_line
from xapp_guard.traffic import StackModel

L = 8
FLOOD = CLASSES.index("request_flood")


def _seq(rng, **features) -> np.ndarray:
    x = np.zeros((L, N_FEATURES), np.float32)
    for name, value in features.items():
        x[:, INDEX[name]] = value * np.exp(rng.normal(0, 0.15, L))
    return x


@pytest.fixture(scope="module")
def real():
    rng = np.random.default_rng(0)
    benign = [_seq(rng, pub_req=3, pub_req_bytes=500, recv=8, recv_bytes=30_000) for _ in range(60)]
    flood = [_seq(rng, pub_req=30, pub_req_bytes=6000, orphaned=25) for _ in range(30)]
    x = np.stack(benign + flood)
    y = np.array([0] * 60 + [FLOOD] * 30)
    return x, y


def centroid_probs(x_real, y_real):
    """A nearest-centroid classifier on log features (softmax over -distance)."""
    z = np.log1p(x_real[:, -1])
    cents = {c: z[y_real == c].mean(0) for c in np.unique(y_real)}

    def probs(x: np.ndarray) -> np.ndarray:
        zx = np.log1p(x[:, -1])
        out = np.zeros((len(x), len(CLASSES)))
        for c, m in cents.items():
            out[:, c] = -np.linalg.norm(zx - m, axis=1)
        e = np.exp(4 * (out - out.max(1, keepdims=True)))
        e[:, [c for c in range(len(CLASSES)) if c not in cents]] = 0
        return e / e.sum(1, keepdims=True)

    return probs


def _cand(x: np.ndarray, cls: str = "request_flood", route: str = "windows") -> Candidate:
    return Candidate(
        route, cls, "fast", window_line(x), x=x[None], y=np.array([CLASSES.index(cls)])
    )


def test_good_sample_passes_then_its_copy_is_a_duplicate(real) -> None:
    x, y = real
    q = QualityChecks(x, y, centroid_probs(x, y))
    new = _seq(np.random.default_rng(9), pub_req=28, pub_req_bytes=5800, orphaned=22)
    assert q.check(_cand(new)) == ""
    assert q.check(_cand(new.copy())).startswith("duplicate: copies an earlier candidate")


def test_copy_of_a_real_sequence_is_a_duplicate(real) -> None:
    x, y = real
    q = QualityChecks(x, y, centroid_probs(x, y))
    assert q.check(_cand(x[70].copy())).startswith("duplicate: copies real sequences")


def test_sample_far_from_its_class_is_refused(real) -> None:
    x, y = real
    q = QualityChecks(x, y, centroid_probs(x, y))
    absurd = _seq(np.random.default_rng(1), pub_req=30, undecodable=5000, rpc_report=900,
                  connects=300, pub_bytes_max=9e8)  # fmt: skip
    assert q.check(_cand(absurd)).startswith("far:")


def test_sample_the_real_classifier_calls_another_class_is_refused(real) -> None:
    x, y = real
    q = QualityChecks(x, y, centroid_probs(x, y), QualityConfig(far_factor=np.inf))
    benign_looking = _seq(np.random.default_rng(2), pub_req=3, pub_req_bytes=520, recv=8,
                          recv_bytes=29_000)  # fmt: skip
    reason = q.check(_cand(benign_looking))
    assert reason.startswith("classifier: P(request_flood) = 0.0")


def test_unparseable_and_out_of_bounds_answers_are_schema_refusals(real, cal) -> None:
    x, y = real
    q = QualityChecks(x, y, centroid_probs(x, y))
    model = StackModel(cal)
    bad = [
        Candidate("scenario", "request_flood", "fast", "Sure! Here is a flood scenario."),
        Candidate("scenario", "request_flood", "fast", json.dumps(
            {"rate_hz": 900, "jitter": 0.1, "burst": 1, "duration_s": 10, "prompt_bytes": 80})),
        Candidate("windows", "request_flood", "fast", '[{"pub_req": -4}]'),
        Candidate("windows", "request_flood", "fast", '[{"pub_requests": 4}]'),
        Candidate("windows", "request_flood", "fast", '[{"iat_mean": 7.5}]'),
    ]  # fmt: skip
    reasons = []
    for c in bad:
        realise(c, model, L, seed=0)
        reasons.append(q.check(c))
    assert all(r.startswith("schema:") for r in reasons), reasons
    assert "rate_hz: must be in" in reasons[1]
    assert "unknown feature 'pub_requests'" in reasons[3]
    assert "outside [0, 1]" in reasons[4]


def test_scenario_repeating_an_example_is_a_duplicate(real, cal) -> None:
    x, y = real
    q = QualityChecks(x, y, centroid_probs(x, y), QualityConfig(far_factor=np.inf, min_prob=0))
    params = {"rate_hz": 20.0, "jitter": 0.2, "burst": 2, "duration_s": 10.0, "prompt_bytes": 90}
    q.remember_examples([params | {"class": "request_flood"}])
    c = Candidate("scenario", "request_flood", "fast", json.dumps(params))
    realise(c, StackModel(cal), L, seed=0)
    assert c.scenario == Scenario("request_flood", "fast", params)
    assert q.check(c).startswith("duplicate: repeats the parameters")
    other = Candidate("scenario", "request_flood", "fast", json.dumps(params | {"burst": 3}))
    realise(other, StackModel(cal), L, seed=0)
    assert q.check(other) == ""


def test_mmd_is_small_for_the_class_itself_and_large_for_another(real) -> None:
    x, y = real
    q = QualityChecks(x, y, centroid_probs(x, y))
    assert q.mmd(x[y == FLOOD][:15], FLOOD) < q.mmd(x[y == 0][:15], FLOOD)
