"""Each attack script against a real broker (and a real gRPC server), seen by the sensor and
labelled with its class: the attacker's acting windows carry the class, nobody else's do."""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import numpy as np
import paho.mqtt.client as paho
import pytest
from guard_support import drain
from paho.mqtt.enums import CallbackAPIVersion

from lameta_proto.v1 import intent_pb2
from servicekit import codec
from servicekit.grpc_access import AccessLog
from servicekit.mqtt import MqttClient, Topics, parse_broker_url
from xapp_guard.attacks import REFUSED_IDENTITY, TAP_IDENTITY, Attack, compromised_identity
from xapp_guard.corpus import label_windows
from xapp_guard.features import INDEX, windows_of
from xapp_guard.scenarios import CLASSES, Scenario
from xapp_guard.sensor import Sensor

T = Topics.for_network("default")
BASE = {"jitter": 0.0, "burst": 1, "duration_s": 3.0}
CASES = {
    "forged_decision": {"rate_hz": 5.0, "target": "pending", "valid_chain": "yes"},
    "forged_outcome": {"rate_hz": 5.0, "target": "decided", "reward": 30.0},
    "replay": {"rate_hz": 5.0, "what": "decisions", "delay_s": 0.5},
    "request_flood": {"rate_hz": 20.0, "prompt_bytes": 60},
    "oversize": {"rate_hz": 2.0, "size_bytes": 300_000, "topic": "requests", "garbage": "yes"},
    "memory_poisoning": {"rate_hz": 10.0, "rid": "random", "prompt_bytes": 40},
    "reconnect_storm": {"rate_hz": 5.0, "clean": "no", "subscribe": "yes"},
}
SIGNATURE = {
    "forged_decision": "pub_ctl", "forged_outcome": "pub_out", "replay": "pub_ctl",
    "request_flood": "pub_req", "oversize": "undecodable", "memory_poisoning": "report_unbacked",
    "reconnect_storm": "abrupt",
}  # fmt: skip
"""The feature each attack must move."""


class _Background:
    """Benign traffic: requests at 5/s and a decision for each (what attackers feed on)."""

    def __init__(self, port: int, passwords: dict[str, str] | None = None):
        self.stop = threading.Event()
        self.sim = paho.Client(CallbackAPIVersion.VERSION2, client_id="sim-ric-default")
        self.xapp = paho.Client(CallbackAPIVersion.VERSION2, client_id="xapp-composer-default")
        for c, user in ((self.sim, "sim-ric"), (self.xapp, "xapp-composer")):
            if passwords is not None:
                c.username_pw_set(user, passwords[user])
            c.connect("127.0.0.1", port)
            c.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stop.wait(0.2):
            i += 1
            rid = f"bg-{i}"
            req = codec.ServiceRequest(request_id=rid, prompt="p", chain_types=[1, 2, 3])
            self.sim.publish(T.requests, codec.encode(req), qos=1)
            dec = codec.ControlDecision(request_id=rid, chain=[1, 2, 3])
            self.xapp.publish(T.control, codec.encode(dec), qos=1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(2)
        for c in (self.sim, self.xapp):
            c.disconnect()
            c.loop_stop()


@pytest.fixture
def rapp(tmp_path):
    """A gRPC server with the rApp's access log and a ReportOutcome that accepts anything."""
    log = AccessLog(tmp_path / "access.jsonl")
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[log])
    handler = grpc.method_handlers_generic_handler("lameta.v1.IntentService", {
        "ReportOutcome": grpc.unary_unary_rpc_method_handler(
            lambda req, ctx: intent_pb2.ReportOutcomeResponse(memory_size=1),
            request_deserializer=intent_pb2.ReportOutcomeRequest.FromString,
            response_serializer=intent_pb2.ReportOutcomeResponse.SerializeToString)})  # fmt: skip
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", log.path
    server.stop(None)
    log.close()


@pytest.mark.parametrize("cls", list(CASES))
def test_attack_is_seen_and_labelled(cls: str, mosquitto, rapp) -> None:
    target, access = rapp
    sensor = Sensor("default", mosquitto.log, MqttClient(mosquitto.url, "guard", client_id="guard"),
                    access).start()  # fmt: skip
    scenario = Scenario(cls, "fast", {**BASE, **CASES[cls]})
    attack = Attack(scenario, parse_broker_url(mosquitto.url), "default", "mallory-1",
                    rapp=target, seed=3)  # fmt: skip
    try:
        with _Background(mosquitto.port):
            time.sleep(1.0)
            t0 = time.time()
            done = attack.run()
            t1 = time.time()
            time.sleep(0.5)
        time.sleep(1.5)  # the last broker lines and payloads reach the sensor
    finally:
        sensor.stop()
    events = drain(sensor.events, lambda g: sensor.events.empty(), timeout=5)
    assert done["actions"] >= 5 and not done["errors"]
    labels = {"network": "default", "parts": [{"name": "test", "t_start": t0 - 5, "t_end": t1 + 5}],
              "episodes": [{"class": cls, "variant": "fast", "params": scenario.params,
                            "client": "mallory-1", "grpc": attack.over_grpc, "t_start": t0,
                            "t_end": t1, "part": "test"}]}  # fmt: skip
    windows = windows_of(events, "default", ignore=("guard",))
    y, part, variant, _ = label_windows(windows, events, labels)
    k = CLASSES.index(cls)
    attacker = {w.client for w, label in zip(windows, y, strict=True) if label == k}
    assert len(attacker) == 1, attacker
    (name,) = attacker
    assert name == "mallory-1" or (cls == "memory_poisoning" and name.startswith("grpc:ipv4:"))
    mine = [w for w, label in zip(windows, y, strict=True) if label == k]
    assert len(mine) >= 2
    assert sum(w.x[INDEX[SIGNATURE[cls]]] for w in mine) > 0
    # The background's clients stay benign.
    for w, label in zip(windows, y, strict=True):
        if w.client in ("sim-ric-default", "xapp-composer-default"):
            assert label == 0
    assert set(np.unique(part[y == k])) == {"test"} and set(variant[y == k]) == {"fast"}


def test_under_the_acl_compromised_identities_get_through_and_others_are_refused(
    acl_mosquitto,
) -> None:
    """On the deployment's broker a replay by the emulator's (compromised) user reads the
    requests through its tap and publishes them; a forged decision by a user without the
    right is denied by the broker, and its episode's windows are left out of the labels."""
    b = acl_mosquitto
    sensor = Sensor("default", b.log, MqttClient(b.url_for("xapp-guard"), "xapp-guard",
                                                 client_id="guard"), None).start()  # fmt: skip
    replay = Scenario("replay", "fast", {**BASE, "rate_hz": 5.0, "what": "requests",
                                         "delay_s": 0.5})  # fmt: skip
    forged = Scenario("forged_decision", "fast", {**BASE, **CASES["forged_decision"]})
    assert compromised_identity(replay) == "sim-ric"
    runs = []
    try:
        with _Background(b.port, b.passwords):
            time.sleep(1.0)
            for name, scenario, user in (("mallory-1", replay, compromised_identity(replay)),
                                         ("eve-1", forged, REFUSED_IDENTITY)):  # fmt: skip
                attack = Attack(scenario, parse_broker_url(b.url_for(user)), "default", name,
                                seed=3, tap=parse_broker_url(b.url_for(TAP_IDENTITY)))  # fmt: skip
                t0 = time.time()
                done = attack.run()
                runs.append((name, scenario, user, done, t0, time.time()))
            time.sleep(0.5)
        time.sleep(1.5)
    finally:
        sensor.stop()
    events = drain(sensor.events, lambda g: sensor.events.empty(), timeout=5)
    denied = {e.client for e in events if e.kind == "denied"}
    assert "eve-1" in denied and "mallory-1" not in denied
    # The tap feeds the replay (the first tick may come before the tap's first message).
    assert runs[0][3]["actions"] >= 5 and runs[0][3].get("skipped", 0) <= 2
    episodes = [{"class": s.cls, "variant": "fast", "client": n, "tap": f"{n}-tap",
                 "identity": u, "refused": u == REFUSED_IDENTITY, "grpc": False,
                 "t_start": t0, "t_end": t1, "part": "test"}
                for n, s, u, _, t0, t1 in runs]  # fmt: skip
    labels = {"network": "default", "episodes": episodes,
              "parts": [{"name": "test", "t_start": runs[0][4] - 5, "t_end": runs[-1][5] + 5}]}  # fmt: skip
    windows = windows_of(events, "default", ignore=("guard",))
    y, *_ = label_windows(windows, events, labels)
    by_client: dict[str, set[int]] = {}
    for w, label in zip(windows, y, strict=True):
        by_client.setdefault(w.client, set()).add(int(label))
    assert CLASSES.index("replay") in by_client["mallory-1"]
    assert sum(w.x[INDEX["pub_req"]] for w in windows if w.client == "mallory-1") >= 5
    assert by_client["mallory-1-tap"] == {-1}  # the tap reads, nothing to learn from
    assert by_client["eve-1"] == {-1}  # refused at the broker: not the guard's to learn
    assert by_client["sim-ric-default"] == {0} and by_client["xapp-composer-default"] == {0}
