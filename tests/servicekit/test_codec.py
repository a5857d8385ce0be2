"""servicekit.codec: network state <-> protobuf, envelopes, decode errors, JSON rendering."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentnet.network import generate_network
from lameta_proto.v1 import network_pb2
from servicekit import codec


@pytest.fixture(scope="module")
def net():
    return generate_network(5)


def _state(net, seq=3):
    return codec.state_message(net, network="lab", seq=seq, timestamp_ns=123)


def test_state_roundtrip_carries_node_and_edge_features(net):
    msg = _state(net)
    data = codec.encode(msg)
    back = codec.decode_state(data)
    assert back == msg
    arr = codec.StateArrays.from_proto(back)
    assert (arr.network, arr.seq, arr.timestamp_ns, arr.topology_seed) == ("lab", 3, 123, 5)
    assert arr.n_agents == net.n_agents == 81
    # Node features of eq. 33b (capability, latency, outage counts) plus type, availability.
    np.testing.assert_array_equal(arr.types, net.types)
    np.testing.assert_array_equal(arr.capability, net.p_success)
    np.testing.assert_array_equal(arr.latency, net.agent_latency())
    np.testing.assert_array_equal(arr.observations, net.observations)
    np.testing.assert_array_equal(arr.failures, net.failures)
    np.testing.assert_array_equal(arr.available, net.available)
    np.testing.assert_array_equal(arr.cloud, net.cloud)
    np.testing.assert_array_equal(arr.mu, net.mu)
    np.testing.assert_array_equal(arr.n_params, net.n_params)
    # Edge feature E[BER] of every link (eq. 33c).
    np.testing.assert_array_equal(arr.edges, net.edges)
    np.testing.assert_array_equal(arr.ber, net.link_ber)
    assert arr.arrival_rate == net.arrival_rate
    assert (arr.c_th, arr.l_max) == (net.cfg.c_th, net.cfg.l_max)
    # Independent check of one latency: L_i = (1/mu)(1 + rho (1 + V^2) / (2 (1 - rho))), eq. 7.
    i = int(np.flatnonzero(net.mu > net.arrival_rate)[0])
    rho = net.arrival_rate / net.mu[i]
    expected = (1 / net.mu[i]) * (1 + rho * (1 + net.cv[i] ** 2) / (2 * (1 - rho)))
    assert math.isclose(back.agents[i].latency, expected, rel_tol=1e-12)


def test_unstable_agent_latency_is_infinite_on_the_wire(net):
    busy = net.copy()
    busy.set_arrival_rate(float(np.median(busy.mu)))  # half of the agents get rho >= 1
    back = codec.decode_state(codec.encode(_state(busy)))
    lat = np.array([a.latency for a in back.agents])
    unstable = busy.arrival_rate >= busy.mu
    assert unstable.any() and (~unstable).any()
    assert np.all(np.isposinf(lat[unstable]))
    assert np.all(np.isfinite(lat[~unstable]))
    arr = codec.StateArrays.from_proto(back)
    usable = arr.usable(1)
    assert set(usable) == set(np.flatnonzero((busy.types == 1) & ~unstable & busy.available))
    rendered = json.loads(codec.to_json(back))
    assert "Infinity" in {a["latency"] for a in rendered["agents"]}


def test_every_payload_type_roundtrips(net):
    msgs = [
        _state(net),
        codec.ServiceRequest(request_id="r1", prompt="p", app="qa", chain_types=[1, 2, 3]),
        codec.ControlDecision(
            request_id="r1", chain=[0, 1, 2], elam="minilm", predicted=[0.25] * 4
        ),
        codec.Policy(network="n", negotiation_id="g1", arrival_rate=0.0, capacity=12.9),
        codec.Outcome(request_id="r1", code="served", accepted=True, normalized_score=math.nan),
    ]
    for msg in msgs:
        data = codec.encode(msg)
        env = network_pb2.Envelope.FromString(data)
        assert env.schema == codec.SCHEMA
        back = codec.decode(data)
        assert type(back) is type(msg)
        assert codec.decode_as(data, type(msg)).SerializeToString() == msg.SerializeToString()
    out = codec.decode_outcome(codec.encode(msgs[-1]))
    assert math.isnan(out.normalized_score)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xfe\xfd", b"hello world", b"\x08", bytes(range(256)), b'{"state": {}}'],
)
def test_garbage_bytes_are_refused_with_a_reason(data):
    with pytest.raises(codec.DecodeError) as info:
        codec.decode_decision(data)
    assert info.value.code == "garbage"
    assert "garbage" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_non_bytes_payload_is_refused():
    with pytest.raises(codec.DecodeError, match="must be bytes"):
        codec.decode("text")  # type: ignore[arg-type]


def test_wrong_message_type_names_both_types(net):
    with pytest.raises(codec.DecodeError) as info:
        codec.decode_decision(codec.encode(_state(net)))
    assert info.value.code == "wrong_message_type"
    assert "expected a control decision, got a network state" in info.value.reason
    with pytest.raises(codec.DecodeError, match="expected a network state, got a outcome"):
        codec.decode_state(codec.encode(codec.Outcome(code="served")))


def test_unsupported_schema_and_empty_envelope():
    env = codec.wrap(codec.ControlDecision(request_id="r", chain=[1, 2, 3]))
    env.schema = 2
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(env.SerializeToString())
    assert info.value.code == "unsupported_schema"
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(network_pb2.Envelope(schema=1).SerializeToString())
    assert info.value.code == "missing_field"


@pytest.mark.parametrize(
    ("msg", "code", "text"),
    [
        (codec.ControlDecision(chain=[1, 2, 3]), "missing_field", "decision.request_id"),
        (codec.ControlDecision(request_id="r"), "missing_field", "decision.chain"),
        (codec.ServiceRequest(prompt="p", chain_types=[1]), "missing_field", "request_id"),
        (codec.ServiceRequest(request_id="r", chain_types=[1]), "missing_field", "prompt"),
        (codec.ServiceRequest(request_id="r", prompt="p"), "missing_field", "chain_types"),
        (codec.NetworkState(network="n", arrival_rate=1.0), "missing_field", "state.agents"),
        (codec.Outcome(request_id="r"), "missing_field", "outcome.code"),
        (codec.Policy(negotiation_id="g", arrival_rate=1.0), "missing_field", "policy.network"),
        (codec.Policy(network="n", arrival_rate=1.0), "missing_field", "policy.negotiation_id"),
        (
            codec.Policy(network="n", negotiation_id="g", arrival_rate=-1.0),
            "invalid_field",
            "policy.arrival_rate",
        ),
        (
            codec.Policy(network="n", negotiation_id="g", arrival_rate=math.inf),
            "invalid_field",
            "policy.arrival_rate",
        ),
        (
            codec.Policy(network="n", negotiation_id="g", arrival_rate=1.0, valid_until_ns=-5),
            "invalid_field",
            "policy.valid_until_ns",
        ),
    ],
)
def test_missing_fields(msg, code, text):
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(codec.encode(msg))
    assert info.value.code == code
    assert text in info.value.reason
    # The decoded message is attached so that a receiver can say which request it was.
    assert info.value.message is not None


def test_rejection_without_chain_is_a_valid_decision():
    d = codec.ControlDecision(request_id="r", rejection="no capacity")
    assert codec.decode_decision(codec.encode(d)).rejection == "no capacity"


def test_invalid_state_fields(net):
    msg = _state(net)
    msg.agents[3].id = 9
    with pytest.raises(codec.DecodeError, match="listed by id"):
        codec.decode_state(codec.encode(msg))
    msg = _state(net)
    msg.links[0].v = 500
    with pytest.raises(codec.DecodeError, match=r"links\[0\]"):
        codec.decode_state(codec.encode(msg))
    msg = _state(net)
    msg.links[1].ber = math.nan
    with pytest.raises(codec.DecodeError, match="outside"):
        codec.decode_state(codec.encode(msg))
    msg = _state(net)
    msg.agents[0].type = 0
    with pytest.raises(codec.DecodeError, match="1-based"):
        codec.decode_state(codec.encode(msg))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_decode_error(data):
    try:
        msg = codec.decode(data)
    except codec.DecodeError as exc:
        assert exc.code in {
            "garbage",
            "unsupported_schema",
            "missing_field",
            "invalid_field",
        }
        assert exc.reason
    else:
        assert type(msg) in (
            codec.NetworkState,
            codec.ServiceRequest,
            codec.ControlDecision,
            codec.Outcome,
            codec.Policy,
        )


def test_json_rendering_roundtrips(net):
    env = codec.wrap(_state(net))
    text = codec.to_json(env, indent=2)
    obj = json.loads(text)
    assert obj["schema"] == 1 and len(obj["state"]["agents"]) == 81
    assert codec.envelope_from_json(text) == env
    with pytest.raises(codec.DecodeError):
        codec.envelope_from_json("{not json")


def test_wrap_rejects_non_payload_messages():
    with pytest.raises(TypeError, match=r"not a lameta\.v1 payload message"):
        codec.wrap(network_pb2.Agent())  # type: ignore[arg-type]
