"""The demo's state keeper (beside the read-only observer) on the large-state format,
through a real Mosquitto: sim-ric above its whole-state threshold publishes a keyframe and
deltas, and the keeper holds the state they make; a delta whose keyframe it does not hold
is counted, waits, and is kept once its keyframe arrives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.mqtt import running_mosquitto, sim_in_parts, wait_until

from agentnet.network import generate_network
from lameta_stack.observe import StateKeeper
from servicekit import codec
from servicekit.mqtt import MqttClient, Topics

NETWORK = "keeper"


@pytest.fixture
def broker(tmp_path: Path):
    with running_mosquitto(tmp_path) as b:
        yield b


def keeper_on(broker) -> tuple[StateKeeper, MqttClient]:
    client = MqttClient(broker.url, "observer-test")
    keeper = StateKeeper(client, Topics.for_network(NETWORK))
    client.start()
    assert client.wait_connected(10)
    return keeper, client


@pytest.mark.slow
def test_the_keeper_follows_sim_ric_above_the_whole_state_threshold(broker, tmp_path) -> None:
    keeper, client = keeper_on(broker)
    sim = sim_in_parts(broker.url, NETWORK, tmp_path)
    try:
        wait_until(lambda: keeper.counts["kept"] >= 3, 60, "3 states kept")
        with keeper.lock:
            counts, state = dict(keeper.counts), keeper.state
        assert state is not None and state.n_agents == 81 and state.network == NETWORK
        assert counts["keyframe"] == 1
        assert not [k for k in counts if k.startswith("malformed")], counts
        assert '"keyframe_published"' in sim.logs()
    finally:
        sim.terminate()
        client.stop()


def test_a_delta_before_its_keyframe_is_counted_then_kept(broker) -> None:
    keeper, client = keeper_on(broker)
    topics = Topics.for_network(NETWORK)
    try:
        net = generate_network(2, n_agents=120)
        net.available[::4] = False
        chunks = codec.keyframe_chunks(codec.keyframe_message(net, network=NETWORK), 2_000)
        kid = chunks[0].keyframe_id
        delta = codec.delta_message(net, network=NETWORK, seq=3, timestamp_ns=3, keyframe=kid)
        assert client.publish(topics.state, codec.encode(codec.delta_chunk(delta)), qos=1)
        wait_until(lambda: keeper.counts["awaiting_keyframe"] == 1, 30, "the delta counted")
        assert keeper.state is None
        for c in chunks:
            assert client.publish(topics.keyframe(c.index), codec.encode(c), qos=1)
        wait_until(lambda: keeper.state is not None, 30, "the state kept")
        assert keeper.state.seq == 3 and np.array_equal(keeper.state.available, net.available)
        assert client.publish(topics.state, b"\x00junk", qos=1)
        wait_until(lambda: keeper.counts["malformed_garbage"] == 1, 30, "garbage counted")
        assert keeper.counts["kept"] == 1
    finally:
        client.stop()
