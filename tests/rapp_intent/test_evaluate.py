"""Scoring of translations: MSE, MAE, failure rate (hand-computed cases); data loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rapp_intent.evaluate import load_labelled, report, score
from sim_ric.users import IntentFormatError, LabelledIntent

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


def test_load_labelled_keeps_one_split_across_files(tmp_path):
    a = _write(
        tmp_path / "a.jsonl",
        [
            {"id": "a1", "prompt": "x", "s": [1, 0, 0, 0], "app": "qa", "split": "train"},
            {"id": "a2", "prompt": "y", "s": [0, 1, 0, 0], "app": "qa", "split": "heldout"},
        ],
    )
    b = _write(
        tmp_path / "b.jsonl",
        [
            {"id": "b1", "prompt": "z", "s": [0, 0, 1, 0], "app": "critical", "split": "heldout"},
            {"id": "b2", "prompt": "w", "s": [0, 0, 0, 1], "app": "critical"},  # no split
        ],
    )
    assert [i.id for i in load_labelled([a, b])] == ["a1", "a2", "b1", "b2"]
    assert [i.id for i in load_labelled([a, b], "heldout")] == ["a2", "b1"]
    assert [i.id for i in load_labelled(a, "train")] == ["a1"]
    only_train = _write(
        tmp_path / "c.jsonl",
        [{"prompt": "v", "s": [0.25] * 4, "app": "content", "split": "train"}],
    )
    with pytest.raises(IntentFormatError, match="no intents with split 'heldout'"):
        load_labelled(only_train, "heldout")


def test_load_labelled_checks_every_record_even_outside_the_split(tmp_path):
    bad = _write(
        tmp_path / "bad.jsonl",
        [
            {"prompt": "x", "s": [1, 0, 0, 0], "app": "qa", "split": "heldout"},
            {"prompt": "y", "s": [1, 1, 1, 1], "app": "qa", "split": "train"},
        ],
    )
    with pytest.raises(IntentFormatError, match=r"bad\.jsonl:2: .*sums to"):
        load_labelled(bad, "heldout")
    (tmp_path / "list.jsonl").write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(IntentFormatError, match=r"list\.jsonl:1: expected a JSON object"):
        load_labelled(tmp_path / "list.jsonl")
    (tmp_path / "broken.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(IntentFormatError, match=r"broken\.jsonl:1: invalid JSON"):
        load_labelled(tmp_path / "broken.jsonl")


def test_project_data_splits_into_train_and_heldout():
    files = sorted((REPO / "rapp_intent" / "data" / "intents").glob("*.jsonl"))
    every = load_labelled(files)
    heldout = load_labelled(files, "heldout")
    train = load_labelled(files, "train")
    assert len(heldout) + len(train) == len(every)
    assert not {i.id for i in heldout} & {i.id for i in train}
    assert {i.app for i in heldout} == {i.app for i in every}
