"""The xApp's on-disk cache of E-LAM predictions: one file per artefact and decoding."""

from __future__ import annotations

from xapp_composer.elams import PredictionCache


def test_predictions_round_trip_and_are_kept_apart_by_artefact_and_decoding(tmp_path) -> None:
    cache = PredictionCache("smollm2", "ab" * 32, tmp_path, variant="expected-b4")
    assert cache.get("stream the game", "immersive") == "missing"
    cache.put("stream the game", "immersive", [0.1, 0.2, 0.3, 0.4])
    cache.put("no answer", "qa", None)
    cache.save()
    again = PredictionCache("smollm2", "ab" * 32, tmp_path, variant="expected-b4")
    assert again.get("stream the game", "immersive") == [0.1, 0.2, 0.3, 0.4]
    assert again.get("no answer", "qa") is None  # a failure is remembered as one
    assert again.get("stream the game", "qa") == "missing"  # keyed by app too
    # Another decoding of the same weights, or other weights, never sees these.
    assert PredictionCache("smollm2", "ab" * 32, tmp_path, variant="constrained-b1").data == {}
    assert PredictionCache("smollm2", "cd" * 32, tmp_path, variant="expected-b4").data == {}
    assert PredictionCache("smollm2", "ab" * 32, tmp_path).data == {}
    assert len(list(tmp_path.iterdir())) == 1
