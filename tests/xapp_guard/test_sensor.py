"""The sensor against a real Mosquitto: who published what, joined with the payloads."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as paho
from guard_support import drain
from paho.mqtt.enums import CallbackAPIVersion
from support.mqtt import wait_until

from servicekit import codec
from servicekit.mqtt import MqttClient, Topics
from xapp_guard.events import Event
from xapp_guard.sensor import FileTail, Joiner, Sensor

T = Topics.for_network("default")


def _client(url_port: int, client_id: str) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    c.connect("127.0.0.1", url_port)
    c.loop_start()
    return c


def test_publishers_are_named_and_payloads_joined(mosquitto, tmp_path) -> None:
    access = tmp_path / "access.jsonl"
    access.write_text("")
    sensor = Sensor("default", mosquitto.log, MqttClient(mosquitto.url, "guard", client_id="guard"),
                    access).start()  # fmt: skip
    try:
        sim = _client(mosquitto.port, "sim-ric-default")
        xapp = _client(mosquitto.port, "xapp-composer-default")
        xapp.subscribe(T.requests, qos=1)
        time.sleep(0.3)
        req = codec.encode(codec.ServiceRequest(request_id="r1", prompt="p", chain_types=[1]))
        sim.publish(T.requests, req, qos=1).wait_for_publish(5)
        dec = codec.encode(codec.ControlDecision(request_id="r1", chain=[3]))
        xapp.publish(T.control, dec, qos=1).wait_for_publish(5)
        xapp.publish(T.control, b"\x00garbage", qos=0).wait_for_publish(5)
        out = codec.encode(codec.Outcome(request_id="r1", code="served"))
        sim.publish(T.outcomes, out, qos=1).wait_for_publish(5)
        sim.publish(T.state, b"s" * 50, qos=1).wait_for_publish(5)
        with access.open("a") as fh:
            fh.write(
                json.dumps(
                    {
                        "t": 1.0,
                        "peer": "ipv4:127.0.0.1:5",
                        "identity": "",
                        "method": "/lameta.v1.IntentService/Translate",
                        "code": "OK",
                        "request_bytes": 40,
                        "request_id": "r1",
                    }
                )
                + "\n"
            )
            fh.write("not json\n")  # fmt: skip
        xapp.disconnect()
        sim.loop_stop()
        sim.socket().close()  # no DISCONNECT: an abrupt end
        got = drain(sensor.events, lambda g: sum(e.kind == "disconnect" for e in g) >= 2 and
                    any(e.kind == "rpc" for e in g) and sum(e.kind == "publish" for e in g) >= 5)  # fmt: skip
    finally:
        sensor.stop()
    pubs = [e for e in got if e.kind == "publish" and e.client != "guard"]
    by = {(e.client, e.topic.rsplit("/", 1)[1], e.decoded): e for e in pubs}
    assert by[("sim-ric-default", "requests", "ok")].rid == "r1"
    assert by[("sim-ric-default", "requests", "ok")].size == len(req)
    assert by[("xapp-composer-default", "control", "ok")].rid == "r1"
    assert ("xapp-composer-default", "control", "garbage") in by
    assert by[("sim-ric-default", "outcomes", "ok")].code == "served"
    assert by[("sim-ric-default", "state", "")].size == 50  # not a payload topic: not joined
    delivered = [e for e in got if e.kind == "deliver" and e.client == "xapp-composer-default"]
    assert [e.size for e in delivered] == [len(req)]
    ends = {e.client: e.code for e in got if e.kind == "disconnect"}
    assert ends == {"xapp-composer-default": "clean", "sim-ric-default": "closed"}
    assert {e.client for e in got if e.kind == "connect"} >= {
        "sim-ric-default",
        "xapp-composer-default",
    }
    (rpc,) = [e for e in got if e.kind == "rpc"]
    assert (rpc.client, rpc.rid, rpc.size) == ("grpc:ipv4:127.0.0.1:5", "r1", 40)
    assert sensor.stats()["unparsed_access_lines"] == 1
    assert sensor.stats()["joined"] >= 4


def test_joiner_resynchronises_after_a_missing_payload() -> None:
    out: list[Event] = []
    now = [100.0]
    j = Joiner("default", out.append, join_timeout=1.0, clock=lambda: now[0])
    req = codec.encode(codec.ServiceRequest(request_id="r2", prompt="p", chain_types=[1]))
    j.line(Event(99.0, "publish", "a", T.requests, 500))  # its payload never comes
    j.line(Event(99.5, "publish", "b", T.requests, len(req)))
    j.payload(T.requests, req)
    assert [(e.client, e.rid, e.decoded) for e in out] == [("a", "", ""), ("b", "r2", "ok")]
    assert j.counters["mismatches"] == 1
    # A payload with no line (a retained replay at subscribe) expires and is dropped.
    j.payload(T.requests, b"old")
    now[0] = 102.0
    j.expire()
    assert j.counters["payload_timeouts"] == 1
    j.line(Event(102.0, "publish", "c", T.control, 7))
    now[0] = 104.0
    j.expire()
    assert out[-1].client == "c" and j.counters["line_timeouts"] == 1


def test_file_tail_follows_truncation_and_rotation(tmp_path) -> None:
    path = tmp_path / "broker.log"
    path.write_text("old line\n")
    lines: list[str] = []
    tail = FileTail(path, lines.append, poll_s=0.01).start()
    try:
        time.sleep(0.1)
        with path.open("a") as fh:
            fh.write("one\ntw")
            fh.flush()
            wait_until(lambda: lines == ["one"], 5, "first line")
            fh.write("o\n")
        wait_until(lambda: lines == ["one", "two"], 5, "a line written in two parts")
        path.rename(tmp_path / "broker.log.1")
        path.write_text("three\n")
        wait_until(lambda: lines[-1:] == ["three"], 5, "the rotated file's first line")
        path.write_text("")
        with path.open("a") as fh:
            fh.write("four\n")
        wait_until(lambda: lines[-1:] == ["four"], 5, "a line after truncation")
    finally:
        tail.stop()
    assert "old line" not in lines and tail.reopened >= 1
