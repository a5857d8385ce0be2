"""The closed loop with real processes: Mosquitto, ``sim-ric run``, ``rapp-intent serve
--models minilm`` and ``xapp-composer run``.

- decisions flow and served outcomes reach the rApp's memory;
- the rApp is killed mid-run (fallback decisions), then restarted (translations again);
- the broker restarts mid-run: every request the emulator issued is settled by exactly
  one decision, none expires;
- malformed requests and states, a duplicated request, a stale state, a hot-reloaded and a
  broken policy, then SIGTERM: explicit rejections, one decision, the loop alive,
  "offline" at the end.

The emulator's own counters (its last log line) are the ground truth for "no request
lost": every request it issued is settled as served or rejected by the xApp, none expired
and no decision was refused as a duplicate.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from support.loop import (
    DecisionRecorder,
    Mosquitto,
    PersistentMosquitto,
    RappProcess,
    ServiceProcess,
    XappProcess,
    copy_policy,
    e2e_policy,
    perturbed_copy,
    wait_until,
)

from agentnet.network import generate_network
from lameta_proto.v1 import network_pb2
from servicekit import codec
from servicekit.mqtt import MqttClient, Topics

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("loop-e2e")


@pytest.fixture(scope="module")
def rapp(workdir):
    (workdir / "rapp-a").mkdir()
    proc = RappProcess(workdir / "rapp-a").wait_serving()
    yield proc
    proc.terminate()


def sim_counters(sim: ServiceProcess) -> dict:
    """The emulator's final counters (its ``service_stopping`` log line)."""
    for line in reversed(sim.logs().splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if obj.get("event") == "service_stopping":
            return obj
    raise AssertionError(f"no service_stopping line:\n{sim.logs()[-3000:]}")


def assert_every_request_settled_once(counters: dict, n: int, rec: DecisionRecorder) -> None:
    assert counters["requests"] == n, counters
    settled = counters.get("outcome.served", 0) + counters.get("outcome.rejected_by_xapp", 0)
    assert settled == n, counters
    assert counters.get("outcome.expired", 0) == 0, counters
    assert counters.get("outcome.duplicate", 0) == 0, counters
    per_request = rec.by_request()
    assert len(per_request) == n and all(len(v) == 1 for v in per_request.values())


def test_decisions_flow_and_outcomes_reach_the_rapp_memory(workdir, rapp) -> None:
    broker = Mosquitto(workdir).start()
    rec = DecisionRecorder(broker.url).start()
    xapp = XappProcess(workdir, broker.url, rapp.target, e2e_policy()).wait_ready()
    before = set(rapp.memory_request_ids())
    n = 40
    sim = ServiceProcess(
        ["--broker", broker.url, "--rate", "10", "--requests", str(n), "--seed", "3"], workdir
    )
    try:
        assert sim.wait(120) == 0
        counters = sim_counters(sim)
        assert_every_request_settled_once(counters, n, rec)
        decisions = [d for ds in rec.by_request().values() for d in ds]
        served = [d for d in decisions if not d.rejection]
        assert served and all(len(d.chain) == 3 for d in served)
        assert all(d.policy_version.startswith("srl-general@") for d in decisions)
        translated = [d for d in served if not d.fallback]
        assert len(translated) >= n // 2, "the rApp was up: most vectors are translations"
        assert all(d.elam == "minilm" for d in translated)
        assert all(abs(sum(d.predicted) - 1) < 1e-3 for d in served)
        # Every served, translated decision's outcome lands in the rApp's memory.
        want = {d.request_id for d in translated}
        wait_until(
            lambda: want <= set(rapp.memory_request_ids()) - before,
            20,
            "outcomes in the rApp memory",
        )
        assert xapp.metric("xapp_outcomes_total", result="relayed") >= len(want)
        assert xapp.metric("xapp_decisions_total") == len(served)
        assert xapp.metric("xapp_stage_latency_seconds_count", stage="end_to_end") == n
    finally:
        assert xapp.terminate() == 0
        rec.stop()
        broker.stop()


def test_rapp_killed_mid_run_gives_fallbacks_then_recovers(workdir) -> None:
    (workdir / "rapp-b").mkdir()
    rapp = RappProcess(workdir / "rapp-b").wait_serving()
    broker = Mosquitto(workdir).start()
    rec = DecisionRecorder(broker.url).start()
    xapp = XappProcess(workdir, broker.url, rapp.target, e2e_policy()).wait_ready()
    n = 400
    sim = ServiceProcess(
        ["--broker", broker.url, "--rate", "8", "--requests", str(n), "--seed", "4"], workdir
    )
    try:
        wait_until(lambda: rec.count() >= 20, 60, "20 decisions")
        rapp.kill()
        t_kill = time.time_ns()
        wait_until(lambda: xapp.metric("xapp_fallbacks_total") >= 10, 30, "fallbacks")
        assert not xapp.ready().get("rapp"), "readiness reports the rApp down"
        restarted = RappProcess(rapp.memory.parent, port=rapp.port).wait_serving()
        t_back = time.time_ns()
        translated_again = lambda: [  # noqa: E731
            d
            for ds in rec.by_request().values()
            for d in ds
            if not d.fallback and not d.rejection and d.timestamp_ns > t_back
        ]
        wait_until(lambda: len(translated_again()) >= 5, 60, "translations after the restart")
        # Readiness follows the periodic health check (0.5 s here), which may trail the
        # first translations once the circuit reopens.
        wait_until(lambda: xapp.ready().get("ready"), 10, "readiness after the restart")
        decisions = [d for ds in rec.by_request().values() for d in ds]
        during = [d for d in decisions if t_kill < d.timestamp_ns < t_back - int(3e9)]
        assert during and all(d.fallback and d.elam == "" for d in during if not d.rejection)
        sim.terminate()  # enough: the rest would be more of the same
        counters = sim_counters(sim)
        assert counters.get("outcome.expired", 0) == 0
        assert counters.get("outcome.duplicate", 0) == 0
        assert all(len(v) == 1 for v in rec.by_request().values())
        causes = {"unavailable", "circuit_open", "deadline"}
        assert sum(xapp.metric("xapp_fallbacks_total", cause=c) for c in causes) >= 10
    finally:
        assert xapp.terminate() == 0
        rec.stop()
        broker.stop()
        if "restarted" in locals():
            restarted.terminate()


def test_broker_restart_loses_no_request(workdir, rapp) -> None:
    broker = PersistentMosquitto(workdir).start()
    rec = DecisionRecorder(broker.url).start()
    xapp = XappProcess(workdir, broker.url, rapp.target, e2e_policy()).wait_ready()
    n = 100
    sim = ServiceProcess(
        ["--broker", broker.url, "--rate", "10", "--requests", str(n), "--seed", "5"],
        workdir,
        env={"SIM_RECONNECT_MIN_DELAY": "0.2", "SIM_RECONNECT_MAX_DELAY": "1.0"},
    )
    try:
        wait_until(lambda: rec.count() >= 25, 60, "25 decisions")
        broker.stop()  # SIGTERM: Mosquitto saves sessions and queued messages
        time.sleep(1.5)  # requests keep coming to nobody; the xApp keeps deciding
        broker.start()
        wait_until(lambda: xapp.ready().get("broker"), 30, "xapp reconnected")
        assert sim.wait(180) == 0
        counters = sim_counters(sim)
        assert_every_request_settled_once(counters, n, rec)
        assert xapp.metric("xapp_events_total", event="request_deferred_shutdown") == 0
    finally:
        assert xapp.terminate() == 0
        rec.stop()
        broker.stop()


def _state(net, seq: int, ts: int) -> bytes:
    return codec.encode(codec.state_message(net, network="t", seq=seq, timestamp_ns=ts))


def _req(rid: str, **kw) -> bytes:
    fields = {
        "request_id": rid,
        "prompt": "summarise the lab results exactly",
        "app": "qa",
        "chain_types": [1, 2, 3],
        "arrival_rate": 1.0,
        **kw,
    }
    return codec.encode(network_pb2.ServiceRequest(**fields))


def test_malformed_input_duplicates_stale_state_reload_and_shutdown(workdir, rapp) -> None:
    broker = Mosquitto(workdir).start()
    topics = Topics.for_network("t")
    rec = DecisionRecorder(broker.url, network="t").start()
    live = copy_policy(e2e_policy(), workdir / "hot")
    xapp = XappProcess(
        workdir,
        broker.url,
        rapp.target,
        live,
        "--network",
        "t",
        env={"XAPP_POLICY_RELOAD_PERIOD": "0.3"},
    ).wait_ready()
    pub = MqttClient(broker.url, "test-emulator")
    pub.start()
    assert pub.wait_connected(5)

    def send(topic: str, payload: bytes, retain: bool = False) -> None:
        assert pub.publish(topic, payload, qos=1, retain=retain)

    def fresh(seq: int) -> None:
        send(topics.state, _state(net, seq, time.time_ns()), retain=True)
        wait_until(lambda: xapp.metric("xapp_state_seq") == seq, 10, f"state {seq}")

    net = generate_network(8)
    try:
        # No state yet.
        send(topics.requests, _req("early"))
        assert rec.wait_for("early").rejection.startswith("no_state:")
        fresh(1)
        send(topics.requests, _req("ok-1"))
        ok1 = rec.wait_for("ok-1")
        assert not ok1.rejection and len(ok1.chain) == 3 and ok1.state_seq == 1
        # Malformed requests: explicit rejections; garbage without an id: counted drop.
        send(topics.requests, b"\x08\x01garbage\xff\xff")
        send(topics.requests, codec.encode(network_pb2.ServiceRequest(request_id="bad-1")))
        send(topics.requests, _req("bad-2", app="banking"))
        send(topics.requests, _req("bad-3", chain_types=[1, 9, 3]))
        for rid, words in (
            ("bad-1", "missing field"),
            ("bad-2", "unknown application"),
            ("bad-3", "chain types [9]"),
        ):
            d = rec.wait_for(rid)
            assert d.rejection.startswith("malformed_request:") and words in d.rejection
        # Malformed states: ignored (the serving state stays), counted.
        send(topics.state, b"not a state")
        wait_until(
            lambda: xapp.metric("xapp_states_total", result="malformed_garbage") == 1,
            10,
            "garbage state counted",
        )
        bad = codec.state_message(net, network="t", seq=2, timestamp_ns=time.time_ns())
        bad.agents[3].mu = -1.0
        send(topics.state, codec.encode(bad))
        wait_until(
            lambda: xapp.metric("xapp_states_total", result="malformed_invalid_field") == 1,
            10,
            "impossible state counted",
        )
        assert xapp.metric("xapp_state_seq") == 1  # the serving state stays
        # A duplicated request (same id twice): decided once, and the same decision
        # published again for the second announcement.
        send(topics.requests, _req("dup"))
        send(topics.requests, _req("dup"))
        send(topics.requests, _req("ok-2"))
        assert not rec.wait_for("ok-2").rejection  # the loop is alive, in order
        dups = rec.by_request()["dup"]
        assert len(dups) == 2 and codec.encode(dups[0]) == codec.encode(dups[1])
        assert xapp.metric("xapp_duplicates_total") == 1
        assert xapp.metric("xapp_requests_dropped_total", reason="undecodable_garbage") == 1
        # Hot reload: a new policy is swapped in; a broken one is rejected.
        old_version = ok1.policy_version
        new = perturbed_copy(e2e_policy(), workdir / "hot-new")
        for f in new.parent.iterdir():
            shutil.copy(f, live.parent / f.name)
        wait_until(
            lambda: xapp.metric("xapp_policy_reloads_total", result="loaded") == 1,
            20,
            "policy reloaded",
        )
        fresh(3)  # states older than XAPP_MAX_STATE_AGE are stale: this test is the emulator
        send(topics.requests, _req("after-reload"))
        after = rec.wait_for("after-reload")
        assert not after.rejection
        new_version = after.policy_version
        assert new_version != old_version
        with live.open("ab") as fh:
            fh.write(b"broken")
        wait_until(
            lambda: xapp.metric("xapp_policy_reloads_total", result="rejected") == 1,
            20,
            "broken policy rejected",
        )
        fresh(4)
        send(topics.requests, _req("after-broken"))
        after = rec.wait_for("after-broken")
        assert not after.rejection and after.policy_version == new_version
        # A stale state (newer seq, old timestamp): rejected rather than decided blind.
        send(topics.state, _state(net, 5, time.time_ns() - int(60e9)))
        wait_until(lambda: xapp.metric("xapp_state_seq") == 5, 10, "stale state installed")
        send(topics.requests, _req("stale"))
        assert rec.wait_for("stale").rejection.startswith("stale_state:")
        reasons = {
            r: xapp.metric("xapp_rejections_total", reason=r)
            for r in ("no_state", "malformed_request", "stale_state")
        }
        assert reasons == {"no_state": 1, "malformed_request": 3, "stale_state": 1}
    finally:
        pub.stop()
        code = xapp.terminate()
        wait_until(lambda: rec.status and rec.status[-1] == b"offline", 10, "offline status")
        rec.stop()
        broker.stop()
    assert code == 0
    assert any(e.get("event") == "xapp_stopped" for e in xapp.log_events())
    assert np.isfinite(ok1.predicted).all()
