"""The large-state format (``StateKeyframe`` in chunks + ``StateDelta`` per tick): the
network it rebuilds equals the whole ``NetworkState``'s, chunks assemble in any order,
and every inconsistency (a chunk of another body, a delta of another keyframe or size, a
zlib bomb) is a :class:`~servicekit.codec.DecodeError` naming the cause."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from agentnet.network import generate_network
from servicekit import codec

FIELDS = ("types", "cloud", "x", "y", "p_success", "mu", "cv", "compute", "n_params", "speed",
          "observations", "failures", "available", "edges", "link_ber", "length")  # fmt: skip


def parts(net, chunk_bytes=1 << 20, seq=4):
    chunks = codec.keyframe_chunks(codec.keyframe_message(net, network="n"), chunk_bytes)
    delta = codec.delta_message(
        net, network="n", seq=seq, timestamp_ns=9, keyframe=chunks[0].keyframe_id
    )
    return chunks, codec.delta_chunk(delta)


def assemble(chunks):
    asm = codec.KeyframeAssembler()
    done = [asm.add(codec.decode_chunk(codec.encode(c))) for c in chunks]
    assert all(d is None for d in done[:-1])
    return done[-1]


@pytest.mark.parametrize("n", [81, 400])
def test_parts_rebuild_the_network_of_the_whole_state(n) -> None:
    net = generate_network(5, n_agents=n)
    net.available[::7] = False
    net.failures = net.failures + 1.0
    chunks, dchunk = parts(net, chunk_bytes=2000)
    assert len(chunks) > 2  # several chunks, reassembled out of order below
    key, kid = assemble(chunks[::-1])
    delta = codec.decode_delta(codec.decode_chunk(codec.encode(dchunk)))
    rebuilt = codec.network_from_parts(key, kid, delta)
    whole = codec.network_from_state(
        codec.decode_state(
            codec.encode(codec.state_message(net, network="n", seq=4, timestamp_ns=9))
        )
    )
    for f in FIELDS:
        assert np.array_equal(getattr(rebuilt, f), getattr(whole, f)), f
    assert rebuilt.arrival_rate == whole.arrival_rate and rebuilt.cfg == whole.cfg
    assert rebuilt.seed == whole.seed
    arrays = codec.arrays_from_parts(key, kid, delta)
    assert np.array_equal(arrays.latency, net.agent_latency())


def test_a_delta_of_another_keyframe_or_size_is_refused() -> None:
    net = generate_network(5)
    chunks, dchunk = parts(net)
    key, kid = assemble(chunks)
    delta = codec.decode_delta(dchunk)
    with pytest.raises(codec.DecodeError) as e:
        codec.network_from_parts(key, kid ^ 1, delta)
    assert e.value.code == "missing_keyframe"
    delta.link_ber.append(0.1)
    with pytest.raises(codec.DecodeError, match="links") as e:
        codec.network_from_parts(key, kid, delta)
    assert e.value.code == "invalid_field"


def test_a_keyframe_whose_body_does_not_match_its_id_is_refused() -> None:
    chunks, _ = parts(generate_network(5), chunk_bytes=1000)
    other, _ = parts(generate_network(6), chunk_bytes=1000)
    asm = codec.KeyframeAssembler()
    # Same id and header, bytes of another keyframe in one chunk.
    forged = codec.StateChunk()
    forged.CopyFrom(chunks[1])
    forged.data = other[1].data[: len(chunks[1].data)]
    with pytest.raises(codec.DecodeError):
        for c in [chunks[0], forged, *chunks[2:]]:
            asm.add(c)
    # A chunk contradicting the others' header drops what was held for that id.
    asm = codec.KeyframeAssembler()
    asm.add(chunks[0])
    bad = codec.StateChunk()
    bad.CopyFrom(chunks[1])
    bad.size += 1
    with pytest.raises(codec.DecodeError, match="disagree"):
        asm.add(bad)
    assert all(asm.add(c) is None for c in chunks[1:])  # chunk 0 went with the rest


def test_a_zlib_bomb_is_refused_without_inflating_it(monkeypatch) -> None:
    monkeypatch.setattr(codec, "MAX_STATE_BODY_BYTES", 1 << 20)
    packed = zlib.compress(b"\x00" * (4 << 20), 9)
    chunk = codec.StateChunk(network="n", body=codec.StateChunk.DELTA, count=1,
                             size=len(packed), data=packed)  # fmt: skip
    with pytest.raises(codec.DecodeError, match="inflates beyond") as e:
        codec.decode_delta(codec.decode_chunk(codec.encode(chunk)))
    assert e.value.code == "invalid_field"


def test_chunk_headers_are_validated() -> None:
    _, dchunk = parts(generate_network(5))
    cases = {
        "network": dict(network=""),
        "body": dict(body=codec.StateChunk.BODY_UNSPECIFIED),
        "index": dict(index=1),
        "size": dict(size=0),
        "offset": dict(offset=5),
    }
    for what, change in cases.items():
        c = codec.StateChunk()
        c.CopyFrom(dchunk)
        for k, v in change.items():
            setattr(c, k, v)
        with pytest.raises(codec.DecodeError) as e:
            codec.decode_chunk(codec.encode(c))
        assert e.value.code in ("missing_field", "invalid_field"), what
