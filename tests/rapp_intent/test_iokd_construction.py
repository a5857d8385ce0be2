"""IoKD dataset construction, step by step on small data (paper eqs. 19-26)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from support.iokd import ScriptedClam, bow_embed, last_user, sample
from support.shared import shared_file

from agentnet.intents import APPS, IntentFormatError
from rapp_intent.iokd import data as iokd_data
from rapp_intent.iokd.augment import augment, parse_candidate
from rapp_intent.iokd.config import AugmentConfig, BuildConfig, CotConfig
from rapp_intent.iokd.contrastive import angular_distance, top_k_contrastive
from rapp_intent.iokd.cot import explain, reasoning_problems, rubric_reasoning
from rapp_intent.iokd.data import (
    EvaluationDataError,
    Sample,
    history,
    load_labelled,
    user_samples,
)
from rapp_intent.iokd.dataset import build_dataset, load_dataset
from rapp_intent.iokd.filtering import cosine_matrix, filter_relevant
from rapp_intent.iokd.rubric import cue_problems, find_cues, format_problems, label_problems


# --- data (eq. 19) ----------------------------------------------------------------------
def test_history_and_user_samples_are_train_only() -> None:
    samples = load_labelled()
    assert len(samples) >= 400
    d_h = history(samples)
    assert d_h and all(s.split == "train" for s in d_h)
    assert len(d_h) < len(samples)  # the held-out split exists and stays out
    for app in APPS:
        d_u = user_samples(samples, app)
        assert d_u and all(s.app == app and s.split == "train" for s in d_u)
    with pytest.raises(ValueError):
        user_samples(samples, "gaming")


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_loader_refuses_evaluation_only_files_bad_splits_and_duplicates(tmp_path) -> None:
    row = {"id": "qa-1", "prompt": "hi", "s": [0.25] * 4, "app": "qa", "split": "train"}
    _write(tmp_path / "dev_intents.jsonl", [row])
    with pytest.raises(EvaluationDataError, match="evaluation-only"):
        load_labelled(tmp_path)
    (tmp_path / "dev_intents.jsonl").unlink()
    _write(tmp_path / "qa.jsonl", [row | {"split": "test"}])
    with pytest.raises(IntentFormatError, match="split"):
        load_labelled(tmp_path)
    _write(tmp_path / "qa.jsonl", [row, row])
    with pytest.raises(IntentFormatError, match="duplicate id"):
        load_labelled(tmp_path)
    _write(tmp_path / "qa.jsonl", [row | {"s": [0.5, 0.5, 0.5, 0.5]}])
    with pytest.raises(IntentFormatError, match="sums to"):
        load_labelled(tmp_path)


def test_sample_json_round_trip() -> None:
    s = sample("qa-1", "quick, what's 2+2", [0.2, 0.15, 0.5, 0.15], reasoning="fast")
    s = s.with_(contrastive=((0.6, 0.15, 0.1, 0.15),), contrastive_ids=("content-1",))
    back = Sample.from_json(json.loads(json.dumps(s.to_json())))
    assert back == s
    assert list(s.to_json())[:5] == ["id", "prompt", "s", "app", "split"]


# --- rubric checks -----------------------------------------------------------------------------
def test_rubric_checks_accept_the_projects_own_training_labels() -> None:
    d_h = history(load_labelled())
    assert not [s.id for s in d_h if format_problems(s.s)]
    rejected = [s.id for s in d_h if label_problems(s.prompt, s.s)]
    assert len(rejected) <= 0.01 * len(d_h), rejected


def test_rubric_cues_and_contradictions() -> None:
    cues = find_cues("No rush, but every figure must match the spreadsheet exactly as given.")
    assert cues.waived == {"L"} and cues.raised == {"B"}
    assert find_cues("Take your time and make it thorough").waived == {"L"}
    assert label_problems("answer asap", [0.4, 0.3, 0.15, 0.15])  # asks for L, gets 0.15
    assert label_problems("no rush", [0.2, 0.2, 0.4, 0.2])  # waives L, gets 0.40
    assert not label_problems("answer asap", [0.2, 0.15, 0.5, 0.15])
    assert format_problems([0.33, 0.33, 0.34, 0.0])  # not multiples of 0.05, 0 < 0.05
    assert format_problems([0.7, 0.1, 0.1, 0.1])  # above 0.60
    assert not format_problems([0.25] * 4)
    problems = cue_problems("Send it asap, must not fail", "Send it whenever, it must not fail")
    assert problems == ["it dropped the request for latency (speed)"]
    assert cue_problems("no rush", "answer right now") == [
        "it dropped the waiver of latency (speed)",
        "it asks for latency (speed), which the original waives",
    ]


# --- filtering (eq. 20) ------------------------------------------------------------------------
def test_similarity_filtering_keeps_history_above_tau_min() -> None:
    d_u = [sample("qa-1", "how many grams of sugar in a cola can", [0.25] * 4)]
    d_h = [
        d_u[0],
        sample("content-1", "how many grams of sugar in a cola bottle", [0.4, 0.3, 0.15, 0.15]),
        sample("critical-1", "shut down reactor two now", [0.1, 0.2, 0.35, 0.35]),
    ]
    rel = filter_relevant(d_u, d_h, bow_embed, tau_min=0.5)
    assert [r.id for r in rel] == ["content-1"]  # D_u itself is not repeated
    sim = cosine_matrix(bow_embed([d_h[1].prompt]), bow_embed([d_u[0].prompt]))[0, 0]
    assert rel[0].similarity == pytest.approx(sim) and rel[0].role == "related"
    assert filter_relevant(d_u, d_h, bow_embed, tau_min=-1.0)[-1].id == "critical-1"
    assert filter_relevant(d_u, d_h, bow_embed, tau_min=1.0) == []
    with pytest.raises(ValueError):
        filter_relevant(d_u, d_h, bow_embed, tau_min=1.5)


def test_sbert_similarity_ranks_a_paraphrase_above_an_unrelated_request() -> None:
    from rapp_intent.iokd.filtering import SbertEmbedder

    embed = SbertEmbedder()
    e = embed(
        [
            "Stream the racing game to my phone with no lag.",
            "Play the car racing game on my mobile, latency must be minimal.",
            "Summarise the patient's lab results for the on-call doctor.",
        ]
    )
    sim = cosine_matrix(e, e)
    assert np.allclose(np.diag(sim), 1.0, atol=1e-5)
    assert sim[0, 1] > 0.5 > sim[0, 2]


# --- chain of thought (eq. 22) -----------------------------------------------------------------
def test_cot_accepts_a_good_explanation_regenerates_a_bad_one_and_falls_back() -> None:
    good = sample("qa-1", "quick, how tall is Everest", [0.2, 0.15, 0.5, 0.15])
    hard = sample("qa-2", "tell me about volcanoes", [0.25] * 4)
    answers = {"qa-1": ["ok", "The request says quick, so latency gets the largest weight."]}

    def script(conv):
        if "Everest" in conv[1]["content"]:
            return answers["qa-1"][min(len(conv) // 2 - 1, 1)]
        return "Volcanoes are mountains."

    clam = ScriptedClam(script)
    out, report = explain([good, hard], clam, CotConfig(max_rounds=2))
    assert out[0].reasoning_by == "clam" and "latency" in out[0].reasoning
    assert out[1].reasoning_by == "rubric" and "neutral" in out[1].reasoning
    assert report.by_clam == 1 and report.by_rubric == 1
    assert [r["accepted"] for r in report.rounds] == [0, 1]
    assert report.rounds[0]["rejected"] == 2
    # The second round fed the reason back to the C-LAM.
    retry = next(c for c in clam.calls if len(c) == 4 and "Everest" in c[1]["content"])
    assert retry[2] == {"role": "assistant", "content": "ok"}
    assert "rejected" in retry[3]["content"] and "too short" in retry[3]["content"]


def test_reasoning_checks() -> None:
    s = sample("qa-1", "quick one", [0.2, 0.15, 0.5, 0.15])
    assert not reasoning_problems("It asks for a quick answer, so latency weighs most.", s)
    assert reasoning_problems("It is about capability and depth of the answer here.", s)
    assert reasoning_problems("Latency is 0.70 here because the user wants speed now.", s)
    loop = "the factor that raises the most, which is " * 5
    assert "it repeats itself" in reasoning_problems("latency " + loop, s)
    assert "neutral" in rubric_reasoning(sample("qa-2", "hi there", [0.25] * 4))


# --- augmentation (eq. 23) and its quality loop --------------------------------------------------
SOURCE = sample(
    "qa-7",
    "asap, what is the capital of Peru, I am on a call",
    [0.2, 0.15, 0.5, 0.15],
    reasoning="quick: latency",
)
OTHER = sample("qa-8", "explain photosynthesis thoroughly", [0.5, 0.15, 0.2, 0.15])


def _augment(script, **cfg):
    clam = ScriptedClam(script)
    values = {"ratio": 1.0, "shots": 2, "max_rounds": 3, "tau_topic": 0.3, "tau_source": 0.3}
    config = AugmentConfig(**(values | cfg))
    out, report = augment("qa", [SOURCE], [SOURCE, OTHER], [SOURCE, OTHER], clam, bow_embed, config)
    return out, report, clam


def test_augmentation_rejects_copies_and_drift_and_feeds_the_reason_back() -> None:
    answers = iter(
        [
            "Request: asap, what is the capital of Peru, I am on a call",  # copy
            "Request: asap, write a sonnet about autumn leaves",  # off-topic
            "Request: asap, I am on a call, tell me the capital of Peru",  # good
        ]
    )
    out, report, clam = _augment(lambda conv: next(answers))
    assert len(out) == 1
    syn = out[0]
    assert syn.origin == "synthetic" and syn.source_id == "qa-7" and syn.s == SOURCE.s
    assert syn.id == "qa-7~syn1" and syn.app == "qa" and syn.split == "synthetic"
    assert [(r["accepted"], r["rejected"]) for r in report.rounds] == [(0, 1), (0, 1), (1, 0)]
    assert "it nearly copies example 1" in report.rounds[0]["reasons"]
    assert "it is off-topic: it does not resemble the examples" in report.rounds[1]["reasons"]
    # Each regeneration carries the previous answer and why it was rejected.
    second, third = clam.calls[1], clam.calls[2]
    assert "nearly copies example 1" in last_user(second)
    assert "off-topic" in last_user(third) and "nearly copies" not in last_user(third)
    assert report.accepted == 1 and report.dropped == 0


def test_augmentation_checks_labels_cues_and_figures() -> None:
    replies = {
        "Request: what is the capital of Peru, whenever you like, no rush": "cue",
        "Request: asap, I am on a call in 5 minutes, name the capital of Peru": "figures",
    }
    texts = iter(replies)
    out, report, _ = _augment(lambda conv: next(texts), max_rounds=2)
    assert out == [] and report.dropped == 1
    reasons = " ".join(r for rnd in report.rounds for r in rnd["reasons"])
    assert "dropped the request for latency" in reasons
    assert "the label contradicts the request" in reasons
    assert "adds figures" in reasons


def test_augmentation_with_clam_labels_checks_the_vector_against_its_source() -> None:
    texts = iter(
        [
            "Request: asap, I am on a call, tell me the capital of Peru\nVector: [0.6, 0.1, 0.1, 0.2]",
            "Request: asap, I am on a call, tell me the capital of Peru\nVector: [0.2, 0.2]",
            "Request: asap, I am on a call, tell me the capital of Peru\n"
            "Reasoning: The user is on a call and needs the answer now, so latency weighs most."
            "\nVector: [0.15, 0.15, 0.55, 0.15]",
        ]
    )
    out, report, _ = _augment(lambda conv: next(texts), labels="clam")
    assert len(out) == 1 and out[0].s == (0.15, 0.15, 0.55, 0.15)
    assert out[0].reasoning.startswith("The user is on a call") and out[0].reasoning_by == "clam"
    reasons = [r for rnd in report.rounds for r in rnd["reasons"]]
    assert any("does not match the intent of example 1" in r for r in reasons)
    assert any("missing or invalid" in r for r in reasons)


def test_augmentation_survives_a_failing_clam() -> None:
    out, report, _ = _augment(lambda conv: None, max_rounds=2)
    assert out == [] and report.dropped == 1
    assert report.rounds[0]["reasons"] == {"the C-LAM call failed": 1}


def test_parse_candidate() -> None:
    p = parse_candidate('Request: "make it fast"\nReasoning: speed\nVector: [0.2, 0.1, 0.5, 0.2]')
    assert p.request == "make it fast" and p.reasoning == "speed"
    assert p.vector == (0.2, 0.1, 0.5, 0.2)
    p = parse_candidate("make it fast")
    assert p.request == "make it fast" and p.vector is None
    assert "invalid vector" in parse_candidate("Request: x\nVector: [1, nan, 0, 0]").vector_error


# --- contrastive sampling (eqs. 24, 25) -----------------------------------------------------------
def test_angular_distance_of_eq_24() -> None:
    assert angular_distance([1, 0, 0, 0], [0, 1, 0, 0]) == pytest.approx(0.5)
    assert angular_distance([0.25] * 4, [0.5] * 4) == pytest.approx(0.0, abs=1e-7)
    assert angular_distance([1, 0, 0, 0], [1, 1, 0, 0]) == pytest.approx(0.25)
    assert angular_distance(np.eye(4), np.eye(4)).shape == (4, 4)


def test_top_k_contrastive_takes_the_most_divergent_distinct_vectors() -> None:
    rng = np.random.default_rng(0)
    vecs = [
        (0.25, 0.25, 0.25, 0.25),
        (0.6, 0.15, 0.1, 0.15),
        (0.1, 0.6, 0.1, 0.2),
        (0.15, 0.1, 0.6, 0.15),
        (0.1, 0.2, 0.1, 0.6),
        (0.4, 0.3, 0.15, 0.15),
    ]
    hist = [sample(f"h-{i:02d}", f"p{i}", vecs[int(rng.integers(len(vecs)))]) for i in range(30)]
    target = sample("t", "x", (0.15, 0.1, 0.6, 0.15))
    (out,) = top_k_contrastive([target], hist, k=3)
    distinct = sorted({h.s for h in hist}, key=lambda v: -angular_distance(target.s, v))
    assert list(out.contrastive) == distinct[:3]
    assert len(set(out.contrastive)) == 3
    for vec, hid in zip(out.contrastive, out.contrastive_ids, strict=True):
        owner = min((h for h in hist if h.s == vec), key=lambda h: h.id)
        assert hid == owner.id
    assert top_k_contrastive([target], list(reversed(hist)), k=3) == [out]
    (more,) = top_k_contrastive([target], hist, k=50)
    assert len(more.contrastive) == len({h.s for h in hist})


# --- the whole construction (eq. 26) ----------------------------------------------------------------
def test_build_dataset_writes_d_iokd_and_never_touches_heldout(tmp_path) -> None:
    labelled = [
        sample("qa-1", "quick, what's the capital of Peru", [0.2, 0.15, 0.5, 0.15]),
        sample("qa-2", "explain the causes of inflation thoroughly", [0.5, 0.15, 0.2, 0.15]),
        sample("qa-3", "what's the capital of Chile", [0.25] * 4, split="heldout"),
        sample(
            "content-1",
            "write a quick poem about the capital of Peru",
            [0.4, 0.25, 0.2, 0.15],
            app="content",
        ),
        sample("content-2", "render a logo, photoreal", [0.5, 0.2, 0.15, 0.15], app="content"),
    ]

    def script(conv):
        text = last_user(conv)
        if "Vector [w_C" in text:
            return "The request wants a quick answer, so latency and the capability share."
        source = re.search(r"1\. Request: (.+)", text).group(1)
        return "Request: " + " ".join(reversed(source.split(", "))) + " please"

    report = build_dataset(
        labelled,
        ["qa"],
        ScriptedClam(script),
        bow_embed,
        BuildConfig(tau_min=0.3, k=2, augment=AugmentConfig(ratio=1.0, tau_topic=0.3)),
        tmp_path,
    )
    rows = load_dataset(["qa"], tmp_path)
    ids = {r.id for r in rows}
    assert "qa-3" not in ids and all(r.split != "heldout" for r in rows)
    assert {"qa-1", "qa-2", "content-1"} <= ids  # D_u and D_rel (eq. 21)
    assert "content-2" not in ids  # not similar enough to D_u
    assert all(r.target_app == "qa" and len(r.contrastive) == 2 for r in rows)
    assert all(r.reasoning for r in rows if r.origin == "labelled")
    synthetic = [r for r in rows if r.origin == "synthetic"]
    assert synthetic and all(r.source_id in {"qa-1", "qa-2"} for r in synthetic)
    qa = report["apps"]["qa"]
    assert qa["d_u"] == 2 and qa["d_rel"] == 1 and qa["d_iokd"] == len(rows)
    assert qa["augmentation"]["requested"] == 2
    assert json.loads((tmp_path / "build.json").read_text())["files"]


# --- the shipped dataset ---------------------------------------------------------------------------
def test_shipped_dataset_is_train_only_and_valid() -> None:
    from rapp_intent.iokd.config import DATA_DIR
    from rapp_intent.iokd.dataset import dataset_path

    if not all(dataset_path(a).exists() for a in APPS):
        pytest.skip("dataset not built (rapp-intent iokd-dataset)")
    rows = load_dataset(APPS, DATA_DIR)
    labelled = {s.id: s for s in load_labelled()}
    heldout_prompts = {s.prompt.strip().lower() for s in labelled.values() if s.split == "heldout"}
    dev = shared_file("spec", "dev_intents.jsonl")
    dev_prompts = {s.prompt.strip().lower() for s in iokd_data.load_evaluation(dev)}
    for r in rows:
        assert r.prompt.strip().lower() not in heldout_prompts | dev_prompts, r.id
        if r.origin == "labelled":
            assert labelled[r.id].split == "train" and labelled[r.id].s == r.s
        else:
            assert labelled[r.source_id].split == "train", r.id
            assert not format_problems(r.s) and not label_problems(r.prompt, r.s), r.id
        assert r.contrastive and r.reasoning
    assert sum(r.origin == "synthetic" for r in rows) > 0


@pytest.mark.parametrize("reasoning", ["", "Reasoning: latency\n"])
def test_synthetic_sample_without_a_usable_explanation_gets_the_rubric_one(reasoning) -> None:
    reply = (
        "Request: asap, I am on a call, tell me the capital of Peru\n"
        + reasoning
        + "Vector: [0.15, 0.15, 0.55, 0.15]"
    )
    out, _, _ = _augment(lambda conv: reply, labels="clam")
    assert len(out) == 1 and out[0].reasoning_by == "rubric"
    assert "latency" in out[0].reasoning and len(out[0].reasoning.split()) > 3
