"""What the xApp relies on below it, against a real Mosquitto: manual acknowledgement
(a request not acknowledged is delivered again on the next connection of the persistent
session; an acknowledged one is not) and the state codec's inverse."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from support.loop import Mosquitto, wait_until

from agentnet.network import generate_network
from servicekit import codec
from servicekit.mqtt import Delivery, MqttClient


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path).start()
    yield b
    b.stop()


def _client(url: str, **kw) -> MqttClient:
    return MqttClient(
        url,
        "acker",
        persistent_session=True,
        manual_ack=True,
        reconnect_min_delay_s=0.2,
        reconnect_max_delay_s=1.0,
        **kw,
    )


def _start(client: MqttClient) -> MqttClient:
    """Start and wait until the subscriptions are active (the client's own retained
    status comes back through them)."""
    active = threading.Event()
    client.subscribe(client.status_topic, lambda t, p: active.set(), qos=1)
    client.start()
    assert client.wait_connected(5) and active.wait(5)
    return client


def _publisher(url: str) -> MqttClient:
    """A started, connected publisher."""
    pub = MqttClient(url, "publisher")
    pub.start()
    assert pub.wait_connected(5)
    return pub


def test_unacknowledged_messages_come_back_acknowledged_ones_do_not(broker) -> None:
    got: list[Delivery] = []
    lock = threading.Lock()

    def keep(d: Delivery) -> None:
        with lock:
            got.append(d)

    pub = _publisher(broker.url)
    sub = _client(broker.url)
    sub.subscribe("t/req", keep, qos=1, ack="manual")
    _start(sub)
    for i in range(4):
        assert pub.publish("t/req", f"m{i}".encode(), qos=1)
    wait_until(lambda: len(got) == 4, 5, "four deliveries")
    # Acknowledge two, then go away without acknowledging the others.
    assert sub.ack(got[0]) and sub.ack(got[2])
    assert sub.flush(2)
    sub.stop()
    with lock:
        got.clear()
    sub2 = _client(broker.url)
    sub2.subscribe("t/req", keep, qos=1, ack="manual")
    _start(sub2)
    wait_until(lambda: len(got) >= 2, 5, "redeliveries")
    with lock:
        again = sorted(d.payload for d in got)
    assert again == [b"m1", b"m3"]
    assert all(d.dup for d in got)
    for d in list(got):
        assert sub2.ack(d)
    pub.stop()
    sub2.stop()


def test_an_ack_from_an_earlier_connection_is_not_sent(broker) -> None:
    got: list[Delivery] = []
    sub = _client(broker.url)
    sub.subscribe("t/x", got.append, qos=1, ack="manual")
    _start(sub)
    pub = _publisher(broker.url)
    pub.publish("t/x", b"one", qos=1)
    wait_until(lambda: got, 5, "a delivery")
    old = got[0]
    broker.stop()
    wait_until(lambda: not sub.connected, 5, "disconnect")
    broker.start()
    wait_until(lambda: sub.connected, 10, "reconnect")
    assert old.connection < sub._connection
    assert sub.ack(old) is False
    assert sub.stats()["acks_stale"] == 1
    pub.stop()
    sub.stop()


def test_auto_subscriptions_of_a_manual_client_are_still_acknowledged(broker) -> None:
    seen: list[bytes] = []
    sub = _client(broker.url)
    sub.subscribe("t/auto", lambda t, p: seen.append(p), qos=1)
    _start(sub)
    pub = _publisher(broker.url)
    pub.publish("t/auto", b"a", qos=1)
    wait_until(lambda: seen, 5, "delivery")
    sub.stop()
    seen.clear()
    sub2 = _client(broker.url)
    sub2.subscribe("t/auto", lambda t, p: seen.append(p), qos=1)
    _start(sub2)
    pub.publish("t/auto", b"b", qos=1)
    wait_until(lambda: seen, 5, "delivery after reconnect")
    assert seen == [b"b"]  # "a" was acknowledged when its handler returned
    pub.stop()
    sub2.stop()


def test_manual_subscriptions_need_a_manual_client(broker) -> None:
    with pytest.raises(ValueError, match="manual_ack=True"):
        MqttClient(broker.url, "plain").subscribe("t", lambda d: None, ack="manual")


def test_network_from_state_inverts_state_message() -> None:
    net = generate_network(21, n_agents=40)
    net.available[[3, 9]] = False
    net.set_arrival_rate(2.5)
    msg = codec.decode_state(
        codec.encode(codec.state_message(net, network="n", seq=3, timestamp_ns=5))
    )
    back = codec.network_from_state(msg)
    assert codec.state_message(back, network="n", seq=3, timestamp_ns=5) == msg
    assert np.allclose(back.speed, net.speed) and np.allclose(back.length, net.length)
    idx = np.arange(net.n_agents)
    assert np.allclose(back.route_ber(idx, idx), net.route_ber(idx, idx))


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("mu", -1.0, "mu"),
        ("observations", 0.0, "observations"),
        ("capability", 1.5, "capability"),
        ("failures", 2000.0, "failures"),
    ],
)
def test_network_from_state_refuses_impossible_agents(field, value, words) -> None:
    msg = codec.state_message(generate_network(2, n_agents=12), network="n", seq=1, timestamp_ns=1)
    setattr(msg.agents[5], field, value)
    with pytest.raises(codec.DecodeError, match=words) as err:
        codec.network_from_state(msg)
    assert err.value.code == "invalid_field" and "agents[5]" in err.value.reason
