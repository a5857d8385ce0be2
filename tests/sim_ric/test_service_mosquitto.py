"""End to end: ``sim-ric run`` as a subprocess against a real Mosquitto process.

States and requests flow, a valid decision is served, every kind of bad input is refused
with its reason while the service keeps running and loses no pending request, and a
broker killed and restarted on the same port mid-run is survived: the service
reconnects, states and outcomes flow again and a request issued before the restart is
still decidable.
"""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest
from support.mqtt import (
    MOSQUITTO,
    Mosquitto,
    Recorder,
    ServiceProcess,
    agent_of_other_type,
    free_port,
    usable_chain,
    wait_until,
)

from servicekit import codec

pytestmark = pytest.mark.slow

WAIT = 30.0


@pytest.fixture
def broker(tmp_path: Path):
    assert Path(MOSQUITTO).exists(), "mosquitto is required (.ci/run installs it)"
    b = Mosquitto(tmp_path).start()
    yield b
    b.stop()


def _service(broker: Mosquitto, tmp_path: Path, *extra: str) -> ServiceProcess:
    return ServiceProcess(
        [
            "--broker",
            broker.url,
            "--seed",
            "11",
            "--rate",
            "5",
            "--state-period",
            "0.25",
            "--pending-timeout",
            "300",
            "--duration",
            "240",
            *extra,
        ],
        tmp_path,
        env={"SIM_RECONNECT_MIN_DELAY": "0.2", "SIM_RECONNECT_MAX_DELAY": "1.0"},
    )


def test_service_serves_refuses_and_survives_a_broker_restart(broker, tmp_path):
    rec = Recorder(broker.url).start()
    metrics_port = free_port()
    svc = _service(broker, tmp_path, "--metrics-port", str(metrics_port))
    try:
        # ---- states, status and requests flow ----------------------------------------------
        wait_until(lambda: b"online" in rec.status, WAIT, "status online")
        wait_until(lambda: len(rec.snapshot()[0]) >= 3, WAIT, "3 states")
        states = rec.snapshot()[0]
        assert [s.seq for s in states] == sorted(s.seq for s in states)
        assert states[-1].network == "default" and states[-1].topology_seed == 11
        assert len(states[-1].agents) == 81 and len(states[-1].links) > 81
        wait_until(lambda: len(rec.snapshot()[1]) >= 8, WAIT, "8 requests")
        reqs = rec.snapshot()[1]
        assert len({r.request_id for r in reqs}) == len(reqs)
        assert all(list(r.chain_types) == [1, 2, 3] and r.prompt and r.app for r in reqs)
        types = list(reqs[0].chain_types)

        # ---- a valid decision ----------------------------------------------------------------
        ok = reqs[0]
        state = rec.latest_state()
        chain = usable_chain(state, types)
        rec.decide(ok.request_id, chain, elam="minilm", predicted=[0.25] * 4, state_seq=state.seq)
        out = rec.wait_outcome(lambda o: o.request_id == ok.request_id, WAIT, "served outcome")
        assert (out.accepted, out.resolved, out.code) == (True, True, "served")
        assert (out.prompt, out.app, list(out.chain), out.elam) == (
            ok.prompt,
            ok.app,
            chain,
            "minilm",
        )
        assert math.isfinite(out.Q_subjective) and math.isfinite(out.reward)
        assert math.isclose(out.C, math.prod(state.capability[chain]) / 3, rel_tol=0.5)

        # ---- every bad kind, against a pending request ---------------------------------------
        bad = reqs[1]
        rid = bad.request_id
        good = usable_chain(state, types)
        wrong_first = agent_of_other_type(state, types[0])
        cases = [
            (b"\x00\xffnot a protobuf", "garbage", "garbage bytes"),
            (codec.encode(rec.snapshot()[0][-1]), "wrong_message_type", "got a network state"),
            (
                codec.encode(codec.ControlDecision(request_id="nope-1", chain=good)),
                "unknown_request",
                "unknown request id 'nope-1'",
            ),
            (
                codec.encode(codec.ControlDecision(request_id=rid, chain=[*good[:2], 4000])),
                "agent_out_of_range",
                "4000",
            ),
            (
                codec.encode(codec.ControlDecision(request_id=rid, chain=good[:2])),
                "wrong_chain_length",
                "chain has 2 agents",
            ),
            (
                codec.encode(codec.ControlDecision(request_id=rid, chain=[wrong_first, *good[1:]])),
                "wrong_step_type",
                f"agent {wrong_first}",
            ),
            (
                codec.encode(codec.ControlDecision(request_id=rid, chain=good, elam="gpt-9")),
                "unknown_elam",
                "gpt-9",
            ),
            (
                codec.encode(codec.ControlDecision(request_id=ok.request_id, chain=good)),
                "duplicate",
                "already decided",
            ),
        ]
        for payload, _, _ in cases:
            rec.send(payload)
        for _, code, text in cases:
            o = rec.wait_outcome(lambda o, c=code: o.code == c, WAIT, f"outcome {code}")
            assert not o.accepted and not o.resolved
            assert text in o.reason, (code, o.reason)
        assert svc.alive(), svc.logs()[-3000:]
        # The request that drew the refusals is still pending and decidable.
        rec.decide(rid, good, elam="smollm2")
        o = rec.wait_outcome(lambda o: o.request_id == rid and o.resolved, WAIT, "late valid")
        assert (o.code, o.accepted, o.elam) == ("served", True, "smollm2")
        # An explicit rejection settles a request.
        rej = reqs[2]
        rec.send(codec.encode(codec.ControlDecision(request_id=rej.request_id, rejection="busy")))
        o = rec.wait_outcome(lambda o: o.request_id == rej.request_id, WAIT, "rejection")
        assert (o.code, o.resolved, o.reason) == (
            "rejected_by_xapp",
            True,
            "rejected by xApp: busy",
        )

        # ---- the broker dies and comes back on the same port ----------------------------------
        keep = reqs[3]  # issued before the restart, never decided
        n_states, n_reqs = len(rec.snapshot()[0]), len(rec.snapshot()[1])
        seq_before = rec.snapshot()[0][-1].seq
        broker.kill()
        wait_until(lambda: not rec.client.connected, WAIT, "test client to notice the outage")
        # Keep the broker down until the service has retried (with backoff) and failed.
        wait_until(
            lambda: svc.logs().count('"mqtt_connect_failed"') >= 2, WAIT, "failed reconnects"
        )
        broker.start()
        wait_until(lambda: rec.client.connected, WAIT, "test client reconnect")
        wait_until(lambda: rec.status.count(b"online") >= 2, WAIT, "service online again")
        wait_until(
            lambda: [s for s in rec.snapshot()[0][n_states:] if s.seq > seq_before],
            WAIT,
            "states after the restart",
        )
        wait_until(lambda: len(rec.snapshot()[1]) > n_reqs, WAIT, "requests after the restart")
        assert svc.alive(), svc.logs()[-3000:]
        state = rec.latest_state()
        chain = usable_chain(state, types, pick=1)
        rec.decide(keep.request_id, chain, elam="minilm")
        o = rec.wait_outcome(
            lambda o: o.request_id == keep.request_id, WAIT, "outcome of a pre-restart request"
        )
        assert (o.code, o.accepted, o.resolved) == ("served", True, True)
        fresh = rec.snapshot()[1][-1]
        rec.decide(fresh.request_id, usable_chain(state, types))
        o = rec.wait_outcome(lambda o: o.request_id == fresh.request_id, WAIT, "new request")
        assert o.code == "served"
        assert '"broker_connected"' in svc.logs()

        # ---- Prometheus counters -------------------------------------------------------------
        def metrics() -> str:
            return httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text

        wait_until(
            lambda: 'sim_ric_outcomes_total{code="served"} 4.0' in metrics(), WAIT, "metrics"
        )
        text = metrics()
        for code in ("garbage", "wrong_message_type", "unknown_request", "duplicate"):
            assert f'sim_ric_outcomes_total{{code="{code}"}} 1.0' in text
        assert 'sim_ric_mqtt_events_total{event="disconnects"} 1.0' in text
        assert "sim_ric_mqtt_connected 1.0" in text

        # ---- graceful stop: pending requests settled, offline published ----------------------
        still_pending = {r.request_id for r in rec.snapshot()[1]} - {
            o.request_id for o in rec.snapshot()[2] if o.resolved
        }
        assert svc.terminate() == 0
        wait_until(lambda: rec.status[-1:] == [b"offline"], WAIT, "status offline")
        shut = wait_until(
            lambda: (
                {o.request_id for o in rec.snapshot()[2] if o.code == "shutdown"} >= still_pending
            ),
            WAIT,
            "shutdown outcomes for every pending request",
        )
        assert shut
        assert rec.errors == []
    finally:
        if svc.alive():
            svc.terminate()
        rec.stop()


def test_service_exits_after_its_request_budget_with_every_request_settled(broker, tmp_path):
    rec = Recorder(broker.url).start()
    svc = ServiceProcess(
        [
            "--broker",
            broker.url,
            "--seed",
            "2",
            "--rate",
            "20",
            "--requests",
            "4",
            "--pending-timeout",
            "0.5",
            "--state-period",
            "0.2",
        ],
        tmp_path,
    )
    try:
        assert svc.wait(60) == 0, svc.logs()[-3000:]
        outs = rec.wait_outcome_count(4, WAIT)
        reqs = rec.snapshot()[1]
        assert len(reqs) == 4
        assert sorted(o.request_id for o in outs) == sorted(r.request_id for r in reqs)
        assert {o.code for o in outs} == {"expired"}
        assert all(o.reason.startswith("expired: no decision") for o in outs)
    finally:
        if svc.alive():
            svc.terminate()
        rec.stop()


def test_bad_settings_fail_clearly(tmp_path):
    svc = ServiceProcess(["--broker", "http://x:1", "--seed", "1"], tmp_path)
    assert svc.wait(60) == 2
    assert "scheme must be mqtt:// or mqtts://" in svc.logs()
    svc = ServiceProcess(
        ["--broker", "mqtt://127.0.0.1:1", "--intents", "/nonexistent.jsonl"], tmp_path
    )
    assert svc.wait(60) == 2
    assert "not found" in svc.logs()
