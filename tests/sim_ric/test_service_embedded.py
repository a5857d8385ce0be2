"""End to end: ``sim-ric run --broker embedded`` (in-process amqtt) as a subprocess.

The service starts its own broker on loopback with anonymous access disabled and a
generated password, writes the URL with credentials to a private file, and the same
core flow as with Mosquitto runs through it. Also the embedded broker in-process."""

from __future__ import annotations

import math
import stat
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.mqtt import (
    Recorder,
    ServiceProcess,
    agent_of_other_type,
    free_port,
    usable_chain,
    wait_until,
)

from servicekit import codec
from servicekit.broker import EmbeddedBroker, EmbeddedBrokerError
from servicekit.mqtt import MqttClient, parse_broker_url

pytestmark = pytest.mark.slow

WAIT = 30.0


def _connack(host: str, port: int, username: str | None = None, password: str | None = None):
    """Reason code of the broker's CONNACK to a raw paho client."""
    result: list = []
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, reconnect_on_failure=False)
    if username is not None:
        c.username_pw_set(username, password)
    c.on_connect = lambda client, userdata, flags, rc, props: result.append(rc)
    c.connect(host, port)
    c.loop_start()
    try:
        return wait_until(lambda: result[:1], WAIT, "CONNACK")[0]
    finally:
        c.disconnect()
        c.loop_stop()


def test_embedded_service_flow_and_anonymous_refused(tmp_path: Path):
    port = free_port()
    url_file = tmp_path / "broker.url"
    svc = ServiceProcess(
        [
            "--broker",
            "embedded",
            "--seed",
            "5",
            "--rate",
            "5",
            "--state-period",
            "0.25",
            "--pending-timeout",
            "2",
            "--duration",
            "240",
        ],
        tmp_path,
        env={"SIM_EMBEDDED_PORT": str(port), "SIM_EMBEDDED_URL_FILE": str(url_file)},
    )
    rec = None
    try:
        wait_until(lambda: url_file.exists() or not svc.alive(), WAIT, "URL file")
        assert svc.alive(), svc.logs()[-3000:]
        assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
        url = parse_broker_url(url_file.read_text().strip())
        assert (url.host, url.port, url.username) == ("127.0.0.1", port, "sim-ric")
        assert url.password and len(url.password) >= 16  # generated
        assert url.password not in svc.logs()  # never logged

        # Anonymous and wrong-password clients are refused.
        assert _connack("127.0.0.1", port).is_failure
        assert _connack("127.0.0.1", port, "sim-ric", "wrong").is_failure
        assert not _connack("127.0.0.1", port, "sim-ric", url.password).is_failure

        rec = Recorder(str(url)).start()
        wait_until(lambda: len(rec.snapshot()[0]) >= 2, WAIT, "states")
        wait_until(lambda: len(rec.snapshot()[1]) >= 4, WAIT, "requests")
        state = rec.latest_state()
        assert state.n_agents == 81 and state.topology_seed == 5
        reqs = rec.snapshot()[1]
        types = list(reqs[0].chain_types)
        chain = usable_chain(state, types)

        rec.decide(reqs[0].request_id, chain, elam="minilm", predicted=[0.4, 0.3, 0.15, 0.15])
        rec.send(b"\x07garbage")
        rec.send(codec.encode(rec.snapshot()[0][-1]))
        rec.decide("ghost", chain)
        rec.decide(reqs[1].request_id, [agent_of_other_type(state, types[0]), *chain[1:]])
        rec.send(codec.encode(codec.ControlDecision(request_id=reqs[2].request_id, rejection="x")))

        served = rec.wait_outcome(lambda o: o.request_id == reqs[0].request_id, WAIT, "served")
        assert (served.code, served.accepted, served.resolved) == ("served", True, True)
        assert math.isfinite(served.Q_subjective)
        assert list(served.predicted) == pytest.approx([0.4, 0.3, 0.15, 0.15])
        for code in ("garbage", "wrong_message_type", "unknown_request", "wrong_step_type"):
            o = rec.wait_outcome(lambda o, c=code: o.code == c, WAIT, code)
            assert not o.accepted and not o.resolved and o.reason
        o = rec.wait_outcome(lambda o: o.request_id == reqs[2].request_id, WAIT, "rejection")
        assert o.reason == "rejected by xApp: x"
        # The request with the wrong-type decision stays pending, then expires (2 s).
        o = rec.wait_outcome(
            lambda o: o.request_id == reqs[1].request_id and o.resolved, WAIT, "expiry"
        )
        assert (o.code, o.accepted) == ("expired", False)
        assert o.reason.startswith("expired: no decision")
        assert svc.alive()

        assert svc.terminate() == 0
        wait_until(lambda: rec.status[-1:] == [b"offline"], WAIT, "offline status")
        assert rec.errors == []
    finally:
        if svc.alive():
            svc.terminate()
        if rec is not None:
            rec.stop()


# ---- the embedded broker in-process ----------------------------------------------------
def test_embedded_broker_context_manager_auth_and_qos1():
    with EmbeddedBroker(password="s3cret/:@pw", extra_users={"xapp": "xpw"}) as broker:
        assert broker.running and broker.port > 0
        url = parse_broker_url(broker.url)
        assert (url.username, url.password, url.port) == ("sim-ric", "s3cret/:@pw", broker.port)
        assert "s3cret" not in broker.broker_url.redacted()
        assert _connack(broker.host, broker.port).is_failure
        assert _connack(broker.host, broker.port, "xapp", "nope").is_failure
        # QoS 1 messages published while a persistent-session subscriber is away wait for it.
        seen: list[bytes] = []
        got: list[bytes] = []

        def subscriber(into: list[bytes]) -> MqttClient:
            c = MqttClient(
                broker.url_for("xapp"), "xapp", client_id="xapp-1", persistent_session=True
            )
            c.subscribe("lameta/v1/t/x", lambda t, p: into.append(p))
            c.subscribe("lameta/v1/status/xapp", lambda t, p: seen.append(p))
            return c

        with subscriber(got) as sub:
            # Its own retained "online" comes back once the subscriptions are in place.
            wait_until(lambda: b"online" in seen, WAIT, "subscriptions active")
        with MqttClient(broker.url, "pub") as pub:
            assert pub.wait_connected(WAIT)
            for i in range(20):
                assert pub.publish("lameta/v1/t/x", b"%d" % i, qos=1)
            assert pub.flush(WAIT)
        assert got == []
        with subscriber(got) as sub:
            wait_until(lambda: len(got) >= 20, WAIT, "20 queued QoS 1 messages")
            assert sub.stats()["connects"] == 1
        assert got == [b"%d" % i for i in range(20)]
    assert not broker.running
    with pytest.raises(EmbeddedBrokerError, match="not running"):
        _ = broker.url


def test_embedded_broker_port_in_use_fails_clearly():
    with EmbeddedBroker() as first:
        clash = EmbeddedBroker(port=first.port, start_timeout=10)
        with pytest.raises(EmbeddedBrokerError, match="did not start"):
            clash.start()
        assert not clash.running
        assert first.running


def test_embedded_broker_url_file(tmp_path: Path):
    with EmbeddedBroker(password="pw") as broker:
        path = broker.write_url_file(tmp_path / "sub" / "url")
        assert path.read_text().strip() == broker.url
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_embedded_broker_rejects_bad_user_names():
    with pytest.raises(ValueError, match="user name"):
        EmbeddedBroker(username="a:b")
    with pytest.raises(ValueError, match="user name"):
        EmbeddedBroker(extra_users={"": "x"})
