"""The xApp on the large-state format: a delta that arrives before its keyframe waits for
it, the assembled state decides as the whole state does, and over a real Mosquitto whose
``message_size_limit`` a whole state exceeds, ``sim-ric run`` publishes a chunked keyframe
and deltas the xApp's core turns into decisions."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from support.loop import unit_policy
from support.mqtt import MOSQUITTO, Mosquitto, ServiceProcess, wait_until

from agentnet.network import generate_network
from lameta_proto.v1 import network_pb2
from servicekit import codec
from servicekit.mqtt import MqttClient, Topics, loopback_mosquitto_conf
from xapp_composer.control import ControlCore
from xapp_composer.runtime import PolicyRuntime
from xapp_composer.translation import Translation

VEC = (0.1, 0.2, 0.5, 0.2)


class Rapp:
    def translate(self, prompt: str, elam: str, app: str, request_id: str) -> Translation:
        return Translation(VEC, elam or "minilm", calibrated=True, fallback=False)  # type: ignore[arg-type]

    def served_models(self):
        return None


@pytest.fixture(scope="module")
def runtime() -> PolicyRuntime:
    return PolicyRuntime(unit_policy())


def request(rid: str) -> bytes:
    return codec.encode(
        network_pb2.ServiceRequest(request_id=rid, prompt="render my scene, no lag",
                                   app="immersive", chain_types=[1, 2, 3], arrival_rate=1.0)
    )  # fmt: skip


def encoded_parts(net, seq: int, chunk_bytes: int = 4000):
    chunks = codec.keyframe_chunks(codec.keyframe_message(net, network="default"), chunk_bytes)
    delta = codec.delta_message(
        net, network="default", seq=seq, timestamp_ns=0, keyframe=chunks[0].keyframe_id
    )
    return [codec.encode(c) for c in chunks], codec.encode(codec.delta_chunk(delta))


def test_a_delta_waits_for_its_keyframe_and_decides_as_the_whole_state(runtime) -> None:
    net = generate_network(8, n_agents=300)
    net.available[::5] = False
    whole = ControlCore(runtime, Rapp())
    whole.on_state(codec.encode(codec.state_message(net, network="default", seq=3, timestamp_ns=0)))
    chunks, delta = encoded_parts(net, seq=3)
    assert len(chunks) > 1
    core = ControlCore(runtime, Rapp())
    assert core.on_state(delta) is None and core.state is None  # no keyframe yet
    assert core.metrics.states.labels("awaiting_keyframe")._value.get() == 1
    installed = [core.on_keyframe_chunk(c) for c in chunks]
    assert all(x is None for x in installed[:-1]) and installed[-1] is not None
    assert core.state.seq == 3 and core.state.net.n_agents == 300
    a = whole.handle_request(request("a")).decision
    b = core.handle_request(request("a")).decision
    assert not a.rejection and list(a.chain) == list(b.chain)
    # The next tick's delta needs no keyframe again, and is prepared from the last state.
    net.observations = net.observations + 1.0
    _, nxt = encoded_parts(net, seq=4)
    live = core.on_state(nxt)
    assert live is not None and live.seq == 4
    assert np.array_equal(live.net.observations, net.observations)


def test_a_delta_of_another_network_size_is_rejected_and_counted(runtime) -> None:
    core = ControlCore(runtime, Rapp())
    chunks, _ = encoded_parts(generate_network(8, n_agents=300), seq=1)
    for c in chunks:
        core.on_keyframe_chunk(c)
    small = generate_network(8)
    key_id = core.keyframe[1]
    delta = codec.delta_message(small, network="default", seq=2, timestamp_ns=0, keyframe=key_id)
    assert core.on_state(codec.encode(codec.delta_chunk(delta))) is None
    assert core.metrics.states.labels("malformed_invalid_field")._value.get() == 1


@pytest.mark.slow
def test_sim_ric_streams_a_state_above_the_broker_limit(runtime, tmp_path: Path) -> None:
    assert Path(MOSQUITTO).exists()
    limit = 64 * 1024
    broker = Mosquitto(tmp_path)
    broker.conf.write_text(loopback_mosquitto_conf(broker.port, f"message_size_limit {limit}"))
    broker.start()
    core = ControlCore(runtime, Rapp())
    topics = Topics.for_network("default")
    lock = threading.Lock()
    sizes: dict[str, list[int]] = {"state": [], "keyframe": []}

    def on_state(topic: str, payload: bytes) -> None:
        with lock:
            sizes["state"].append(len(payload))
            core.on_state(payload)

    def on_keyframe(topic: str, payload: bytes) -> None:
        with lock:
            sizes["keyframe"].append(len(payload))
            core.on_keyframe_chunk(payload)

    client = MqttClient(broker.url, "xapp-test")
    client.subscribe(topics.state, on_state, qos=1)
    client.subscribe(topics.keyframes, on_keyframe, qos=1)
    client.start()
    sim = ServiceProcess(
        ["--broker", broker.url, "--agents", "1500", "--state-format", "keyframe",
         "--state-period", "0.3", "--rate", "0", "--duration", "120"],
        tmp_path,
        env={"SIM_STATE_CHUNK_BYTES": "20000"},
    )  # fmt: skip
    try:
        wait_until(lambda: core.state is not None and core.state.seq >= 3, 60.0, "3 states")
        whole = codec.encode(codec.state_message(core.state.net, network="default", seq=1,
                                                 timestamp_ns=0))  # fmt: skip
        assert len(whole) > limit  # what the broker would refuse
        with lock:
            assert len(sizes["keyframe"]) >= 3 and max(sizes["keyframe"]) < limit
            assert max(sizes["state"]) < limit
        assert core.state.net.n_agents == 1500
        res = core.handle_request(request("r-1"))
        d = res.decision
        assert res.status == "decided" and not d.rejection, d
        assert [int(core.state.net.types[a]) for a in d.chain] == [1, 2, 3]
        assert core.metrics.states.labels("keyframe")._value.get() == 1
        assert sim.alive(), sim.logs()[-2000:]
    finally:
        sim.terminate()
        client.stop()
        broker.stop()
