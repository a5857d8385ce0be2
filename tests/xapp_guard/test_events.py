"""The sensor's parsers: Mosquitto's log lines, the rApp's access log, payload decoding."""

from __future__ import annotations

import json

import pytest

from servicekit import codec
from xapp_guard.events import (
    Event,
    parse_access_line,
    parse_mosquitto_line,
    payload_info,
    topic_kind,
)

TOPIC = "lameta/v1/default/control"


@pytest.mark.parametrize(
    ("line", "kind", "client", "code"),
    [
        ("1796653229: New client connected from 127.0.0.1:38971 as pub1 (p2, c1, k60).",
         "connect", "pub1", ""),
        ("1796653229: New client connected from 127.0.0.1:1 as sim-ric-default (p2, c0, k30, u'sim').",
         "connect", "sim-ric-default", ""),
        ("1796653230: Client pub1 disconnected.", "disconnect", "pub1", "clean"),
        ("1796653231: Client sensor closed its connection.", "disconnect", "sensor", "closed"),
        ("1: Client x has exceeded timeout, disconnecting.", "disconnect", "x", "timeout"),
        ("1: Socket error on client x, disconnecting.", "disconnect", "x", "socket_error"),
        ("1: Client x already connected, closing old connection.", "disconnect", "x", "takeover"),
        ("1: Client <unknown> disconnected, not authorised.", "disconnect", "?", "not_authorised"),
        ("1: Received SUBSCRIBE from xapp-composer-default", "subscribe", "xapp-composer-default", ""),
    ],
)  # fmt: skip
def test_connection_lines(line: str, kind: str, client: str, code: str) -> None:
    ev = parse_mosquitto_line(line)
    assert ev is not None
    assert (ev.kind, ev.client, ev.code) == (kind, client, code)


def test_publish_deliver_and_denied_lines_carry_topic_and_size() -> None:
    got = parse_mosquitto_line(
        f"1796653229: Received PUBLISH from pub1 (d0, q1, r0, m3, '{TOPIC}', ... (312 bytes))"
    )
    assert got == Event(1796653229.0, "publish", "pub1", TOPIC, 312)
    sent = parse_mosquitto_line(
        f"1796653229: Sending PUBLISH to obs (d0, q1, r0, m5, '{TOPIC}', ... (10 bytes))", t=7.25
    )
    assert (sent.kind, sent.client, sent.size, sent.t) == ("deliver", "obs", 10, 7.25)
    denied = parse_mosquitto_line(
        f"1: Denied PUBLISH from m (d0, q0, r0, m0, '{TOPIC}', ... (4 bytes))"
    )
    assert (denied.kind, denied.code) == ("denied", "publish")


def test_a_topic_with_spaces_and_quotes_still_parses() -> None:
    ev = parse_mosquitto_line(
        "1: Received PUBLISH from p (d0, q0, r0, m0, 'a b', c', ... (1 bytes))"
    )
    assert ev is not None and ev.topic == "a b', c" and ev.size == 1


@pytest.mark.parametrize(
    "line",
    [
        "1796653228: mosquitto version 2.0.11 starting",
        "1796653229: Sending CONNACK to sensor (0, 0)",
        "1796653229: Received PUBACK from sensor (Mid: 1, RC:0)",
        "1796653229: Received PINGREQ from x",
        "",
    ],
)
def test_lines_about_no_client_action_are_skipped(line: str) -> None:
    assert parse_mosquitto_line(line) is None


def test_access_line() -> None:
    line = json.dumps({"t": 5.5, "peer": "ipv4:127.0.0.1:4000", "identity": "",
                       "method": "/lameta.v1.IntentService/ReportOutcome", "code": "OK",
                       "request_bytes": 90, "response_bytes": 2, "request_id": "r1"})  # fmt: skip
    ev = parse_access_line(line)
    assert ev == Event(5.5, "rpc", "grpc:ipv4:127.0.0.1:4000",
                       "/lameta.v1.IntentService/ReportOutcome", 90, "OK", "r1")  # fmt: skip
    with_identity = json.loads(line) | {"identity": "xapp-composer"}
    assert parse_access_line(json.dumps(with_identity)).client == "grpc:xapp-composer"
    assert parse_access_line("not json") is None
    assert parse_access_line('{"t": 1}') is None


def test_topic_kinds() -> None:
    assert topic_kind("lameta/v1/default/requests", "default") == "requests"
    assert topic_kind("lameta/v1/other/requests", "default") == "other"
    assert topic_kind("lameta/v1/status/sim-ric", "default") == "status"
    assert topic_kind("lameta/v1/default/policy", "default") == "other"


def test_payload_info_decodes_ids_codes_and_refusals() -> None:
    req = codec.encode(codec.ServiceRequest(request_id="r1", prompt="p", chain_types=[1]))
    assert payload_info("requests", req) == ("r1", "", "ok")
    out = codec.encode(codec.Outcome(request_id="r1", code="served"))
    assert payload_info("outcomes", out) == ("r1", "served", "ok")
    assert payload_info("control", b"\xff\x00garbage") == ("", "", "garbage")
    # A decision that parses but fails validation still names its request.
    bad = codec.encode(codec.ControlDecision(request_id="r2"))
    assert payload_info("control", bad) == ("r2", "", "missing_field")
    # A request on the control topic is the wrong message type.
    assert payload_info("control", req)[2] == "wrong_message_type"


def test_event_json_round_trip() -> None:
    ev = Event(1.5, "publish", "c", TOPIC, 10, "served", "r1", "ok")
    assert Event.from_json(ev.to_json()) == ev
    assert Event.from_json(Event(2.0, "connect", "c").to_json()) == Event(2.0, "connect", "c")
