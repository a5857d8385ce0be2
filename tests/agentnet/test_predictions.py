"""The prediction files the rApp writes for SRL: one per E-LAM, never reused across
artefacts or decodings."""

from __future__ import annotations

import pytest

from agentnet.predictions import MISSING, PredictionFile


def test_predictions_round_trip_and_are_kept_apart_by_artefact_and_decoding(tmp_path) -> None:
    path = tmp_path / "smollm2.json"
    store = PredictionFile(path, "smollm2", "ab" * 32, "expected-b4", 134.5e6)
    assert store.get("stream the game", "immersive") == MISSING
    store.put("stream the game", "immersive", [0.1, 0.2, 0.3, 0.4])
    store.put("no answer", "qa", None)
    store.save()
    again = PredictionFile(path, "smollm2", "ab" * 32, "expected-b4")
    assert again.get("stream the game", "immersive") == [0.1, 0.2, 0.3, 0.4]
    assert again.get("no answer", "qa") is None  # a failure is remembered as one
    assert again.get("stream the game", "qa") == MISSING  # keyed by app too
    read = PredictionFile.read(path)
    assert (read.elam, read.artefact, read.variant, read.n_parameters) == (
        "smollm2", "ab" * 32, "expected-b4", 134.5e6,
    )  # fmt: skip
    # Another decoding of the same weights, or other weights, starts afresh.
    assert PredictionFile(path, "smollm2", "ab" * 32, "constrained-b1").vectors == {}
    assert PredictionFile(path, "smollm2", "cd" * 32, "expected-b4").vectors == {}
    assert PredictionFile(path, "minilm", "ab" * 32, "expected-b4").vectors == {}
    assert [p.name for p in tmp_path.iterdir()] == ["smollm2.json"]


def test_a_file_of_another_kind_is_refused(tmp_path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"vectors": {}}')
    with pytest.raises(ValueError, match="not an E-LAM prediction file"):
        PredictionFile.read(bad)
