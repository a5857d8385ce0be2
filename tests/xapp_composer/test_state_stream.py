"""The xApp on the large-state format: a delta that arrives before its keyframe waits for
it, the assembled state decides as the whole state does, and over a real Mosquitto whose
``message_size_limit`` a whole state exceeds, ``sim-ric run`` publishes a chunked keyframe
and deltas on which the xApp service decides every request."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from support.loop import unit_policy
from support.mqtt import MOSQUITTO, Mosquitto, ServiceProcess, free_port, wait_until

from agentnet.network import generate_network
from lameta_proto.v1 import network_pb2
from servicekit import codec
from servicekit.mqtt import MqttClient, Topics, loopback_mosquitto_conf
from xapp_composer.control import ControlCore
from xapp_composer.loop import build_service
from xapp_composer.runtime import PolicyRuntime
from xapp_composer.settings import XappSettings
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


def sim_counters(sim: ServiceProcess) -> dict:
    """The emulator's final counters (its ``service_stopping`` log line)."""
    for line in reversed(sim.logs().splitlines()):
        if '"service_stopping"' in line:
            return json.loads(line)
    raise AssertionError(f"no service_stopping line:\n{sim.logs()[-3000:]}")


@pytest.mark.slow
def test_the_xapp_decides_on_a_state_above_the_broker_limit(tmp_path: Path) -> None:
    """sim-ric and the xApp service over a Mosquitto whose message_size_limit a whole
    1,500-agent state exceeds: keyframe chunks and deltas pass, and every request is settled
    by the xApp (the rApp is down: fallback vectors; some requests have no feasible chain
    at this load and are rejected explicitly)."""
    assert Path(MOSQUITTO).exists()
    limit = 64 * 1024
    whole = codec.encode(
        codec.state_message(generate_network(1, n_agents=1500), network="default", seq=1,
                            timestamp_ns=0)
    )  # fmt: skip
    assert len(whole) > limit  # what the broker refuses
    broker = Mosquitto(tmp_path)
    broker.conf.write_text(loopback_mosquitto_conf(broker.port, f"message_size_limit {limit}"))
    broker.start()
    topics = Topics.for_network("default")
    sizes: list[int] = []
    spy = MqttClient(broker.url, "spy")
    spy.subscribe(topics.state, lambda t, p: sizes.append(len(p)), qos=1)
    spy.subscribe(topics.keyframes, lambda t, p: sizes.append(len(p)), qos=1)
    spy.start()
    settings = XappSettings(
        broker=broker.url,
        policy=unit_policy(),
        rapp=f"127.0.0.1:{free_port()}",
        rapp_deadline_ms=50,
        health_port=0,
        prefer_gpu=False,
    )
    service = build_service(settings)
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,), daemon=True)
    runner.start()
    sim = ServiceProcess(
        ["--broker", broker.url, "--agents", "1500", "--state-format", "keyframe",
         "--state-period", "0.3", "--rate", "2", "--requests", "6", "--duration", "120"],
        tmp_path,
        env={"SIM_STATE_CHUNK_BYTES": "20000"},
    )  # fmt: skip
    try:
        wait_until(lambda: not sim.alive(), 120.0, "sim-ric to settle its 6 requests")
        counters = sim_counters(sim)
        states = service.metrics.states
        assert states.labels("keyframe")._value.get() == 1
        assert states.labels("accepted")._value.get() >= 2
        assert counters["requests"] == 6, counters
        settled = counters.get("outcome.served", 0) + counters.get("outcome.rejected_by_xapp", 0)
        assert settled == 6 and counters.get("outcome.served", 0) > 0, counters
        assert counters.get("outcome.expired", 0) == 0, counters
        assert counters.get("service.keyframes_published", 0) == 1, counters
        assert len(sizes) >= 3 and max(sizes) < limit
        assert service.core.state.net.n_agents == 1500
    finally:
        sim.terminate()
        stop.set()
        runner.join(30)
        spy.stop()
        broker.stop()
