"""Extraction, validation, scenario and observability units on crafted inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agentnet.capacity import capacity
from agentnet.network import generate_network
from rapp_negotiation.messages import extract, render
from rapp_negotiation.observability import Observation, Trigger, observe
from rapp_negotiation.regulatory import Constraints
from rapp_negotiation.scenario import DEFAULT_TENANTS, Tenant, load_tenants
from rapp_negotiation.validation import validate
from servicekit import codec
from servicekit.statefeed import StateParts


# ---- extraction ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value", "reasoning", "error", "repaired"),
    [
        ('{"value": 4.2, "reasoning": "short queues"}', 4.2, "short queues", "", False),
        ('Sure!\n```json\n{"value": 3, "reasoning": "ok"}\n```', 3.0, "ok", "", False),
        ('{"note": 1} then {"proposed_value": "5.5 req/s", "reasoning": "x"}', 5.5, "x", "", False),
        ('{"value": 7.5, "reasoning": "cut off', 7.5, "cut off", "", True),
        ("value: 2.25 because we like it", 2.25, "because we like it", "", True),
        (
            '{"reasoning": "no number here"}',
            None,
            '{"reasoning": "no number here"}',
            "missing_value",
            False,
        ),
        ("I think we should talk more.", None, "I think we should talk more.", "no_json", False),
        ('{"value": "lots", "reasoning": "r"}', None, "r", "not_a_number", False),
        ('{"value": NaN, "reasoning": "r"}', None, "r", "non_finite", False),
        ('{"value": true, "reasoning": "r"}', None, "r", "not_a_number", False),
        ("", None, "", "empty", False),
        (None, None, "", "empty", False),
    ],
)
def test_extraction(text, value, reasoning, error, repaired):
    e = extract(text)
    assert e.value == value
    assert e.reasoning == reasoning
    assert e.error == error
    assert e.repaired == repaired
    assert e.ok == (value is not None)


def test_render_and_notes_roundtrip():
    text = render(5.123456, "fair", direction="lower your demand", warning="")
    obj = json.loads(text)
    assert obj == {"value": 5.1235, "reasoning": "fair", "direction": "lower your demand"}
    e = extract(text)
    assert e.value == 5.1235 and e.notes == {"direction": "lower your demand"}


# ---- validation ---------------------------------------------------------------------------
BOUNDS = Constraints(r_min=0.5, r_max=9.5, text="rules")


def check(text, design="soft", advice=5.0, fallback=3.0, constraints=BOUNDS):
    return validate(extract(text), constraints=constraints, capacity=10.0, design=design,
                    advice=advice, fallback=fallback, fallback_reasoning="fallback")  # fmt: skip


def test_an_out_of_bounds_llm_value_is_rejected_and_replaced_by_the_optimizer():
    d = check('{"value": 14.0, "reasoning": "more!"}')
    assert (d.value, d.source, d.llm_value) == (5.0, "fallback", 14.0)
    assert "out_of_bounds" in d.issues and d.fallback and d.reasoning == "fallback"


def test_without_an_optimizer_the_fallback_is_the_previous_value():
    d = check("gibberish", design="none", advice=None, fallback=3.0)
    assert (d.value, d.source) == (3.0, "fallback")
    assert d.issues == ("syntax:no_json",)


@pytest.mark.parametrize(
    ("text", "issue"),
    [
        ('{"value": -1, "reasoning": "r"}', "negative"),
        ('{"value": 0.1, "reasoning": "r"}', "out_of_bounds"),
        ('{"value": 9.9, "reasoning": "r"}', "out_of_bounds"),
        ('{"reasoning": "r"}', "syntax:missing_value"),
    ],
)
def test_unusable_values_fall_back(text, issue):
    d = check(text)
    assert d.source == "fallback" and issue in d.issues and d.value == 5.0


def test_soft_rejects_a_value_far_from_the_optimizer():
    d = check('{"value": 0.6, "reasoning": "r"}', advice=9.0)
    assert (d.value, d.source, d.issues) == (9.0, "fallback", ("far_from_optimizer",))


def test_soft_keeps_a_usable_value_and_warns_when_distant():
    d = check('{"value": 6.6, "reasoning": "we need more"}')
    assert (d.value, d.source) == (6.6, "llm")
    assert d.issues == ("distant_from_optimizer",)
    d = check('{"value": 5.2, "reasoning": "close"}')
    assert (d.value, d.source, d.issues) == (5.2, "llm", ())


def test_hard_imposes_the_optimizer_value():
    d = check('{"value": 6.0, "reasoning": "we prefer 6"}', design="hard")
    assert (d.value, d.source, d.reasoning) == (5.0, "imposed", "we prefer 6")
    assert "not_the_imposed_value" in d.issues
    d = check('{"value": 5.004, "reasoning": "ok"}', design="hard")
    assert (d.value, d.source) == (5.004, "llm")


def test_suspension_needs_the_suspension_rule():
    open_range = Constraints(0.0, 9.5, "", suspension_allowed=False)
    d = check('{"value": 0, "reasoning": "switch off"}', design="none", advice=None,
              constraints=open_range)  # fmt: skip
    assert "suspension_not_allowed" in d.issues and d.source == "fallback"
    allowed = Constraints(0.0, 9.5, "", suspension_allowed=True)
    d = check('{"value": 0, "reasoning": "all agree"}', design="none", advice=None,
              constraints=allowed)  # fmt: skip
    assert (d.value, d.source) == (0.0, "llm")


def test_reasoning_missing_is_a_warning():
    d = check('{"value": 5.0}')
    assert d.source == "llm" and d.issues == ("no_reasoning",) and d.reasoning == "fallback"


# ---- scenario -----------------------------------------------------------------------------
def test_intents_file_json_and_yaml(tmp_path: Path):
    rows = [{"name": "a", "intent": "low cost", "target_share": 0.2, "personality": "toxic"},
            {"name": "b", "intent": "reach", "target": 7.5, "weight": 2}]  # fmt: skip
    (tmp_path / "t.json").write_text(json.dumps({"tenants": rows}))
    yaml_text = (
        "tenants:\n  - name: a\n    intent: low cost\n    target_share: 0.2\n"
        "    personality: toxic\n  - {name: b, intent: reach, target: 7.5, weight: 2}\n"
    )
    (tmp_path / "t.yaml").write_text(yaml_text)
    for name in ("t.json", "t.yaml"):
        a, b = load_tenants(tmp_path / name)
        assert (a.personality, a.target_at(10.0), b.target_at(10.0), b.weight) == (
            "toxic", 2.0, 7.5, 2)  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"tenants": []}, "non-empty"),
        ({"tenants": [{"name": "a", "intent": "x"}]}, "exactly one of target"),
        ({"tenants": [{"name": "a", "intent": "x", "target": -1}]}, "target must be"),
        ({"tenants": [{"name": "a", "intent": "x", "target": 1, "weight": 0}]}, "weight"),
        ({"tenants": [{"name": "a", "intent": "x", "target": 1, "personality": "evil"}]},
         "unknown personality"),
        ({"tenants": [{"name": "a b", "intent": "x", "target": 1}]}, "tenant name"),
        ({"tenants": [{"name": "a", "intent": "x", "target": 1, "colour": "red"}]},
         "unknown keys"),
        ({"tenants": [{"name": "a", "intent": "x", "target": 1},
                      {"name": "a", "intent": "y", "target": 2}]}, "duplicate"),
    ],
)  # fmt: skip
def test_intents_file_errors_name_the_problem(tmp_path: Path, obj, match):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(ValueError, match=match):
        load_tenants(path)


def test_unparsable_intents_files(tmp_path: Path):
    (tmp_path / "t.json").write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_tenants(tmp_path / "t.json")
    (tmp_path / "t.yaml").write_text("tenants: [a: b: c")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_tenants(tmp_path / "t.yaml")


def test_default_tenants_are_the_four_applications():
    assert [t.name for t in DEFAULT_TENANTS] == ["content", "qa", "immersive", "critical"]
    assert all(isinstance(t, Tenant) for t in DEFAULT_TENANTS)


# ---- observability ------------------------------------------------------------------------
def state_message(net, seq=1):
    return codec.state_message(net, network="default", seq=seq, timestamp_ns=5)


def test_observe_computes_capacity_from_the_state():
    net = generate_network(2)
    net.available[5] = False
    obs = observe(state_message(net))
    # The state carries the observed link E[BER], not the shadowing: capacity must not
    # depend on it (latency and C are per agent), so it equals the network's own.
    assert obs.capacity == pytest.approx(capacity(net).lambda_cap, rel=1e-9)
    assert (obs.load, obs.n_agents, obs.available, obs.seq) == (1.0, 81, 80, 1)
    assert obs.utilisation == pytest.approx(1.0 / obs.capacity)


def test_observe_reads_a_keyframe_and_delta_as_the_whole_state():
    net = generate_network(2)
    net.available[::9] = False
    [chunk] = codec.keyframe_chunks(codec.keyframe_message(net, network="default"), 1 << 22)
    delta = codec.delta_message(net, network="default", seq=1, timestamp_ns=5,
                                keyframe=chunk.keyframe_id)  # fmt: skip
    assert observe(StateParts(codec.keyframe_message(net, network="default"),
                              chunk.keyframe_id, delta)) == observe(state_message(net))  # fmt: skip


def test_observe_refuses_a_delta_that_does_not_fit_its_keyframe():
    key = codec.keyframe_message(generate_network(2), network="default")
    [chunk] = codec.keyframe_chunks(key, 1 << 22)
    small = generate_network(3, n_agents=40)
    delta = codec.delta_message(small, network="default", seq=1, timestamp_ns=5,
                                keyframe=chunk.keyframe_id)  # fmt: skip
    with pytest.raises(codec.DecodeError) as info:
        observe(StateParts(key, chunk.keyframe_id, delta))
    assert info.value.code == "invalid_field"


def obs(cap: float) -> Observation:
    return Observation(seq=1, timestamp_ns=0, capacity=cap, load=1.0, n_agents=81,
                       available=81, chain=())  # fmt: skip


def test_trigger_retriggers_on_capacity_moves_and_halts_at_zero():
    t = Trigger(threshold=0.1)
    assert t.check(obs(10.0)) == "first_state"
    t.negotiated(10.0)
    assert t.check(obs(10.5)) is None
    assert t.check(obs(8.9)) == "capacity_moved"
    t.negotiated(8.9)
    assert t.check(obs(0.0)) == "no_capacity"
    t.halt()
    assert t.check(obs(0.0)) is None  # halted once, not again and again
    assert t.check(obs(3.0)) == "capacity_restored"
    t.negotiated(3.0)
    assert t.check(obs(3.1)) is None
    assert math.isinf(obs(0.0).utilisation)


def test_an_echo_of_the_one_shot_example_is_not_a_decision():
    from rapp_negotiation.messages import ONE_SHOT

    d = check(ONE_SHOT)
    assert (d.source, d.issues, d.llm_value) == ("fallback", ("echoed_example",), 4.2)
    d = check('{"value": 4.2, "reasoning": "our own reasons"}')
    assert d.source == "llm"
