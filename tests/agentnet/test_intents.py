"""The intent vocabulary and the one reader of the labelled-intent format (INTENTS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentnet.intents import (
    APPS,
    IntentFormatError,
    load_intents,
    project_intent_files,
    project_intents,
    validate_vector,
)


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_load_intents_keeps_one_split_across_files(tmp_path):
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
    assert [i.id for i in load_intents([a, b])] == ["a1", "a2", "b1", "b2"]
    assert [i.id for i in load_intents([a, b], "heldout")] == ["a2", "b1"]
    assert [i.id for i in load_intents(a, "train")] == ["a1"]
    only_train = _write(
        tmp_path / "c.jsonl",
        [{"prompt": "v", "s": [0.25] * 4, "app": "content", "split": "train"}],
    )
    with pytest.raises(IntentFormatError, match="no intents of split 'heldout'"):
        load_intents(only_train, "heldout")


def test_load_intents_checks_every_record_even_outside_the_split(tmp_path):
    bad = _write(
        tmp_path / "bad.jsonl",
        [
            {"prompt": "x", "s": [1, 0, 0, 0], "app": "qa", "split": "heldout"},
            {"prompt": "y", "s": [1, 1, 1, 1], "app": "qa", "split": "train"},
        ],
    )
    with pytest.raises(IntentFormatError, match=r"bad\.jsonl:2: .*sums to"):
        load_intents(bad, "heldout")
    (tmp_path / "list.jsonl").write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(IntentFormatError, match=r"list\.jsonl:1: expected a JSON object"):
        load_intents(tmp_path / "list.jsonl")
    (tmp_path / "broken.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(IntentFormatError, match=r"broken\.jsonl:1: invalid JSON"):
        load_intents(tmp_path / "broken.jsonl")


def test_project_data_splits_into_train_and_heldout():
    files = project_intent_files()
    every = load_intents(files)
    heldout = load_intents(files, "heldout")
    train = load_intents(files, "train")
    assert len(heldout) + len(train) == len(every)
    assert not {i.id for i in heldout} & {i.id for i in train}
    assert {i.app for i in heldout} == {i.app for i in every}


def test_project_intents_cover_every_application_in_both_splits():
    for split in ("train", "heldout"):
        intents = project_intents(split)
        assert {i.app for i in intents} == set(APPS)
        assert {i.split for i in intents} == {split}
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        project_intents("dev")


def test_validate_vector_renormalises_and_names_the_problem():
    assert validate_vector([0.5, 0.25, 0.25, 0.0005]) == pytest.approx(
        [0.5 / 1.0005, 0.25 / 1.0005, 0.25 / 1.0005, 0.0005 / 1.0005]
    )
    for bad, why in (
        ([0.5, 0.5], "4 entries"),
        ([0.5, 0.5, float("nan"), 0], "NaN"),
        ([-0.2, 0.3, 0.5, 0.4], "negative"),
        ([0.5, 0.5, 0.5, 0.5], "sums to 2"),
        (["a", 0, 0, 1], "not numeric"),
    ):
        with pytest.raises(ValueError, match=why):
            validate_vector(bad)
