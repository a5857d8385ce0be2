"""Fuzz of every MQTT payload decoder and of the emulator's control and policy handlers:
whatever arrives, a decoder answers with a message or a DecodeError naming the cause, the
emulator answers every control payload with an outcome and every policy payload with a
code (never an exception). The xApp's handlers: tests/xapp_composer/test_handler_fuzz.py;
the rApp's request checks: tests/rapp_intent/test_input_fuzz.py."""

from __future__ import annotations

import math
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fuzz import mutate

from agentnet.intents import LabelledIntent
from agentnet.network import generate_network
from servicekit import codec
from sim_ric.emulator import REFUSAL_CODES, RESOLVING_CODES, Emulator, EmulatorConfig

pytestmark = pytest.mark.fuzz

DECODERS = (
    codec.decode,
    codec.decode_state,
    codec.decode_request,
    codec.decode_decision,
    codec.decode_outcome,
    codec.decode_policy,
    codec.decode_chunk,
)
CODES = {"garbage", "unsupported_schema", "wrong_message_type", "missing_field", "invalid_field"}

floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
text = st.text(max_size=64)
decisions = st.builds(
    codec.ControlDecision,
    request_id=text,
    chain=st.lists(st.integers(0, 2**32 - 1), max_size=6),
    elam=text,
    predicted=st.lists(floats, max_size=6),
    policy_version=text,
    fallback=st.booleans(),
    rejection=text,
    timestamp_ns=st.integers(-(2**63), 2**63 - 1),
)
requests = st.builds(
    codec.ServiceRequest,
    request_id=text,
    prompt=st.text(max_size=300),
    app=text,
    chain_types=st.lists(st.integers(0, 2**32 - 1), max_size=6),
    arrival_rate=st.floats(allow_nan=True, allow_infinity=True),
    timestamp_ns=st.integers(-(2**63), 2**63 - 1),
)
outcomes = st.builds(
    codec.Outcome,
    request_id=text,
    accepted=st.booleans(),
    reason=text,
    code=text,
    resolved=st.booleans(),
    reward=st.floats(allow_nan=True, allow_infinity=True),
    predicted=st.lists(floats, max_size=6),
    chain=st.lists(st.integers(0, 2**32 - 1), max_size=6),
    prompt=text,
    app=text,
)
policies = st.builds(
    codec.Policy,
    network=st.sampled_from(["default", "other", ""]) | text,
    negotiation_id=text,
    arrival_rate=st.floats(allow_nan=True, allow_infinity=True),
    timestamp_ns=st.integers(-(2**63), 2**63 - 1),
    valid_until_ns=st.integers(-(2**63), 2**63 - 1),
    capacity=st.floats(allow_nan=True, allow_infinity=True),
    state_seq=st.integers(0, 2**64 - 1),
    reason=text,
)
messages = st.one_of(decisions, requests, outcomes, policies)


def _check(decoder, data: bytes) -> None:
    try:
        decoder(data)
    except codec.DecodeError as exc:
        assert exc.code in CODES and exc.reason


@given(st.binary(max_size=512))
def test_decoders_on_random_bytes(data: bytes) -> None:
    for decoder in DECODERS:
        _check(decoder, data)


@given(messages, st.lists(st.integers(0, 10_000), max_size=4), st.integers(0, 8))
def test_decoders_on_mutated_envelopes(msg, flips: list[int], cut: int) -> None:
    data = mutate(codec.encode(msg), flips, cut)
    for decoder in DECODERS:
        _check(decoder, data)


@given(messages)
def test_whatever_validates_round_trips(msg) -> None:
    data = codec.encode(msg)
    try:
        back = codec.decode(data)
    except codec.DecodeError:
        return
    assert codec.encode(back) == data


_NET = generate_network(2, n_agents=60)
_KEY = codec.keyframe_chunks(codec.keyframe_message(_NET, network="n"), 700)
_DELTA = codec.encode(
    codec.delta_chunk(
        codec.delta_message(_NET, network="n", seq=1, timestamp_ns=1, keyframe=_KEY[0].keyframe_id)
    )
)


def _parts_of(data: bytes) -> None:
    """Decode a chunk payload as far as it goes: a delta into the network of the keyframe,
    a keyframe chunk into an assembler holding the genuine other chunks."""
    chunk = codec.decode_chunk(data)
    if chunk.body == codec.StateChunk.DELTA:
        delta = codec.decode_delta(chunk)
        key, kid = _assembled()
        try:
            codec.network_from_parts(key, kid, delta)
        except codec.DecodeError as exc:
            if exc.code != "missing_keyframe":
                raise
        return
    asm = codec.KeyframeAssembler()
    for other in _KEY:
        if other.index != chunk.index:
            asm.add(other)
    asm.add(chunk)


def _assembled():
    asm = codec.KeyframeAssembler()
    return [asm.add(c) for c in _KEY][-1]


@given(st.sampled_from(range(len(_KEY) + 1)), st.lists(st.integers(0, 100_000), max_size=4),
       st.integers(0, 8))  # fmt: skip
def test_state_parts_decoders_on_mutated_chunks(which: int, flips: list[int], cut: int) -> None:
    assert len(_KEY) > 1
    base = _DELTA if which == len(_KEY) else codec.encode(_KEY[which])
    _check(_parts_of, mutate(base, flips, cut))


@given(st.binary(max_size=512), st.booleans())
def test_state_parts_decoders_on_random_bodies(data: bytes, delta: bool) -> None:
    body = codec.StateChunk.DELTA if delta else codec.StateChunk.KEYFRAME
    for payload in (data, zlib.compress(data)):
        if not payload:
            continue
        chunk = codec.StateChunk(network="n", body=body, keyframe_id=_KEY[0].keyframe_id,
                                 count=1, size=len(payload), data=payload)  # fmt: skip
        _check(_parts_of, codec.encode(chunk))


_EMU = Emulator(
    [LabelledIntent("a request", (0.25, 0.25, 0.25, 0.25), "qa")],
    EmulatorConfig(seed=5, pending_timeout_s=1e9),
)
_PENDING = [_EMU.new_request().request_id for _ in range(3)]


@given(st.one_of(st.binary(max_size=512), decisions.map(codec.encode)),
       st.sampled_from([None, *_PENDING]))  # fmt: skip
def test_the_emulator_answers_every_control_payload(payload: bytes, rid) -> None:
    if rid is not None and payload and not payload.startswith(b"\x00"):
        try:
            d = codec.decode_decision(payload)
            d.request_id = rid
            d.rejection = ""  # keep the pending requests pending: a refusal or a serve
            payload = codec.encode(d)
        except codec.DecodeError:
            pass
    out = _EMU.handle_control(payload)
    assert out.code in (*REFUSAL_CODES, *RESOLVING_CODES)
    assert out.resolved == (out.code in RESOLVING_CODES)
    if out.code == "served":  # settled: keep three requests pending for the next example
        assert math.isfinite(out.reward) or not out.feasible
        _PENDING.remove(out.request_id)
        _PENDING.append(_EMU.new_request().request_id)


POLICY_CODES = {"applied", "cleared", "wrong_network", "expired", "stale", *CODES}


@given(st.one_of(st.binary(max_size=512), policies.map(codec.encode)))
def test_the_emulator_answers_every_policy_payload(payload: bytes) -> None:
    emu = Emulator(
        [LabelledIntent("a request", (0.25, 0.25, 0.25, 0.25), "qa")],
        EmulatorConfig(seed=5, pending_timeout_s=1e9),
    )
    code = emu.apply_policy(payload)
    assert code in POLICY_CODES
    if code == "applied":  # only a policy that passed every check is in force
        p = emu.policy
        assert math.isfinite(p.arrival_rate) and p.arrival_rate >= 0
        assert p.network == emu.cfg.network
    else:
        assert emu.policy is None
