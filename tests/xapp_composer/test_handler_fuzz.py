"""Fuzz of the xApp's MQTT handlers (request and state payloads) on a real ONNX policy:
whatever arrives, a request payload gets a decision, an explicit rejection, a duplicate's
re-publication or a counted drop, and a state payload is installed or counted and ignored;
nothing raises, and a bad state never replaces the serving one."""

from __future__ import annotations

import time

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from support.fuzz import mutate
from support.loop import unit_policy

from agentnet.network import generate_network
from lameta_proto.v1 import network_pb2
from servicekit import codec
from xapp_composer.control import ControlCore
from xapp_composer.runtime import PolicyRuntime
from xapp_composer.translation import Translation

pytestmark = pytest.mark.fuzz


class _Rapp:
    """Answers every prompt with one vector (the rApp's own checks are fuzzed beside it)."""

    def translate(self, prompt: str, elam: str, app: str, request_id: str) -> Translation:
        return Translation((0.1, 0.2, 0.5, 0.2), elam or "minilm", calibrated=False, fallback=False)

    def served_models(self) -> frozenset[str] | None:
        return None


_RUNTIME = PolicyRuntime(unit_policy())
_NET = generate_network(4)
_GOOD_STATE = codec.encode(
    codec.state_message(_NET, network="default", seq=1, timestamp_ns=time.time_ns())
)
_CORE = ControlCore(_RUNTIME, _Rapp())
assert _CORE.on_state(_GOOD_STATE) is not None

text = st.text(max_size=40)
requests = st.builds(
    network_pb2.ServiceRequest,
    request_id=text,
    prompt=st.text(max_size=200),
    app=st.sampled_from(["immersive", "qa", "content", "critical"]) | text,
    chain_types=st.lists(st.integers(0, 12), max_size=12),
    arrival_rate=st.floats(allow_nan=True, allow_infinity=True),
    timestamp_ns=st.integers(-(2**63), 2**63 - 1),
)
well_formed = st.builds(  # requests the policy can decide: the decision path itself
    network_pb2.ServiceRequest,
    request_id=st.text("abcdef0123456789-", min_size=1, max_size=24),
    prompt=st.text("abcdefghij klmnop,.!", min_size=1, max_size=120).filter(str.strip),
    app=st.sampled_from(["immersive", "qa", "content", "critical"]),
    chain_types=st.lists(st.integers(1, 3), min_size=1, max_size=5),
    arrival_rate=st.floats(0.1, 10.0),
    timestamp_ns=st.integers(0, 2**62),
)


@given(
    st.one_of(
        st.binary(max_size=400),
        requests.map(codec.encode),
        well_formed.map(codec.encode),
        st.tuples(requests.map(codec.encode), st.lists(st.integers(0, 5000), max_size=4),
                  st.integers(0, 6)).map(lambda t: mutate(*t)),
    )
)  # fmt: skip
def test_every_request_payload_gets_an_answer_or_a_counted_drop(payload: bytes) -> None:
    before = sum(_CORE.metrics.snapshot().values())
    res = _CORE.handle_request(payload)
    event(res.status)
    assert res.status in {"decided", "rejected", "duplicate", "dropped"}
    if res.status == "dropped":
        assert res.decision is None and res.reason
        assert sum(_CORE.metrics.snapshot().values()) > before  # counted
    else:
        assert res.request_id and res.decision is not None
        assert res.decision.request_id == res.request_id
        if res.status == "decided":
            assert len(res.decision.chain) > 0 and not res.decision.rejection
        elif res.status == "rejected":
            assert res.decision.rejection and not res.decision.chain
        # what is published must itself pass the emulator's decoder
        codec.decode_decision(codec.encode(res.decision))
        _CORE.forget(res.request_id)


@given(
    st.one_of(
        st.binary(max_size=400),
        st.tuples(st.just(_GOOD_STATE), st.lists(st.integers(0, 20_000), min_size=1,
                  max_size=6), st.integers(0, 40)).map(lambda t: mutate(*t)),
    )
)  # fmt: skip
def test_a_bad_state_payload_never_replaces_the_serving_state(payload: bytes) -> None:
    serving = _CORE.state
    live = _CORE.on_state(payload)
    event("installed" if live is not None else "refused")
    if live is None:
        assert _CORE.state is serving
    else:  # a mutation that still describes a valid network is a state like any other
        assert _CORE.state is live
        _CORE.on_state(_GOOD_STATE)
