"""servicekit.mqtt: URL parsing, topics, and the client wrapper against a real Mosquitto."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.mqtt import MOSQUITTO, Mosquitto, wait_until

from servicekit.mqtt import (
    BrokerUrl,
    MqttClient,
    TlsOptions,
    Topics,
    loopback_mosquitto_conf,
    parse_broker_url,
    status_topic,
)

WAIT = 20.0


# ---- URLs and topics -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://localhost", BrokerUrl("mqtt", "localhost", 1883)),
        ("mqtt://10.0.0.5:1884", BrokerUrl("mqtt", "10.0.0.5", 1884)),
        ("mqtts://broker.example:8884", BrokerUrl("mqtts", "broker.example", 8884)),
        ("mqtts://b.example", BrokerUrl("mqtts", "b.example", 8883)),
        ("MQTT://u:p@h:1/", BrokerUrl("mqtt", "h", 1, "u", "p")),
        ("mqtt://us%40er:p%3Ass%2F@[::1]:1883", BrokerUrl("mqtt", "::1", 1883, "us@er", "p:ss/")),
        ("mqtt://user@h:2", BrokerUrl("mqtt", "h", 2, "user", None)),
    ],
)
def test_parse_broker_url(url, expected):
    parsed = parse_broker_url(url)
    assert parsed == expected
    assert parse_broker_url(str(parsed)) == parsed  # str() round-trips, credentials included
    assert parsed.tls == (expected.scheme == "mqtts")


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("", "empty"),
        ("http://h:1", "scheme"),
        ("h:1883", "scheme"),
        ("mqtt://:1883", "no host"),
        ("mqtt://h:99999", "bad port"),
        ("mqtt://h:abc", "bad port"),
        ("mqtt://h:0", "port 0"),
        ("mqtt://h:1/topic", "path"),
        ("mqtt://h:1?x=1", "query"),
    ],
)
def test_parse_broker_url_errors(url, text):
    with pytest.raises(ValueError, match=text):
        parse_broker_url(url)


def test_redacted_hides_the_password():
    url = parse_broker_url("mqtt://svc:hunter2@h:1883")
    assert url.redacted() == "mqtt://svc:***@h:1883"
    assert "hunter2" in str(url)


def test_topics():
    t = Topics.for_network("lab-1")
    assert (t.state, t.requests, t.control, t.outcomes, t.policy) == (
        "lameta/v1/lab-1/state",
        "lameta/v1/lab-1/requests",
        "lameta/v1/lab-1/control",
        "lameta/v1/lab-1/outcomes",
        "lameta/v1/lab-1/policy",
    )
    assert status_topic("sim-ric") == "lameta/v1/status/sim-ric"
    for bad in ("", "a/b", "a+", "#"):
        with pytest.raises(ValueError, match="must be non-empty"):
            Topics.for_network(bad)


def test_client_argument_checks():
    with pytest.raises(ValueError, match="protocol"):
        MqttClient("mqtt://h:1", "x", protocol="4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reconnect"):
        MqttClient("mqtt://h:1", "x", reconnect_min_delay_s=5, reconnect_max_delay_s=1)


# ---- against Mosquitto -----------------------------------------------------------------
@pytest.fixture
def broker(tmp_path: Path):
    assert Path(MOSQUITTO).exists(), "mosquitto is required (.ci/run installs it)"
    b = Mosquitto(tmp_path).start()
    yield b
    b.stop()


def _client(url: str, name: str, **kw) -> MqttClient:
    return MqttClient(url, name, reconnect_min_delay_s=0.1, reconnect_max_delay_s=0.5, **kw)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_persistent_session_receives_what_was_published_while_away(broker, protocol):
    got: list[bytes] = []
    status: list[bytes] = []

    def subscriber() -> MqttClient:
        c = _client(
            broker.url,
            "sub",
            client_id=f"sub-{protocol}",
            persistent_session=True,
            protocol=protocol,
        )
        c.subscribe("t/data", lambda t, p: got.append(p))
        c.subscribe("lameta/v1/status/sub", lambda t, p: status.append(p))
        return c

    with subscriber():
        wait_until(lambda: b"online" in status, WAIT, "subscriptions active")
    with _client(broker.url, "pub", protocol=protocol) as pub:
        assert pub.wait_connected(WAIT)
        for i in range(10):
            assert pub.publish("t/data", b"%d" % i, qos=1)
        assert pub.flush(WAIT)
    with subscriber() as sub:
        wait_until(lambda: len(got) >= 10, WAIT, "queued messages")
        assert sub.stats()["received"] >= 10
    assert got == [b"%d" % i for i in range(10)]


def test_clean_session_does_not_keep_messages(broker):
    got: list[bytes] = []
    status: list[bytes] = []
    c = _client(broker.url, "sub2")
    c.subscribe("t/data", lambda t, p: got.append(p))
    c.subscribe("lameta/v1/status/sub2", lambda t, p: status.append(p))
    with c:
        wait_until(lambda: b"online" in status, WAIT, "subscribed")
    with _client(broker.url, "pub") as pub:
        assert pub.wait_connected(WAIT)
        pub.publish("t/data", b"x", qos=1)
        assert pub.flush(WAIT)
    status.clear()
    c2 = _client(broker.url, "sub2")
    c2.subscribe("t/data", lambda t, p: got.append(p))
    c2.subscribe("lameta/v1/status/sub2", lambda t, p: status.append(p))
    with c2:
        wait_until(lambda: b"online" in status, WAIT, "subscribed again")
    assert got == []


def test_last_will_marks_a_dead_client_offline(broker, tmp_path):
    seen: list[bytes] = []
    own: list[bytes] = []
    watcher = _client(broker.url, "watcher")
    watcher.subscribe("lameta/v1/status/doomed", lambda t, p: seen.append(p))
    watcher.subscribe("lameta/v1/status/watcher", lambda t, p: own.append(p))
    script = textwrap.dedent(
        f"""
        import os, sys
        from servicekit.mqtt import MqttClient
        c = MqttClient({broker.url!r}, "doomed", keepalive_s=5)
        c.start()
        assert c.wait_connected(20)
        assert c.flush(20)  # "online" acknowledged
        os._exit(0)  # dies without DISCONNECT: the broker publishes the will
        """
    )
    with watcher:
        wait_until(lambda: b"online" in own, WAIT, "watcher subscribed")
        proc = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        wait_until(lambda: seen[-1:] == [b"offline"], WAIT, "last will")
        assert b"online" in seen
    # Retained: a late subscriber learns the status too.
    late: list[bytes] = []
    with _client(broker.url, "late") as c:
        c.subscribe("lameta/v1/status/doomed", lambda t, p: late.append(p))
        wait_until(lambda: late == [b"offline"], WAIT, "retained offline")


def test_loopback_mosquitto_conf(broker):
    conf = loopback_mosquitto_conf(1234, "persistence true").splitlines()
    assert conf[0] == "listener 1234 127.0.0.1" and "allow_anonymous true" in conf
    assert "set_tcp_nodelay true" in conf and conf[-1] == "persistence true"
    assert broker.conf.read_text() == loopback_mosquitto_conf(broker.port)  # the brokers here


def _nodelay(c: MqttClient) -> bool:
    sock = c._client.socket()
    assert sock is not None, "not connected"
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def test_reconnect_resubscribes_and_delivers_queued_qos1(broker):
    got: list[bytes] = []
    own_status: list[bytes] = []
    sub = _client(broker.url, "resub")
    sub.subscribe("t/after", lambda t, p: got.append(p))
    # Its own retained status comes back with every SUBACK of the (re)subscription.
    sub.subscribe("lameta/v1/status/resub", lambda t, p: own_status.append(p))
    pub = _client(broker.url, "pub")
    with sub, pub:
        wait_until(lambda: own_status.count(b"online") == 1, WAIT, "subscribed")
        assert pub.wait_connected(WAIT)
        assert _nodelay(sub) and _nodelay(pub)  # Nagle off: no 40 ms PUBACK stalls
        broker.kill()
        wait_until(lambda: not pub.connected and not sub.connected, WAIT, "disconnects")
        # While the broker is down: QoS 1 is queued, QoS 0 is dropped and counted.
        assert pub.publish("t/retained", b"queued", qos=1, retain=True)
        assert not pub.publish("t/after", b"lost", qos=0)
        assert pub.stats()["published_offline"] == 1 and pub.stats()["publish_dropped"] == 1
        broker.start()
        wait_until(lambda: pub.connected and sub.connected, WAIT, "reconnects")
        assert pub.flush(WAIT), "the queued message was not delivered after the reconnect"
        late: list[bytes] = []
        sub.subscribe("t/retained", lambda t, p: late.append(p))
        wait_until(lambda: late == [b"queued"], WAIT, "queued retained message")
        # Mosquitto lost every session: the subscriber subscribed again by itself.
        wait_until(lambda: own_status.count(b"online") == 2, WAIT, "resubscribed")
        assert pub.publish("t/after", b"hello", qos=1)
        wait_until(lambda: got == [b"hello"], WAIT, "message on a resubscribed topic")
        assert sub.stats()["connects"] == 2 and sub.stats()["disconnects"] == 1
        assert _nodelay(sub) and _nodelay(pub)  # and on the new connections


def test_handler_errors_are_counted_not_fatal(broker):
    got: list[bytes] = []

    def bad(topic: str, payload: bytes) -> None:
        raise RuntimeError("boom")

    sub = _client(broker.url, "fragile")
    sub.subscribe("t/x", bad)
    sub.subscribe("t/#", lambda t, p: got.append(p))
    status: list[bytes] = []
    sub.subscribe("lameta/v1/status/fragile", lambda t, p: status.append(p))
    with sub, _client(broker.url, "pub") as pub:
        wait_until(lambda: b"online" in status, WAIT, "subscribed")
        assert pub.wait_connected(WAIT)
        pub.publish("t/x", b"1")
        pub.publish("t/x", b"2")
        wait_until(lambda: len(got) == 2, WAIT, "both messages")
        assert sub.stats()["handler_errors"] == 2
        assert sub.connected


# ---- TLS (mqtts://) --------------------------------------------------------------------
def _make_certs(d: Path) -> None:
    """A throw-away CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is required (.ci/run installs it)"

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=lameta-test-ca",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    )


def test_mqtts_verifies_the_broker_certificate(tmp_path):
    assert Path(MOSQUITTO).exists(), "mosquitto is required (.ci/run installs it)"
    _make_certs(tmp_path)
    tls_broker = Mosquitto(tmp_path)
    extra = [
        f"cafile {tmp_path / 'ca.crt'}",
        f"certfile {tmp_path / 'server.crt'}",
        f"keyfile {tmp_path / 'server.key'}",
    ]
    if os.geteuid() == 0:
        extra.append("user root")  # else mosquitto drops to a user that cannot read the key
    tls_broker.conf.write_text(tls_broker.conf.read_text() + "\n".join(extra) + "\n")
    tls_broker.start()
    url = f"mqtts://127.0.0.1:{tls_broker.port}"
    try:
        got: list[bytes] = []
        ca = TlsOptions(ca_certs=str(tmp_path / "ca.crt"))
        sub = _client(url, "tls-sub", tls=ca)
        sub.subscribe("t/tls", lambda t, p: got.append(p))
        sub.subscribe("lameta/v1/status/tls-sub", lambda t, p: got.append(b"status:" + p))
        with sub, _client(url, "tls-pub", tls=ca) as pub:
            wait_until(lambda: b"status:online" in got, WAIT, "TLS subscription")
            assert pub.wait_connected(WAIT)
            pub.publish("t/tls", b"secret")
            wait_until(lambda: b"secret" in got, WAIT, "message over TLS")
        # Without the CA (system trust store only) the self-signed broker is refused.
        stranger = _client(url, "tls-stranger")
        with stranger:
            wait_until(lambda: stranger.stats().get("connect_failures"), WAIT, "a failed attempt")
            assert not stranger.connected
            assert "CERTIFICATE_VERIFY_FAILED" in stranger.last_error
    finally:
        tls_broker.stop()


def test_shared_subscription_filters_and_the_xapp_settings_for_them():
    from servicekit.mqtt import shared, unshared
    from xapp_composer.settings import XappSettings

    topic = "lameta/v1/default/requests"
    assert shared(topic, "xapp-composer") == "$share/xapp-composer/lameta/v1/default/requests"
    assert unshared(shared(topic, "g")) == topic and unshared(topic) == topic
    with pytest.raises(ValueError):
        shared(topic, "a/b")
    with pytest.raises(ValueError, match="mqtt_persistent_session"):
        XappSettings(_env_file=None, share_group="g")
    ok = XappSettings(_env_file=None, share_group="g", mqtt_persistent_session=False)
    assert ok.share_group == "g"
