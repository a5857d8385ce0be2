"""The state feed every reader of the state shares: whole states pass through, deltas come
back with their keyframe, a delta whose keyframe is not held is counted, waits for it and
is handed back when it completes, and nothing of the large format is taken for a wrong
message type."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from agentnet.network import generate_network
from servicekit import codec
from servicekit.statefeed import StateFeed, StateParts, update_arrays, update_network


def encoded_parts(net, seq: int, chunk_bytes: int = 4000) -> tuple[list[bytes], bytes]:
    chunks = codec.keyframe_chunks(codec.keyframe_message(net, network="n"), chunk_bytes)
    delta = codec.delta_message(
        net, network="n", seq=seq, timestamp_ns=seq, keyframe=chunks[0].keyframe_id
    )
    return [codec.encode(c) for c in chunks], codec.encode(codec.delta_chunk(delta))


def counted() -> tuple[StateFeed, Counter[str]]:
    events: Counter[str] = Counter()
    return StateFeed(lambda e: events.update([e])), events


def test_a_whole_state_passes_through() -> None:
    feed, events = counted()
    net = generate_network(3)
    msg = feed.on_state(codec.encode(codec.state_message(net, network="n", seq=2, timestamp_ns=1)))
    assert isinstance(msg, codec.NetworkState) and msg.seq == 2
    assert np.array_equal(update_network(msg).available, net.available)
    assert not events


def test_a_delta_after_its_keyframe_is_the_whole_state() -> None:
    feed, events = counted()
    net = generate_network(4, n_agents=300)
    net.available[::7] = False
    chunks, delta = encoded_parts(net, seq=5)
    assert len(chunks) > 1
    assert [feed.on_keyframe_chunk(c) for c in chunks] == [None] * len(chunks)
    parts = feed.on_state(delta)
    assert isinstance(parts, StateParts) and (parts.seq, parts.timestamp_ns) == (5, 5)
    whole = codec.state_message(net, network="n", seq=5, timestamp_ns=5)
    a, b = update_arrays(parts), update_arrays(whole)
    for name in ("types", "available", "observations", "failures", "edges", "ber", "latency"):
        assert np.allclose(getattr(a, name), getattr(b, name)), name
    assert parts.arrival_rate == whole.arrival_rate
    assert events == Counter(keyframe=1)


def test_a_delta_before_its_keyframe_waits_and_is_handed_back() -> None:
    feed, events = counted()
    net = generate_network(5, n_agents=200)
    chunks, first = encoded_parts(net, seq=1)
    _, second = encoded_parts(net, seq=2)
    assert feed.on_state(first) is None and feed.on_state(second) is None
    assert events == Counter(awaiting_keyframe=2, dropped_no_keyframe=1)
    *head, last = chunks
    assert all(feed.on_keyframe_chunk(c) is None for c in head)
    resync = feed.on_keyframe_chunk(last)
    assert isinstance(resync, StateParts) and resync.seq == 2  # the newest one waited
    assert feed.waiting is None and events["keyframe"] == 1
    # The keyframe again (republished after a reconnect) changes nothing; an emptied
    # retained topic is ignored.
    assert feed.on_keyframe_chunk(chunks[0]) is None and feed.on_keyframe_chunk(b"") is None
    assert events["keyframe"] == 1


def test_a_waiting_delta_of_another_keyframe_is_dropped_at_the_next_keyframe() -> None:
    feed, events = counted()
    old_chunks, _ = encoded_parts(generate_network(6), seq=1)
    _, stray = encoded_parts(generate_network(7), seq=3)
    assert feed.on_state(stray) is None
    for c in old_chunks:
        assert feed.on_keyframe_chunk(c) is None
    assert feed.waiting is None
    assert events == Counter(awaiting_keyframe=1, keyframe=1, dropped_no_keyframe=1)


@pytest.mark.parametrize(
    ("payload", "code"),
    [(b"\x00junk", "garbage"), (codec.encode(codec.Outcome(code="served")), "wrong_message_type")],
)
def test_what_is_no_state_is_refused_by_name(payload: bytes, code: str) -> None:
    feed, _ = counted()
    with pytest.raises(codec.DecodeError) as info:
        feed.on_state(payload)
    assert info.value.code == code
    with pytest.raises(codec.DecodeError):
        feed.on_keyframe_chunk(payload)
