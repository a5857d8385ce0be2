"""Closed-loop runs on the stack as deployed: the bench's loop (one xApp) and two xApp
replicas on an MQTT shared subscription, one SIGKILLed half-way, against real Mosquitto
with TLS and the per-user ACL: every request settled exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.loop import ROOT, e2e_policy

from lameta_proto.v1 import network_pb2
from lameta_stack.broker import mosquitto_available
from lameta_stack.loop import Kill, run_loop
from lameta_stack.observe import Observer
from lameta_stack.stack import StackConfig, StackError
from servicekit import codec
from servicekit.mqtt import MqttClient

needs_mosquitto = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed")


def _decisions(metrics_text: str) -> float:
    return sum(
        s.value
        for fam in text_string_to_metric_families(metrics_text)
        for s in fam.samples
        if s.name == "xapp_decisions_total"
    )


@needs_mosquitto
@pytest.mark.slow
def test_two_replicas_one_killed_settle_every_request_once(tmp_path) -> None:
    config = StackConfig(directory=tmp_path / "stack", broker="mosquitto", rate=8.0,
                         requests=120, policy=e2e_policy(), xapp_replicas=2,
                         reannounce_after=2.0)  # fmt: skip
    s = run_loop(config, Kill("xapp-2", share=0.4))
    assert s["killed"] is not None and s["killed"]["component"] == "xapp-2"
    assert s["requests"] == 120
    assert s["lost"] == 0 and s["duplicated"] == 0 and s["settled"] == 120
    assert s["outcomes"].get("served", 0) + sum(s["rejections_by_reason"].values()) == 120
    assert "expired" not in s["outcomes"]
    # The survivor decided fewer than all: the killed replica had its share before.
    assert set(s["metrics"]) == {"xapp", "rapp"}
    assert 0 < _decisions(s["metrics"]["xapp"]) < s["decided"]
    log = (tmp_path / "stack" / "logs" / "xapp-2.log").read_text()
    assert "$share/xapp-composer/lameta/v1/default/requests" in log
    assert "mqtt_subscribe_refused" not in log  # the ACL lets the xApp user subscribe


def test_replicas_need_mosquitto(tmp_path) -> None:
    config = StackConfig(directory=tmp_path / "stack", broker="embedded", requests=1,
                         policy=e2e_policy(), xapp_replicas=2)  # fmt: skip
    with pytest.raises(StackError, match="Mosquitto"):
        run_loop(config)


@needs_mosquitto
@pytest.mark.slow
def test_bench_closed_loop_reports_lost_duplicated_and_percentiles(tmp_path) -> None:
    res = subprocess.run(
        [sys.executable, "bench/bench_xapp.py", "--skip-decision-bench", "--no-lock",
         "--requests", "30", "--rate", "10", "--policy", str(e2e_policy()),
         "--logs", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    loop = out["closed_loop"]
    assert loop["requests"] == 30 and out["closed_loop_lost"] == 0
    assert out["closed_loop_duplicated"] == 0
    assert 0 < loop["p50_ms"] <= out["closed_loop_p99_ms"] <= loop["max_ms"]
    assert 0 < loop["to_decision_p50_ms"] <= loop["to_decision_p99_ms"] <= loop["max_ms"]
    assert loop["decision_to_observer_p99_ms"] >= 0
    assert loop["xapp_stages"]["xapp"]  # the xApp's own stage latencies
    assert loop["rapp_batch_size"]["batches"] >= 1  # Translate went through the batcher
    assert "closed_loop_none_lost_or_duplicated" in out["targets_met"]


def test_observer_splits_latency_at_the_xapps_decision_time() -> None:
    """Request to decision (the two messages' own stamps) plus decision to observer adds
    up to the request-to-observer latency; the handlers are fed directly."""
    observer = Observer(MqttClient("mqtt://localhost:1", "observer"))
    now = time.time_ns()
    request = network_pb2.ServiceRequest(
        request_id="r1", prompt="stream it", app="immersive", chain_types=[1, 2, 3],
        timestamp_ns=now - 10_000_000,
    )  # fmt: skip
    decision = network_pb2.ControlDecision(
        request_id="r1", chain=[4, 5, 6], timestamp_ns=now - 4_000_000
    )
    observer._on_request("requests", codec.encode(request))
    observer._on_decision("control", codec.encode(decision))
    out = observer.summary()
    assert out["to_decision_p50_ms"] == out["to_decision_p99_ms"] == 6.0
    assert out["decision_to_observer_p99_ms"] >= 4.0
    assert out["p50_ms"] == pytest.approx(6.0 + out["decision_to_observer_p99_ms"], abs=1e-3)


def test_observer_names_first_seen_prompts_and_requests_near_a_state() -> None:
    """The tail summary counts requests whose prompt was new to the run and requests
    issued just after a state message; a re-announced request is not new again."""
    observer = Observer(MqttClient("mqtt://localhost:1", "observer"))
    now = time.time_ns()
    ms = 1_000_000

    def announce(rid: str, prompt: str, at: int) -> None:
        observer._on_request("requests", codec.encode(network_pb2.ServiceRequest(
            request_id=rid, prompt=prompt, app="immersive", chain_types=[1, 2, 3],
            timestamp_ns=at,
        )))  # fmt: skip

    announce("r1", "stream it", now - 500 * ms)
    announce("r2", "stream it", now - 400 * ms)
    observer._on_state("state", b"")  # arrives now
    announce("r3", "render it", now + 2 * ms)  # issued 2 ms after the state
    announce("r1", "stream it", now - 500 * ms)  # announced again
    for rid in ("r1", "r2", "r3"):
        observer._on_decision("control", codec.encode(
            network_pb2.ControlDecision(request_id=rid, chain=[4, 5, 6], timestamp_ns=now)
        ))  # fmt: skip
    tail = observer.summary()["tail"]
    assert tail["first_seen_prompt"]["requests"] == 2  # r1 and r3
    assert tail["near_state"]["requests"] == 1  # r3
    assert tail["slowest_1pct"] == 1  # r1, the oldest, hence the slowest seen
    assert tail["first_seen_prompt"]["in_slowest_1pct"] == 1
    assert tail["near_state"]["in_slowest_1pct"] == 0
