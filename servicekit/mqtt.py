"""MQTT client plumbing shared by the services (paho-mqtt 2.x, callback API version 2).

:class:`MqttClient` wraps one paho client with what every LAMeTA-RIC component needs:

- a status topic ``lameta/v1/status/<component>``: the broker publishes ``"offline"``
  (retained) as the last will when the connection is lost, the client publishes
  ``"online"`` (retained) on every connect and ``"offline"`` when it stops cleanly;
- automatic reconnection with exponential backoff (paho's ``reconnect_delay_set``), and
  every subscription made again on every (re)connect;
- an optional persistent session (MQTT 3.1.1: ``clean_session=False`` with a fixed
  client id; MQTT 5: ``clean_start=False`` and a session expiry interval), so that QoS 1
  messages published while a subscriber is disconnected are delivered when it returns;
- QoS 1 publishing by default; QoS > 0 messages published while disconnected are queued
  by paho and sent after the reconnect;
- TLS for ``mqtts://`` URLs; counters of connects, disconnects, messages and drops;
- ``TCP_NODELAY`` on the connection: MQTT packets are small and a client often writes
  two back to back (a PUBACK, then a PUBLISH from the handler), which Nagle's algorithm
  would hold until the peer's delayed ACK, adding up to 40 ms per hop on Linux. The
  broker needs the same (Mosquitto: ``set_tcp_nodelay true``).

Message handlers run on paho's network thread: keep them short (the sim_ric service
only puts the payload on a queue).
"""

from __future__ import annotations

import secrets
import socket
import ssl
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
TOPIC_ROOT = "lameta/v1"

Handler = Callable[[str, bytes], None]
"""A message handler: ``handler(topic, payload)``."""


@dataclass(frozen=True)
class Delivery:
    """A message for a handler that acknowledges it itself (:meth:`MqttClient.subscribe`
    with ``ack="manual"`` on a client made with ``manual_ack=True``).

    Attributes:
        topic: the topic it was published on.
        payload: its bytes.
        mid: the packet id to acknowledge.
        qos: the QoS it was delivered with.
        dup: the broker marked it as a redelivery.
        connection: number of the connection it arrived on (see :meth:`MqttClient.ack`).
    """

    topic: str
    payload: bytes
    mid: int
    qos: int
    dup: bool
    connection: int


DeliveryHandler = Callable[[Delivery], None]
"""A handler that acknowledges with :meth:`MqttClient.ack` once it is done."""


# --------------------------------------------------------------------------------------
# URLs and topics
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BrokerUrl:
    """A parsed ``mqtt://[user:pass@]host:port`` or ``mqtts://...`` broker address."""

    scheme: Literal["mqtt", "mqtts"]
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def tls(self) -> bool:
        """True for ``mqtts``."""
        return self.scheme == "mqtts"

    def _netloc(self, password: str | None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="")
            if password is not None:
                auth += ":" + password
            auth += "@"
        return f"{auth}{host}:{self.port}"

    def __str__(self) -> str:
        """The full URL, credentials included (give it only to trusted components)."""
        password = None if self.password is None else quote(self.password, safe="")
        return f"{self.scheme}://{self._netloc(password)}"

    def redacted(self) -> str:
        """The URL with the password replaced by ``***`` (for logs)."""
        return f"{self.scheme}://{self._netloc(None if self.password is None else '***')}"


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse ``mqtt://[user:pass@]host[:port]`` or ``mqtts://...``.

    User name and password may be percent-encoded. The port defaults to 1883 (mqtt) or
    8883 (mqtts).

    Raises:
        ValueError: with the reason (unknown scheme, no host, bad port, a path).
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("broker URL is empty")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"broker URL {url!r}: scheme must be mqtt:// or mqtts://, got {parts.scheme!r}"
        )
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"broker URL {url!r}: bad port ({exc})") from None
    if port == 0:
        raise ValueError(f"broker URL {url!r}: port 0 is not a broker port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker URL {url!r}: unexpected path, query or fragment")
    return BrokerUrl(
        scheme=scheme,  # type: ignore[arg-type]
        host=parts.hostname,
        port=port or DEFAULT_PORTS[scheme],
        username=None if parts.username is None else unquote(parts.username),
        password=None if parts.password is None else unquote(parts.password),
    )


def check_topic_level(name: str, what: str = "network name") -> str:
    """Check that ``name`` can be one MQTT topic level (non-empty, no ``/``, ``+``, ``#``)."""
    if not name or any(c in name for c in "/+#\0"):
        raise ValueError(f"{what} {name!r} must be non-empty without '/', '+', '#'")
    return name


def loopback_mosquitto_conf(port: int, *extra: str) -> str:
    """A Mosquitto configuration for a local, anonymous broker on ``127.0.0.1:port`` (demo,
    tests, benchmarks), with ``set_tcp_nodelay`` (see the module docstring) and the
    ``extra`` lines. Deployments use ``deploy/mosquitto/mosquitto.conf``."""
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "set_tcp_nodelay true"]
    return "\n".join([*lines, *extra]) + "\n"


SHARE_PREFIX = "$share/"


def shared(topic: str, group: str) -> str:
    """The shared-subscription filter ``$share/<group>/<topic>`` (MQTT 5, sec. 4.8.2): the
    broker hands each message to one subscriber of the group."""
    return f"{SHARE_PREFIX}{check_topic_level(group, 'share group')}/{topic}"


def unshared(topic_filter: str) -> str:
    """The topic filter without a ``$share/<group>/`` prefix (what messages are matched
    against, and what Mosquitto checks the ACL against)."""
    if topic_filter.startswith(SHARE_PREFIX):
        return topic_filter.split("/", 2)[2]
    return topic_filter


def status_topic(component: str) -> str:
    """``lameta/v1/status/<component>``."""
    return f"{TOPIC_ROOT}/status/{check_topic_level(component, 'component')}"


@dataclass(frozen=True)
class Topics:
    """The topics of one network (ARCHITECTURE.md)."""

    state: str
    requests: str
    control: str
    outcomes: str
    policy: str

    @classmethod
    def for_network(cls, network: str) -> Topics:
        """``lameta/v1/<network>/{state,requests,control,outcomes,policy}``."""
        base = f"{TOPIC_ROOT}/{check_topic_level(network)}"
        return cls(
            f"{base}/state",
            f"{base}/requests",
            f"{base}/control",
            f"{base}/outcomes",
            f"{base}/policy",
        )

    def keyframe(self, index: int) -> str:
        """``<state>/keyframe/<index>``: chunk ``index`` of the retained state keyframe."""
        return f"{self.state}/keyframe/{index}"

    @property
    def keyframes(self) -> str:
        """The filter of every keyframe chunk topic."""
        return f"{self.state}/keyframe/+"


@dataclass(frozen=True)
class TlsOptions:
    """TLS settings for ``mqtts://`` (system CAs when ``ca_certs`` is None)."""

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False


# --------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------
class MqttClient:
    """A paho-mqtt client with status/last will, reconnects, resubscription and counters.

    Args:
        url: broker URL (string or :class:`BrokerUrl`); credentials are taken from it.
        component: component name of the status topic (e.g. ``"sim-ric"``).
        client_id: MQTT client id; required to be stable for a persistent session
            (default: ``component`` when persistent, else ``component-<random>``).
        protocol: ``"3.1.1"`` (default; every broker here speaks it) or ``"5"``.
        persistent_session: keep the session (subscriptions, queued QoS 1 messages)
            while disconnected.
        session_expiry_s: MQTT 5 session expiry interval of a persistent session.
        keepalive_s: MQTT keep-alive.
        reconnect_min_delay_s: first reconnect delay; doubles per attempt.
        reconnect_max_delay_s: cap of the reconnect delay.
        tls: TLS options for ``mqtts://``.
        max_queued_messages: outgoing queue bound (0 = unbounded); beyond it a publish
            is dropped, logged and counted.
        max_inflight_messages: QoS > 0 messages in flight at once.
        on_connected: called on paho's thread after each successful connect, with the
            broker's "session present" flag.
        on_disconnected: called on paho's thread after a connection loss, with the
            reason.
        manual_ack: acknowledge QoS > 0 messages of ``ack="manual"`` subscriptions only
            when their handler calls :meth:`ack` (paho's ``manual_ack``), e.g. after the
            work they ask for is done; other subscriptions are acknowledged when their
            handler returns, as usual.
    """

    def __init__(
        self,
        url: str | BrokerUrl,
        component: str,
        *,
        client_id: str | None = None,
        protocol: Literal["3.1.1", "5"] = "3.1.1",
        persistent_session: bool = False,
        session_expiry_s: int = 3600,
        keepalive_s: int = 30,
        reconnect_min_delay_s: float = 1.0,
        reconnect_max_delay_s: float = 30.0,
        tls: TlsOptions | None = None,
        max_queued_messages: int = 100_000,
        max_inflight_messages: int = 100,
        on_connected: Callable[[bool], None] | None = None,
        on_disconnected: Callable[[str], None] | None = None,
        manual_ack: bool = False,
    ):
        self.url = url if isinstance(url, BrokerUrl) else parse_broker_url(url)
        self.component = component
        self.status_topic = status_topic(component)
        if protocol not in ("3.1.1", "5"):
            raise ValueError(f'MQTT protocol must be "3.1.1" or "5", got {protocol!r}')
        if not 0 < reconnect_min_delay_s <= reconnect_max_delay_s:
            raise ValueError("need 0 < reconnect_min_delay_s <= reconnect_max_delay_s")
        self.protocol = protocol
        self.persistent_session = persistent_session
        self.session_expiry_s = int(session_expiry_s)
        self.keepalive_s = int(keepalive_s)
        if client_id is None:
            client_id = component if persistent_session else f"{component}-{secrets.token_hex(4)}"
        self.client_id = client_id
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.log = structlog.get_logger("servicekit.mqtt").bind(
            component=component, broker=self.url.redacted(), client_id=client_id
        )

        v5 = protocol == "5"
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if v5 else not persistent_session,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=True,
            manual_ack=manual_ack,
        )
        self.manual_ack = manual_ack
        c = self._client
        if self.url.username is not None:
            c.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            opts = tls or TlsOptions()
            c.tls_set(
                ca_certs=opts.ca_certs,
                certfile=opts.certfile,
                keyfile=opts.keyfile,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
            c.tls_insecure_set(opts.insecure)
        c.will_set(self.status_topic, "offline", qos=1, retain=True)
        c.reconnect_delay_set(reconnect_min_delay_s, reconnect_max_delay_s)  # type: ignore[arg-type]
        c.max_queued_messages_set(max_queued_messages)
        c.max_inflight_messages_set(max_inflight_messages)
        c.on_connect = self._handle_connect
        c.on_connect_fail = self._handle_connect_fail
        c.on_disconnect = self._handle_disconnect
        c.on_message = self._handle_message
        c.on_subscribe = self._handle_subscribe
        c.on_publish = self._handle_publish
        c.on_socket_open = self._handle_socket_open

        self._subs: dict[str, tuple[int, Any, bool]] = {}  # topic -> (qos, handler, manual)
        self._connection = 0
        self._sub_lock = threading.Lock()
        self._connected = threading.Event()
        self._stopping = False
        self._started = False
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._outstanding: set[int] = set()
        self._early_acks: OrderedDict[int, None] = OrderedDict()
        self.counters: Counter[str] = Counter()
        """connects, connect_failures, connect_refused, disconnects, published,
        published_offline (queued while disconnected), publish_dropped, acked, received,
        unhandled, handler_errors, subscribe_failures; with ``manual_ack``: acks_sent,
        acks_stale (the message came on an earlier connection)."""
        self.last_error: str = ""
        """The last connect refusal or connection loss, for diagnostics."""

    def _inc(self, key: str, n: int = 1) -> None:
        with self._count_lock:
            self.counters[key] += n

    def stats(self) -> dict[str, int]:
        """A snapshot of :attr:`counters` plus ``connected`` (0/1) and ``outstanding``."""
        with self._count_lock:
            out = dict(self.counters)
        with self._lock:
            out["outstanding"] = len(self._outstanding)
        out["connected"] = int(self.connected)
        return out

    # ---- life cycle -----------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while a connection is established (CONNACK accepted)."""
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background and keep reconnecting until :meth:`stop`."""
        if self._started:
            return
        self._started = True
        props = None
        clean_start: Any = paho.MQTT_CLEAN_START_FIRST_ONLY
        if self.protocol == "5":
            clean_start = not self.persistent_session
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry_s if self.persistent_session else 0
        self._client.connect_async(
            self.url.host,
            self.url.port,
            keepalive=self.keepalive_s,
            clean_start=clean_start,
            properties=props,
        )
        self._client.loop_start()
        self.log.info("mqtt_connecting")

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until connected (True) or ``timeout`` seconds pass (False)."""
        return self._connected.wait(timeout)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every QoS > 0 message published so far is acknowledged.

        Returns:
            True when nothing is outstanding, False on timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._outstanding:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``"offline"`` (retained), flush, disconnect and stop the network thread.

        Args:
            timeout: seconds to wait for outstanding messages to be acknowledged.
        """
        if not self._started:
            return
        if self.connected:
            self.publish(self.status_topic, b"offline", qos=1, retain=True)
            if not self.flush(timeout):
                with self._lock:
                    left = len(self._outstanding)
                self.log.warning("mqtt_unacknowledged_at_stop", messages=left)
        else:
            self.log.warning("mqtt_stop_while_disconnected")
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self._started = False
        self.log.info("mqtt_stopped", **self.stats())

    def __enter__(self) -> MqttClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- publish / subscribe --------------------------------------------------------
    def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False
    ) -> bool:
        """Publish a message.

        QoS > 0 messages published while disconnected are queued and sent after the
        reconnect; QoS 0 messages are then dropped.

        Returns:
            True if the message was sent or queued, False if it was dropped (counted as
            ``publish_dropped`` and logged).
        """
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        rc = info.rc
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos):
            if qos:
                with self._lock:
                    acked_early = self._early_acks.pop(info.mid, False) is None
                    if not acked_early:
                        self._outstanding.add(info.mid)
                if acked_early:
                    self._inc("acked")
            self._inc("published" if rc == MQTTErrorCode.MQTT_ERR_SUCCESS else "published_offline")
            return True
        self._inc("publish_dropped")
        self.log.warning(
            "mqtt_publish_dropped",
            topic=topic,
            qos=qos,
            rc=paho.error_string(rc),
            bytes=len(payload),
        )
        return False

    def subscribe(
        self,
        topic: str,
        handler: Handler | DeliveryHandler,
        *,
        qos: int = 1,
        ack: Literal["auto", "manual"] = "auto",
    ) -> None:
        """Subscribe ``handler`` to a topic filter, now and after every reconnect.

        Args:
            topic: the topic filter.
            handler: ``handler(topic, payload)``; with ``ack="manual"``,
                ``handler(delivery)``, which must call :meth:`ack` when done.
            qos: the subscription's QoS.
            ack: ``"manual"`` needs a client made with ``manual_ack=True``.
        """
        if ack == "manual" and not self.manual_ack:
            raise ValueError('ack="manual" needs a client made with manual_ack=True')
        with self._sub_lock:
            self._subs[topic] = (qos, handler, ack == "manual")
        if self.connected:
            self._client.subscribe(topic, qos=qos)

    def ack(self, delivery: Delivery) -> bool:
        """Acknowledge a message of an ``ack="manual"`` subscription (any thread).

        A message that arrived on an earlier connection is not acknowledged (its packet
        id may name another message now): the broker delivers it again on the new
        connection of a persistent session, marked as a duplicate.

        Returns:
            True if the acknowledgement was sent (or none was needed, QoS 0).
        """
        if delivery.qos == 0 or not self.manual_ack:
            return True
        if delivery.connection != self._connection or not self.connected:
            self._inc("acks_stale")
            return False
        rc = self._client.ack(delivery.mid, delivery.qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._inc("acks_stale")
            return False
        self._inc("acks_sent")
        return True

    # ---- paho callbacks (network thread) ---------------------------------------------
    def _handle_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        """Turn Nagle's algorithm off on every new connection (see the module docstring)."""
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError) as exc:  # not a TCP socket (e.g. a websocket wrapper)
            self.log.debug("mqtt.nodelay_unavailable", error=str(exc))

    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._inc("connect_refused")
            self.last_error = f"connection refused: {reason_code}"
            self.log.error("mqtt_connect_refused", reason=str(reason_code))
            return
        self._inc("connects")
        self._connection += 1
        # Retained "online" replaces the retained will of a previous connection. Queued
        # before `connected` is set, so a flush() after wait_connected() covers it.
        self.publish(self.status_topic, b"online", qos=1, retain=True)
        with self._sub_lock:
            subs = [(t, q) for t, (q, _, _) in self._subs.items()]
        if subs:
            client.subscribe(subs)
        self._connected.set()
        self.log.info(
            "mqtt_connected",
            session_present=bool(flags.session_present),
            subscriptions=[t for t, _ in subs],
            reconnect=self.counters["connects"] > 1,
        )
        if self.on_connected is not None:
            try:
                self.on_connected(bool(flags.session_present))
            except Exception:
                self._inc("handler_errors")
                self.log.exception("mqtt_on_connected_hook_failed")

    def _handle_connect_fail(self, client, userdata) -> None:
        # paho calls this from inside its `except OSError` block: the cause is at hand.
        exc = sys.exc_info()[1]
        self._inc("connect_failures")
        self.last_error = f"connection failed: {exc!r}" if exc else "connection failed"
        self.log.warning("mqtt_connect_failed", error=repr(exc), retry="with backoff")

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if self._stopping or not was_connected:
            # Not connected before: a refused or failed attempt, already counted.
            return
        self._inc("disconnects")
        self.last_error = f"disconnected: {reason_code}"
        self.log.warning("mqtt_disconnected", reason=str(reason_code))
        if self.on_disconnected is not None:
            try:
                self.on_disconnected(str(reason_code))
            except Exception:
                self._inc("handler_errors")
                self.log.exception("mqtt_on_disconnected_hook_failed")

    def _handle_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            self._inc("subscribe_failures", len(failed))
            self.log.error("mqtt_subscribe_refused", reasons=failed)

    def _handle_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if mid in self._outstanding:
                self._outstanding.discard(mid)
                self._inc("acked")
            else:
                # The ack of a QoS 1 message can arrive before publish() returns; QoS 0
                # messages also land here. Kept in a short FIFO (mids wrap at 65535).
                self._early_acks[mid] = None
                if len(self._early_acks) > 4096:
                    self._early_acks.popitem(last=False)
        if reason_code.is_failure:
            self._inc("publish_refused")
            self.log.warning("mqtt_publish_refused", mid=mid, reason=str(reason_code))

    def _handle_message(self, client, userdata, msg: paho.MQTTMessage) -> None:
        self._inc("received")
        with self._sub_lock:
            handlers = [
                (h, manual)
                for t, (_, h, manual) in self._subs.items()
                if paho.topic_matches_sub(unshared(t), msg.topic)
            ]
        deferred = False  # a manual handler took the message and will acknowledge it
        for handler, manual in handlers:
            if manual and deferred:
                continue  # one manual handler per message: one acknowledgement
            try:
                if manual:
                    handler(
                        Delivery(
                            msg.topic, msg.payload, msg.mid, msg.qos, msg.dup, self._connection
                        )
                    )
                    deferred = True
                else:
                    handler(msg.topic, msg.payload)
            except Exception:
                self._inc("handler_errors")
                self.log.exception("mqtt_handler_failed", topic=msg.topic)
        if not handlers:
            self._inc("unhandled")
        if self.manual_ack and msg.qos and not deferred:
            client.ack(msg.mid, msg.qos)
