"""What the sensor observes, one :class:`Event` per broker log line, payload or gRPC call.

An MQTT subscriber does not learn who published a message. Two sources that do are read
here:

- the broker's own log. Mosquitto with ``log_type all`` writes one line per packet, and
  the lines name the client::

    1796653229: New client connected from 127.0.0.1:38971 as xapp-composer-default (p2, c0, k30).
    1796653229: Received PUBLISH from sim-ric-default (d0, q1, r0, m3, 'lameta/v1/default/requests', ... (312 bytes))
    1796653229: Sending PUBLISH to xapp-composer-default (d0, q1, r0, m7, 'lameta/v1/default/requests', ... (312 bytes))
    1796653230: Client mallory closed its connection.

  :func:`parse_mosquitto_line` turns such a line into an event (or None for the lines
  that say nothing about a client: PUBACKs, PINGs, start-up);
- the rApp's access log (``RAPP_ACCESS_LOG``, :mod:`servicekit.grpc_access`), one JSON
  line per gRPC call with the caller's peer address or mTLS identity:
  :func:`parse_access_line`.

The payload itself (which request id a decision is for, an outcome's code) comes from the
sensor's own subscription and is joined to the broker's line by :mod:`xapp_guard.sensor`;
:func:`payload_info` decodes it with the project's codec.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from servicekit import codec
from servicekit.mqtt import TOPIC_ROOT

KINDS = ("connect", "disconnect", "publish", "deliver", "denied", "subscribe", "rpc")
"""Event kinds: a client connected, lost or closed its connection, published a message
(broker's view), was delivered one, was refused something, subscribed, made a gRPC call."""

ABRUPT = ("closed", "timeout", "socket_error", "takeover", "protocol_error", "not_authorised")
"""Disconnect reasons that are not a clean DISCONNECT."""

PAYLOAD_TOPICS = ("requests", "control", "outcomes")
"""Topic kinds whose payloads the sensor decodes (request ids, outcome codes)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One observation.

    Attributes:
        t: when the sensor saw it (Unix seconds).
        kind: one of :data:`KINDS`.
        client: MQTT client id, or ``grpc:<identity or peer>`` for a gRPC caller.
        topic: the MQTT topic, or the gRPC method.
        size: payload bytes (publish, deliver) or request bytes (rpc).
        code: disconnect reason, gRPC status name, or the decoded outcome's code.
        rid: the request id the payload or call is about ('' when none or not decoded).
        decoded: for publishes on :data:`PAYLOAD_TOPICS`: ``"ok"``, a
            :class:`servicekit.codec.DecodeError` code, or ``""`` (payload not seen).
    """

    t: float
    kind: str
    client: str
    topic: str = ""
    size: int = 0
    code: str = ""
    rid: str = ""
    decoded: str = ""

    def to_json(self) -> dict[str, Any]:
        """The event as a compact dict (empty fields left out)."""
        return {k: v for k, v in asdict(self).items() if v not in ("", 0) or k in ("t", "kind")}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Event:
        """Inverse of :meth:`to_json`."""
        return cls(**d)


def topic_kind(topic: str, network: str) -> str:
    """``requests``, ``control``, ``outcomes``, ``state``, ``status`` or ``other``."""
    base = f"{TOPIC_ROOT}/{network}/"
    if topic.startswith(base):
        rest = topic[len(base) :]
        if rest in ("requests", "control", "outcomes", "state"):
            return rest
        return "other"
    if topic.startswith(f"{TOPIC_ROOT}/status/"):
        return "status"
    return "other"


# --------------------------------------------------------------------------------------
# Mosquitto's log
# --------------------------------------------------------------------------------------
_PACKET = r"\(d(?P<dup>\d), q(?P<qos>\d), r(?P<retain>\d), m(?P<mid>\d+), '(?P<topic>.*)', \.\.\. \((?P<size>\d+) bytes\)\)"
_LINES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(rf"^Received PUBLISH from (?P<client>\S+) {_PACKET}$"), "publish", ""),
    (re.compile(rf"^Sending PUBLISH to (?P<client>\S+) {_PACKET}$"), "deliver", ""),
    (re.compile(rf"^Denied PUBLISH from (?P<client>\S+) {_PACKET}$"), "denied", "publish"),
    (re.compile(r"^New client connected from \S+ as (?P<client>\S+) \(.*\)\.$"), "connect", ""),
    (re.compile(r"^Received SUBSCRIBE from (?P<client>\S+)$"), "subscribe", ""),
    (re.compile(r"^Client (?P<client>\S+) disconnected\.$"), "disconnect", "clean"),
    (re.compile(r"^Client (?P<client>\S+) closed its connection\.$"), "disconnect", "closed"),
    (re.compile(r"^Client (?P<client>\S+) has exceeded timeout, disconnecting\.$"),
     "disconnect", "timeout"),
    (re.compile(r"^Socket error on client (?P<client>\S+), disconnecting\.$"),
     "disconnect", "socket_error"),
    (re.compile(r"^Client (?P<client>\S+) already connected, closing old connection\.$"),
     "disconnect", "takeover"),
    (re.compile(r"^Client (?P<client>\S+) disconnected, not authori[sz]ed\.$"),
     "disconnect", "not_authorised"),
    (re.compile(r"^Client (?P<client>\S+) disconnected due to (?:malformed packet|protocol error)\.$"),
     "disconnect", "protocol_error"),
    (re.compile(r"^Denied subscribe from (?P<client>\S+).*$"), "denied", "subscribe"),
]  # fmt: skip
_STAMP = re.compile(r"^(?P<stamp>\d+(?:\.\d+)?): (?P<text>.*)$")


def parse_mosquitto_line(line: str, t: float | None = None) -> Event | None:
    """One Mosquitto log line as an event, or None when it names no client's action.

    Args:
        line: the line (with or without its ``<unix seconds>: `` prefix).
        t: the time to stamp (the sensor's clock when it read the line); default: the
            line's own prefix (whole seconds), 0 when it has none.
    """
    text = line.rstrip("\r\n")
    stamp = 0.0
    m = _STAMP.match(text)
    if m:
        stamp, text = float(m["stamp"]), m["text"]
    for pattern, kind, code in _LINES:
        hit = pattern.match(text)
        if hit is None:
            continue
        groups = hit.groupdict()
        client = groups["client"]
        if client == "<unknown>":
            client = "?"
        return Event(
            t=stamp if t is None else t,
            kind=kind,
            client=client,
            topic=groups.get("topic") or "",
            size=int(groups.get("size") or 0),
            code=code,
        )
    return None


def publish_flags(line: str) -> dict[str, int] | None:
    """The ``(d, q, r, m)`` flags of a PUBLISH line (None for other lines)."""
    m = re.search(_PACKET, line)
    if m is None:
        return None
    return {k: int(m[k]) for k in ("dup", "qos", "retain", "mid")}


# --------------------------------------------------------------------------------------
# The rApp's access log
# --------------------------------------------------------------------------------------
def grpc_client(peer: str, identity: str = "") -> str:
    """The client name of a gRPC caller: its mTLS identity when it has one, else its peer."""
    return f"grpc:{identity or peer}"


def parse_access_line(line: str) -> Event | None:
    """One line of :class:`servicekit.grpc_access.AccessLog` as an ``rpc`` event.

    Returns None for a blank or unreadable line (the caller counts those).
    """
    try:
        d = json.loads(line)
        return Event(
            t=float(d["t"]),
            kind="rpc",
            client=grpc_client(str(d.get("peer", "")), str(d.get("identity", "") or "")),
            topic=str(d["method"]),
            size=int(d.get("request_bytes", 0)),
            code=str(d.get("code", "")),
            rid=str(d.get("request_id", "") or ""),
        )
    except (ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------------------
# Payloads
# --------------------------------------------------------------------------------------
_DECODERS = {
    "requests": codec.decode_request,
    "control": codec.decode_decision,
    "outcomes": codec.decode_outcome,
}


def payload_info(kind: str, payload: bytes) -> tuple[str, str, str]:
    """(request id, outcome code, decode status) of a payload on a topic of ``kind``.

    The decode status is ``"ok"`` or the codec's refusal code (``garbage``,
    ``wrong_message_type``, ...); the request id is recovered from a payload that parsed
    but failed validation.
    """
    try:
        msg = _DECODERS[kind](payload)
    except codec.DecodeError as exc:
        rid = getattr(exc.message, "request_id", "") if exc.message is not None else ""
        return str(rid), "", exc.code
    code = msg.code if kind == "outcomes" else ""
    return msg.request_id, code, "ok"
