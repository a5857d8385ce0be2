"""The local stack as deployed: TLS-only broker, one user per component with its ACL,
the rApp behind mutual TLS, a signed policy, the negotiation rApp and (with Mosquitto) the
intrusion detector under their own users; ``up`` returns ready, ``down`` leaves
nothing."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.loop import metric_sum

from lameta_stack.broker import mosquitto_available
from lameta_stack.stack import Stack, StackConfig, StackError
from servicekit import codec
from servicekit.integrity import load_public_key, verify_files
from servicekit.mqtt import BrokerUrl, MqttClient, TlsOptions, Topics

BROKERS = ["embedded", pytest.param("mosquitto", marks=pytest.mark.skipif(
    not mosquitto_available(), reason="mosquitto not installed"))]  # fmt: skip


def _client(desc: dict, user: str, password: str) -> MqttClient:
    b = desc["broker"]
    url = BrokerUrl("mqtts", b["host"], b["port"], user, password)
    return MqttClient(url, user, tls=TlsOptions(ca_certs=b["ca_file"]))


@pytest.fixture(scope="module", params=BROKERS)
def stack(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"stack-{request.param}")
    st = Stack(directory)
    desc = st.up(
        StackConfig(
            directory=directory,
            broker=request.param,
            rate=5.0,
            negotiation=True,
            guard=request.param == "mosquitto",
            env={"nego": {"NEGO_LLM": "scripted"}},
        )
    )
    yield st, desc
    stopped = st.down(grace=20)
    assert all(stopped.values()), stopped
    assert not any(r.alive() for r in st.records())


def test_up_describes_the_stack(stack) -> None:
    st, desc = stack
    on_disk = json.loads(st.file.read_text())
    assert on_disk == desc and desc["ready"] is True
    assert {"host", "port", "ca_file", "kind"} <= set(desc["broker"])
    assert {"address", "ca_file"} <= set(desc["rapp"])
    assert Path(desc["observer"]["password_file"]).exists()
    assert oct(Path(desc["observer"]["password_file"]).stat().st_mode & 0o777) == "0o600"
    assert desc["network"] == "default"
    assert all(st.status().values())


def test_only_the_owner_of_a_topic_reaches_its_subscribers(stack) -> None:
    """The loop runs (decisions reach the observer) while forged control messages from
    the observer and forged state from the xApp's identity never do."""
    st, desc = stack
    topics = Topics.for_network(desc["network"])
    seen: dict[str, list[bytes]] = {"control": [], "state": []}
    observer = _client(desc, "observer", st.password("observer"))
    observer.subscribe(topics.control, lambda t, p: seen["control"].append(p))
    observer.subscribe(topics.state, lambda t, p: seen["state"].append(p))
    observer.start()
    assert observer.wait_connected(10)
    xapp_id = _client(desc, "xapp-composer", st.password("xapp-composer"))
    xapp_id.start()
    assert xapp_id.wait_connected(10)
    try:
        observer.publish(topics.control, b"FORGED-CONTROL", qos=1)
        xapp_id.publish(topics.state, b"FORGED-STATE", qos=1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(seen["control"]) < 3:
            time.sleep(0.1)
    finally:
        observer.stop()
        xapp_id.stop()
    assert len(seen["control"]) >= 3, "the xApp's decisions reach the observer"
    assert b"FORGED-CONTROL" not in seen["control"]
    assert b"FORGED-STATE" not in seen["state"]


def test_a_wrong_password_is_refused(stack) -> None:
    _, desc = stack
    client = _client(desc, "sim-ric", "not-the-password")
    client.start()
    try:
        assert not client.wait_connected(3)
    finally:
        client.stop(timeout=1)


def test_the_rapp_refuses_callers_without_a_certificate(stack) -> None:
    _, desc = stack
    ca = Path(desc["rapp"]["ca_file"]).read_bytes()
    anonymous = grpc.ssl_channel_credentials(ca)
    with (
        grpc.secure_channel(desc["rapp"]["address"], anonymous) as ch,
        pytest.raises(grpc.RpcError),
    ):
        health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    op = desc["operator"]
    creds = grpc.ssl_channel_credentials(
        ca, Path(op["client_key"]).read_bytes(), Path(op["client_cert"]).read_bytes()
    )
    with grpc.secure_channel(desc["rapp"]["address"], creds) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_the_xapp_runs_a_policy_signed_by_the_stacks_key(stack) -> None:
    st, desc = stack
    policy = Path(desc["xapp"]["policy"])
    doc = json.loads((policy.parent / f"{policy.stem}.signature.json").read_text())
    names = [p.name for p in policy.parent.glob(f"{policy.stem}.*")
             if not p.name.endswith(".signature.json")]  # fmt: skip
    verify_files(doc, policy.parent, names, load_public_key(st.keys_dir / "policy.pub"))
    assert doc["key_id"] == desc["xapp"]["policy_key_id"]


def test_a_second_up_in_the_same_directory_is_refused(stack) -> None:
    st, _ = stack

    with pytest.raises(StackError, match="already running"):
        st.up(StackConfig(directory=st.dir))


def test_the_negotiated_policy_reaches_the_emulator_under_its_own_identity(stack) -> None:
    """rapp-negotiation logs in as its own user over TLS and publishes λ* (retained); the
    emulator applies it; the same topic written by the xApp's identity reaches nobody."""
    st, desc = stack
    topics = Topics.for_network(desc["network"])
    got: list[bytes] = []
    xapp_id = _client(desc, "xapp-composer", st.password("xapp-composer"))
    xapp_id.start()
    assert xapp_id.wait_connected(10)
    xapp_id.publish(topics.policy, b"FORGED-POLICY", qos=1, retain=True)
    xapp_id.stop()
    observer = _client(desc, "observer", st.password("observer"))
    observer.subscribe(topics.policy, lambda t, p: got.append(p))
    observer.start()
    try:
        assert observer.wait_connected(10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not got:
            time.sleep(0.1)
    finally:
        observer.stop()
    assert got and b"FORGED-POLICY" not in got
    policy = codec.decode_policy(got[-1])
    assert policy.network == desc["network"] and policy.arrival_rate > 0 < policy.capacity
    assert st.status()["nego"]
    sim_log = Path(st.record("sim").log).read_text()
    deadline = time.monotonic() + 30
    while policy.negotiation_id not in sim_log and time.monotonic() < deadline:
        time.sleep(0.2)
        sim_log = Path(st.record("sim").log).read_text()
    applied = [json.loads(line) for line in sim_log.splitlines() if '"policy_applied"' in line]
    assert any(e["negotiation_id"] == policy.negotiation_id for e in applied)


def test_the_guard_scores_the_stacks_traffic_as_its_own_user(stack) -> None:
    """With Mosquitto, xapp-guard logs in as its own user over TLS, reads the broker's
    log (every packet), scores windows and exports them; the broker denies it nothing."""
    st, desc = stack
    if desc["broker"]["kind"] != "mosquitto":
        assert "guard" not in desc
        return
    assert st.status()["guard"]
    url = desc["guard"]["metrics"]
    deadline = time.monotonic() + 30
    text = httpx.get(url, timeout=2).text
    while metric_sum(text, "xapp_guard_windows_total") == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        text = httpx.get(url, timeout=2).text
    assert metric_sum(text, "xapp_guard_events_total") > 0
    assert metric_sum(text, "xapp_guard_windows_total") > 0
    assert metric_sum(text, "xapp_guard_clients") > 0
    broker_log = Path(st.record("broker").log).read_text()
    assert re.search(r"New client connected .* as xapp-guard-default .*u'xapp-guard'", broker_log)
    assert "Received PUBLISH from sim-ric" in broker_log  # log_type all
    assert not re.search(r"Denied \S+ from xapp-guard", broker_log)
    env = json.loads((st.dir / "run" / "guard.env.json").read_text())
    assert env["GUARD_BROKER"].startswith("mqtts://xapp-guard:")


def test_the_guard_needs_mosquitto(tmp_path) -> None:
    with pytest.raises(StackError, match="needs Mosquitto"):
        Stack(tmp_path).up(StackConfig(directory=tmp_path, broker="embedded", guard=True))
    assert not (tmp_path / "stack.json").exists()
