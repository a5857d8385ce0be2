"""The deployed broker for real: Mosquitto on deploy/mosquitto/mosquitto.conf (port and
file locations moved to a temporary directory, nothing else changed), its password file
and ACL written by deploy/mosquitto/init.sh, its certificates made by
deploy/tls/make-certs.sh. TLS only, one user per component, forged messages never
delivered, the size limit enforced, sessions kept across a restart, and the compose
health check passing only with the right password."""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from support.mqtt import MOSQUITTO, Mosquitto, wait_until

from deploy.deploy_support import (
    ACL,
    BROKER_INIT,
    DEPLOY,
    needs_mosquitto_passwd,
    password_var,
    run_script,
)
from lameta_stack.broker import MESSAGE_SIZE_LIMIT
from servicekit.acl import USERS
from servicekit.mqtt import BrokerUrl, MqttClient, TlsOptions, Topics

pytestmark = [
    needs_mosquitto_passwd,
    pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto"),
]

T = Topics.for_network("default")


def _init_env(auth: Path, passwords: dict[str, str], **extra: str) -> dict[str, str]:
    env = {"AUTH_DIR": str(auth), "ACL_SRC": str(ACL), **extra}
    env.update({password_var(u): p for u, p in passwords.items()})
    return env


class DeployedBroker(Mosquitto):
    """deploy/mosquitto/mosquitto.conf with its port and paths moved under ``workdir``;
    with ``guard``, started as the guard's deployments start it: on
    deploy/mosquitto/guard.conf (paths moved likewise), which includes that file from
    ``workdir/config`` and writes the packet log to ``workdir/log``."""

    def __init__(self, workdir: Path, pki: Path, passwords: dict[str, str], guard: bool = False):
        super().__init__(workdir)
        auth = workdir / "auth"
        done = run_script(BROKER_INIT, _init_env(auth, passwords))
        assert done.returncode == 0, done.stderr
        (workdir / "data").mkdir()
        conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
        assert conf.count("\nlistener ") == 1
        for old, new in (
            ("listener 8883 0.0.0.0", f"listener {self.port} 127.0.0.1"),
            ("/mosquitto/auth/", f"{auth}/"),
            ("/mosquitto/tls/", f"{pki}/broker/"),
            ("/mosquitto/data/", f"{workdir}/data/"),
        ):
            assert old in conf, old
            conf = conf.replace(old, new)
        if os.geteuid() == 0:
            # As root Mosquitto would switch to its own user, which cannot read the test's
            # private files (the containers run it as that user from the start).
            conf += "user root\n"
        self.log: Path | None = None
        if guard:
            (workdir / "config").mkdir()
            (workdir / "config" / "mosquitto.conf").write_text(conf)
            (workdir / "log").mkdir()
            self.log = workdir / "log" / "mosquitto.log"
            conf = (DEPLOY / "mosquitto" / "guard.conf").read_text()
            for old, new in (("/mosquitto/log/mosquitto.log", str(self.log)),
                             ("include_dir /mosquitto/config", f"include_dir {workdir}/config")):  # fmt: skip
                assert old in conf, old
                conf = conf.replace(old, new)
        self.conf.write_text(conf)
        self.ca = str(pki / "ca.crt")

    def client(self, user: str, password: str, **kw) -> MqttClient:
        url = BrokerUrl("mqtts", "127.0.0.1", self.port, user, password)
        kw.setdefault("reconnect_min_delay_s", 0.2)
        kw.setdefault("reconnect_max_delay_s", 1.0)
        return MqttClient(url, user, tls=TlsOptions(ca_certs=self.ca), **kw)


@pytest.fixture
def broker(tmp_path, pki, passwords):
    b = DeployedBroker(tmp_path, pki, passwords).start()
    yield b
    b.stop()


def _connected(client: MqttClient, timeout: float = 10.0) -> MqttClient:
    client.start()
    assert client.wait_connected(timeout), client.last_error
    return client


def _refused(client: MqttClient) -> str:
    client.start()
    try:
        wait_until(
            lambda: client.counters["connect_refused"] or client.counters["connect_failures"],
            10,
            "the broker to refuse the client",
        )
        assert not client.wait_connected(0)
        return client.last_error
    finally:
        client.stop(timeout=0)


class Inbox:
    """Messages an observer receives, per topic."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: dict[str, list[bytes]] = {}

    def __call__(self, topic: str, payload: bytes) -> None:
        with self.lock:
            self.got.setdefault(topic, []).append(payload)

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return list(self.got.get(topic, []))


def _observer(broker: DeployedBroker, passwords, *topics: str) -> tuple[MqttClient, Inbox]:
    inbox = Inbox()
    obs = broker.client("observer", passwords["observer"])
    status = "lameta/v1/status/observer"
    for topic in {*topics, status}:
        obs.subscribe(topic, inbox)
    _connected(obs)
    # Its own retained status comes back once the subscriptions are active.
    wait_until(lambda: b"online" in inbox.on(status), 10, "the observer's subscriptions")
    return obs, inbox


def test_every_user_logs_in_over_tls_and_nobody_else(broker, passwords, tmp_path) -> None:
    for user in USERS:
        _connected(broker.client(user, passwords[user])).stop()
    assert _refused(broker.client("observer", passwords["operator"]))  # wrong password
    assert _refused(broker.client("lameta", passwords["observer"]))  # no such user
    assert _refused(MqttClient(BrokerUrl("mqtts", "127.0.0.1", broker.port), "anon",
                               tls=TlsOptions(ca_certs=broker.ca)))  # fmt: skip
    # Plain MQTT on the port: no TLS handshake, no connection.
    plain = MqttClient(f"mqtt://observer:{passwords['observer']}@127.0.0.1:{broker.port}", "p")
    plain.start()
    try:
        assert not plain.wait_connected(3)
    finally:
        plain.stop(timeout=0)
    # A client that trusts another CA does not accept the broker's certificate.
    other = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(tmp_path / "k"),
                    "-out", str(other), "-days", "1", "-subj", "/CN=other"],
                   check=True, capture_output=True)  # fmt: skip
    url = BrokerUrl("mqtts", "127.0.0.1", broker.port, "observer", passwords["observer"])
    stranger = MqttClient(url, "observer", tls=TlsOptions(ca_certs=str(other)))
    stranger.start()
    try:
        assert not stranger.wait_connected(3)
    finally:
        stranger.stop(timeout=0)


@pytest.mark.parametrize(
    ("user", "forged", "own"),
    [
        ("observer", T.control, None),
        ("xapp-composer", T.state, T.control),
        ("sim-ric", T.control, T.state),
        ("sim-ric", "lameta/v1/default/policy", T.requests),
        ("rapp-negotiation", T.requests, "lameta/v1/default/policy"),
        ("xapp-guard", T.control, "lameta/v1/default/alerts"),
    ],
)
def test_a_forged_message_never_reaches_a_subscriber(broker, passwords, user, forged, own):
    """The sender publishes on a topic it does not own, then (same connection, so in
    order) on its own or its status topic: once the second arrives, the first would
    have, had the broker forwarded it."""
    marker = own or f"lameta/v1/status/{user}"
    obs, inbox = _observer(broker, passwords, forged, marker)
    sender = _connected(broker.client(user, passwords[user]))
    try:
        sender.publish(forged, b"FORGED", qos=1)
        sender.publish(marker, b"OWN", qos=1)
        wait_until(lambda: b"OWN" in inbox.on(marker), 10, f"{user}'s own message")
    finally:
        sender.stop()
        obs.stop()
    assert b"FORGED" not in inbox.on(forged)


def test_payloads_beyond_the_size_limit_are_dropped(broker, passwords) -> None:
    obs, inbox = _observer(broker, passwords, T.state)
    sim = _connected(broker.client("sim-ric", passwords["sim-ric"]))
    try:
        sim.publish(T.state, b"x" * (MESSAGE_SIZE_LIMIT + 1), qos=1)
        sim.publish(T.state, b"y" * MESSAGE_SIZE_LIMIT, qos=1)
        sim.publish(T.state, b"last", qos=1)
        wait_until(lambda: b"last" in inbox.on(T.state), 20, "the last state message")
    finally:
        sim.stop()
        obs.stop()
    assert [len(p) for p in inbox.on(T.state)] == [MESSAGE_SIZE_LIMIT, 4]


def test_a_session_and_its_queued_requests_survive_a_broker_restart(broker, passwords) -> None:
    got: list[bytes] = []
    xapp = broker.client("xapp-composer", passwords["xapp-composer"], client_id="xapp-1",
                         persistent_session=True)  # fmt: skip
    xapp.subscribe(T.requests, lambda t, p: got.append(p))
    _connected(xapp)
    xapp.stop()  # away, its session kept
    sim = _connected(broker.client("sim-ric", passwords["sim-ric"]))
    sim.publish(T.requests, b"while-away", qos=1)
    assert sim.flush(10)
    sim.stop()
    broker.stop()  # SIGTERM: the store is written
    broker.start()
    xapp = broker.client("xapp-composer", passwords["xapp-composer"], client_id="xapp-1",
                         persistent_session=True)  # fmt: skip
    xapp.subscribe(T.requests, lambda t, p: got.append(p))
    _connected(xapp)
    try:
        wait_until(lambda: got, 10, "the request queued before the restart")
    finally:
        xapp.stop()
    assert got == [b"while-away"]


def _compose_healthcheck(port: int, ca: str) -> str:
    test = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["mosquitto"][
        "healthcheck"
    ]["test"]
    assert test[0] == "CMD-SHELL"
    # Compose passes "$$" as "$"; the host name is the compose service's.
    cmd = test[1].replace("$$", "$")
    for old, new in (("-h mosquitto -p 8883", f"-h 127.0.0.1 -p {port}"),
                     ("/mosquitto/tls/ca.crt", ca)):  # fmt: skip
        assert old in cmd
        cmd = cmd.replace(old, new)
    return cmd


@pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="needs mosquitto_sub")
def test_the_compose_health_check_passes_with_the_observer_password_only(broker, passwords):
    cmd = _compose_healthcheck(broker.port, broker.ca)
    ok = subprocess.run(["sh", "-c", cmd], env={**os.environ,
                        "MQTT_PASSWORD_OBSERVER": passwords["observer"]},
                        capture_output=True, timeout=30)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(["sh", "-c", cmd], env={**os.environ,
                         "MQTT_PASSWORD_OBSERVER": passwords["operator"]},
                         capture_output=True, timeout=30)  # fmt: skip
    assert bad.returncode != 0
    assert "observer" in shlex.split(cmd)


def test_init_writes_only_users_with_a_password_and_checks_them(tmp_path, passwords) -> None:
    two = {u: passwords[u] for u in ("sim-ric", "xapp-composer")}
    done = run_script(BROKER_INIT, _init_env(tmp_path / "a", two,
                      REQUIRED_USERS="xapp-composer sim-ric"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "a" / "passwd").read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["sim-ric", "xapp-composer"]
    assert all(line.split(":", 1)[1].startswith("$7$") for line in lines)  # hashed
    assert (tmp_path / "a" / "acl").read_text() == ACL.read_text()
    for name in ("passwd", "acl"):
        assert (tmp_path / "a" / name).stat().st_mode & 0o777 == 0o600
    assert "observer cannot log in" in done.stdout

    cases = [
        ({"sim-ric": passwords["sim-ric"]}, "MQTT_PASSWORD_XAPP_COMPOSER is not set"),
        ({**passwords, "observer": "has space and is long"}, "MQTT_PASSWORD_OBSERVER: use only"),
        ({**passwords, "observer": "p@ss/word:0123456789"}, "MQTT_PASSWORD_OBSERVER: use only"),
        ({**passwords, "operator": "short"}, "MQTT_PASSWORD_OPERATOR: at least 16"),
    ]
    for i, (given, message) in enumerate(cases):
        bad = run_script(BROKER_INIT, _init_env(tmp_path / f"b{i}", given))
        assert bad.returncode == 1 and message in bad.stderr, (message, bad.stderr)
        assert not (tmp_path / f"b{i}" / "passwd").exists()


LOG_ROTATE = DEPLOY / "mosquitto" / "log-rotate.sh"


@pytest.fixture
def guard_broker(tmp_path, pki, passwords):
    b = DeployedBroker(tmp_path, pki, passwords, guard=True).start()
    yield b
    b.stop()


def test_with_the_guard_config_the_guard_learns_who_published_what(guard_broker, passwords):
    """guard.conf keeps the deployed broker (TLS, users, ACL) and adds the packet log:
    the guard's sensor, logged in as xapp-guard, names the publisher of a request."""
    from xapp_guard.sensor import Sensor

    sensor = Sensor("default", guard_broker.log,
                    guard_broker.client("xapp-guard", passwords["xapp-guard"]))  # fmt: skip
    sensor.start()
    sim = _connected(guard_broker.client("sim-ric", passwords["sim-ric"], client_id="sim-1"))
    try:
        assert sensor.client.wait_connected(10)
        seen: list = []

        def published() -> bool:
            with contextlib.suppress(queue.Empty):
                while True:
                    seen.append(sensor.events.get_nowait())
            return any(e.kind == "publish" and e.topic == T.requests for e in seen)

        sim.publish(T.control, b"forged", qos=1)  # not sim-ric's topic: refused
        sim.publish(T.requests, b"r" * 37, qos=1)
        wait_until(published, 10, "the sensor's event for sim-1's request")
    finally:
        sim.stop()
        sensor.stop()
    [event] = [e for e in seen if e.kind == "publish" and e.topic == T.requests]
    assert (event.client, event.size) == ("sim-1", 37)
    # The same ACL as without the guard: the forged decision was denied, and logged.
    assert [e.topic for e in seen if e.kind == "denied" and e.client == "sim-1"] == [T.control]


def _rotate(log: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["sh", str(LOG_ROTATE)],
        env={"PATH": os.environ["PATH"], "LOG_FILE": str(log), **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_the_log_rotation_keeps_the_file_small_and_the_guard_reading(guard_broker, passwords):
    """log-rotate.sh copies and truncates the live file under a running Mosquitto: the
    broker's next lines start the emptied file (it appends: no hole of zero bytes), and
    the guard's sensor reopens it and reads on."""
    from xapp_guard.sensor import Sensor

    log = guard_broker.log
    sensor = Sensor("default", log, None).start()  # broker lines only
    rotate = _rotate(log, LOG_MAX_BYTES="2000", LOG_CHECK_SECONDS="1")
    sim = _connected(guard_broker.client("sim-ric", passwords["sim-ric"], client_id="sim-1"))
    seen: list = []

    def events() -> list:
        with contextlib.suppress(queue.Empty):
            while True:
                seen.append(sensor.events.get_nowait())
        return seen

    try:

        def rotated() -> bool:
            sim.publish(T.requests, b"x" * 100, qos=1)
            return sensor.stats()["reopened_mosquitto.log"] >= 1

        wait_until(rotated, 30, "a rotation of the broker's log", step=0.05)
        after = _connected(guard_broker.client("sim-ric", passwords["sim-ric"],
                                               client_id="after-rotation"))  # fmt: skip
        after.stop()
        wait_until(lambda: any(e.kind == "connect" and e.client == "after-rotation"
                               for e in events()), 10, "the sensor reading on")  # fmt: skip
    finally:
        sim.stop()
        sensor.stop()
        rotate.terminate()
        out, err = rotate.communicate(timeout=10)
    assert rotate.returncode == 0, err  # SIGTERM ends it cleanly
    assert "truncated" in out
    assert any(e.kind == "publish" and e.client == "sim-1" for e in seen)
    data = log.read_bytes()
    assert b"\0" not in data and b"as after-rotation" in data
    old = log.with_name(log.name + ".1").read_text()
    assert "Received PUBLISH from sim-1" in old and len(old) > 2000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOG_MAX_BYTES": "64M"}, "LOG_MAX_BYTES must be a number of bytes"),
        ({"LOG_MAX_BYTES": "0"}, "LOG_MAX_BYTES must be positive"),
        ({"LOG_CHECK_SECONDS": "0.5"}, "LOG_CHECK_SECONDS must be whole seconds"),
    ],
)
def test_the_log_rotation_refuses_bad_settings(tmp_path, env, message) -> None:
    done = _rotate(tmp_path / "mosquitto.log", **env)
    _, err = done.communicate(timeout=10)
    assert done.returncode == 1 and message in err
    missing = _rotate(tmp_path / "no" / "mosquitto.log")
    _, err = missing.communicate(timeout=10)
    assert missing.returncode == 1 and "no directory" in err
