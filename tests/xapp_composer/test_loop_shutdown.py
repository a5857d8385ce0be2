"""Graceful shutdown of the xApp service and its persistent session, against a real
Mosquitto: requests in flight at SIGTERM finish and are published; requests published
while no xApp runs wait in the broker and are decided by the next instance (same client
id); every request gets exactly one decision.

The service runs in-process (``XappService.run``) with a scripted, slow rApp, so that the
test can stop it while translations are in flight; the real rApp runs in
``test_loop_e2e.py``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from support.loop import DecisionRecorder, Mosquitto, unit_policy, wait_until

from agentnet.network import generate_network
from lameta_proto.v1 import network_pb2
from servicekit import codec
from servicekit.mqtt import MqttClient, Topics
from xapp_composer.control import ControlCore
from xapp_composer.loop import XappService
from xapp_composer.metrics import XappMetrics
from xapp_composer.runtime import PolicyRuntime
from xapp_composer.settings import COMPONENT, XappSettings
from xapp_composer.translation import Translation

pytestmark = pytest.mark.slow

NETWORK = "sd"
VEC = (0.2, 0.2, 0.4, 0.2)


class ScriptedRapp:
    """The rApp as the service sees it, translating after ``delay`` seconds."""

    target = "scripted"

    def __init__(self, delay: float):
        self.delay = delay
        self.lock = threading.Lock()
        self.started: list[str] = []

    @property
    def reachable(self) -> bool:
        return True

    def translate(self, prompt: str, elam: str, app: str, request_id: str) -> Translation:
        with self.lock:
            self.started.append(request_id)
        time.sleep(self.delay)
        return Translation(VEC, elam or "minilm")  # type: ignore[arg-type]

    def served_models(self):
        return None

    def check_health(self, timeout: float = 1.0) -> bool:
        return True

    def report_outcome(self, prompt, vector, reward, app, request_id) -> int:
        return 0

    def close(self) -> None:
        pass


class RunningXapp:
    """An :class:`XappService` running on a thread until :meth:`stop`."""

    def __init__(self, url: str, rapp: ScriptedRapp):
        settings = XappSettings(
            broker=url,
            network=NETWORK,
            policy=unit_policy(),
            policy_reload_period=0,
            deciders=2,
            shutdown_grace=20,
            health_host="127.0.0.1",
            health_port=0,
            reconnect_min_delay=0.2,
            reconnect_max_delay=1.0,
        )
        core = ControlCore(PolicyRuntime(settings.policy), rapp, metrics=XappMetrics())
        client = MqttClient(
            settings.broker,
            COMPONENT,
            client_id=settings.client_id,
            persistent_session=True,
            reconnect_min_delay_s=0.2,
            reconnect_max_delay_s=1.0,
            manual_ack=True,
        )
        self.service = XappService(settings, core, rapp, client, PolicyRuntime)
        self.stop_event = threading.Event()
        self.code: list[int] = []
        self.thread = threading.Thread(
            target=lambda: self.code.append(self.service.run(self.stop_event)), daemon=True
        )

    def start(self) -> RunningXapp:
        self.thread.start()
        wait_until(lambda: self.service.client.connected, 10, "xApp connected")
        return self

    def stop(self, timeout: float = 30.0) -> int:
        self.stop_event.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the xApp did not stop"
        return self.code[0]


def _request(rid: str) -> bytes:
    return codec.encode(
        network_pb2.ServiceRequest(
            request_id=rid,
            prompt="summarise the lab results exactly",
            app="qa",
            chain_types=[1, 2, 3],
            arrival_rate=1.0,
        )
    )


def test_in_flight_requests_finish_and_queued_ones_wait_for_the_next_instance(
    tmp_path: Path,
) -> None:
    broker = Mosquitto(tmp_path).start()
    topics = Topics.for_network(NETWORK)
    rec = DecisionRecorder(broker.url, network=NETWORK).start()
    pub = MqttClient(broker.url, "test-emulator")
    pub.start()
    assert pub.wait_connected(5)
    net = generate_network(3)

    def fresh_state(seq: int) -> None:
        state = codec.state_message(net, network=NETWORK, seq=seq, timestamp_ns=time.time_ns())
        assert pub.publish(topics.state, codec.encode(state), qos=1, retain=True)

    first = second = None
    try:
        slow = ScriptedRapp(delay=0.5)
        first = RunningXapp(broker.url, slow).start()
        fresh_state(1)
        wait_until(lambda: first.service.core.state is not None, 10, "first state")
        batch = [f"a{i}" for i in range(6)]
        for rid in batch:
            assert pub.publish(topics.requests, _request(rid), qos=1)
        wait_until(lambda: len(slow.started) >= 2, 10, "two translations in flight")
        assert first.stop() == 0  # SIGTERM's path: stop while requests are in flight
        decided_first = set(rec.by_request())
        with slow.lock:
            in_flight = set(slow.started)
        assert in_flight <= decided_first, "requests in flight at stop were not finished"
        wait_until(lambda: rec.status[-1:] == [b"offline"], 10, "offline status")
        # Published while no xApp runs: kept by the broker for the xApp's session.
        later = ["b0", "b1"]
        for rid in later:
            assert pub.publish(topics.requests, _request(rid), qos=1)
        assert pub.flush(5)
        fresh_state(2)
        second = RunningXapp(broker.url, ScriptedRapp(delay=0.0)).start()
        everything = set(batch) | set(later)
        wait_until(lambda: set(rec.by_request()) >= everything, 20, "every request decided")
        time.sleep(0.5)  # a second decision for any of them would arrive by now
        decisions = rec.by_request()
        assert set(decisions) == everything
        assert all(len(v) == 1 for v in decisions.values()), decisions
        for rid, (d,) in decisions.items():
            assert not d.rejection and len(d.chain) == 3, (rid, d.rejection)
        assert second.service.metrics.snapshot().get("duplicates", 0) == 0
        assert second.stop() == 0
    finally:
        for x in (first, second):
            if x is not None and x.thread.is_alive():
                x.stop()
        pub.stop()
        rec.stop()
        broker.stop()
