"""Scoring of translations: MSE, MAE, failure rate (hand-computed cases); data loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agentnet.intents import LabelledIntent
from rapp_intent.evaluate import report, score

REPO = Path(__file__).resolve().parents[2]


def _intent(s, app="qa"):
    return LabelledIntent(prompt="p", s=s, app=app)


def test_score_by_hand():
    intents = [_intent((0.4, 0.2, 0.2, 0.2)), _intent((0.25, 0.25, 0.25, 0.25))]
    preds = [(0.3, 0.3, 0.2, 0.2), (0.25, 0.25, 0.25, 0.25)]
    out = score(preds, intents)
    # request 1: squared errors 0.01, 0.01, 0, 0 -> 0.005; abs 0.1, 0.1 -> 0.05
    assert out["mse"] == pytest.approx((0.005 + 0.0) / 2)
    assert out["mae"] == pytest.approx((0.05 + 0.0) / 2)
    assert out["failure_rate"] == 0.0 and out["n"] == 2


def test_failures_are_excluded_from_errors_and_counted():
    intents = [_intent((0.4, 0.2, 0.2, 0.2)), _intent((0.25, 0.25, 0.25, 0.25))]
    out = score([None, (0.25, 0.25, 0.25, 0.25)], intents)
    assert out["mse"] == 0.0 and out["failure_rate"] == 0.5 and out["n"] == 2
    all_failed = score([None, None], intents)
    assert math.isnan(all_failed["mse"]) and all_failed["failure_rate"] == 1.0


def test_report_splits_per_app():
    intents = [_intent((0.4, 0.2, 0.2, 0.2), "content"), _intent((0.25,) * 4, "qa")]
    out = report([(0.25,) * 4, (0.25,) * 4], intents)
    assert list(out["per_app"]) == ["content", "qa"]
    assert out["per_app"]["qa"]["mse"] == 0.0
    assert out["per_app"]["content"]["n"] == 1
    assert out["overall"]["n"] == 2


def _write(path: Path, rows: list) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    return path
