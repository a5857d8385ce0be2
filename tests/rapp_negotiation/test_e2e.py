"""End to end: ``sim-ric run`` and ``rapp-negotiation run`` as real processes on a real
Mosquitto. The consensus reaches the emulator and changes what the xApp sees: when the
tenants' new intents halve λ*, the states carry the new λ and the mean latency of the
chains the xApp gets served falls.

The tenants are scripted (a test aid) under the hard design, so λ* is the closed-form x*
of their targets; everything else is the deployed code path.
"""

from __future__ import annotations

import json
import signal
import statistics
from pathlib import Path

import httpx
import numpy as np
import pytest
from support.mqtt import MOSQUITTO, Mosquitto, Recorder, ServiceProcess, free_port, wait_until
from support.processes import ManagedProcess

from servicekit import codec

pytestmark = pytest.mark.slow
WAIT = 60.0


def write_intents(path: Path, target: float) -> None:
    rows = [{"name": "content", "intent": "serve many creators", "target": target},
            {"name": "qa", "intent": "answer fast", "target": target}]  # fmt: skip
    path.write_text(json.dumps({"tenants": rows}))


def fastest_chain(state: codec.StateArrays, types) -> list[int]:
    """Per step, the available agent with the largest service rate (stable at both λ*)."""
    chain = []
    for t in types:
        ids = np.flatnonzero((state.types == t) & state.available)
        chain.append(int(ids[np.argmax(state.mu[ids])]))
    return chain


def served_latencies(rec: Recorder, rate: float, k: int) -> list[float]:
    """Decide ``k`` requests issued at λ = ``rate`` with the fastest chain; their L."""

    def at_rate() -> bool:
        states = rec.snapshot()[0]
        return bool(states) and abs(states[-1].arrival_rate - rate) < 1e-3

    wait_until(at_rate, WAIT, f"states at λ = {rate}")
    seen = {r.request_id for r in rec.snapshot()[1]}
    wait_until(lambda: len(rec.snapshot()[1]) >= len(seen) + k, WAIT, f"{k} new requests")
    fresh = [r for r in rec.snapshot()[1] if r.request_id not in seen][:k]
    assert all(abs(r.arrival_rate - rate) < 1e-3 for r in fresh)
    out = []
    for req in fresh:
        state = rec.latest_state()
        rec.decide(req.request_id, fastest_chain(state, list(req.chain_types)))
        o = rec.wait_outcome(lambda o, rid=req.request_id: o.request_id == rid, WAIT, "outcome")
        assert o.code == "served"
        out.append(o.L)
    return out


def test_a_halved_consensus_lowers_the_latency_the_xapp_sees(tmp_path: Path):
    assert Path(MOSQUITTO).exists(), "mosquitto is required"
    broker = Mosquitto(tmp_path).start()
    intents = tmp_path / "tenants.json"
    write_intents(intents, 6.0)
    rec = Recorder(broker.url).start()
    health = free_port()
    sim = ServiceProcess(
        ["--broker", broker.url, "--seed", "0", "--rate", "2", "--state-period", "0.2",
         "--pending-timeout", "300", "--duration", "300"],
        tmp_path,
    )  # fmt: skip
    nego = ManagedProcess(
        "rapp-negotiation",
        ["run", "--broker", broker.url, "--llm", "scripted", "--design", "hard",
         "--intents", str(intents), "--intents-poll", "0.2", "--arbitral", "off",
         "--health-port", str(health), "--health-host", "127.0.0.1"],
        tmp_path,
        env={"NEGO_LOG_FORMAT": "json"},
    )  # fmt: skip
    try:
        high = served_latencies(rec, 6.0, 6)
        write_intents(intents, 3.0)  # the tenants' business intents change at run time
        low = served_latencies(rec, 3.0, 6)
        assert statistics.fmean(low) < statistics.fmean(high)
        # An operator's request (SIGHUP) starts a negotiation now: same intents, same λ*.
        nego.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: any(e.get("event") == "negotiation_started" and e["reason"] == "operator"
                        for e in nego.log_events()),
            WAIT, "an operator-requested negotiation",
        )  # fmt: skip
        wait_until(lambda: [e["event"] for e in nego.log_events()].count("policy_published") == 3,
                   WAIT, "a third policy")  # fmt: skip
        ready = httpx.get(f"http://127.0.0.1:{health}/ric/v1/health/ready", timeout=5)
        assert ready.status_code == 200 and ready.json() == {"ready": True, "broker": True,
                                                             "state": True}  # fmt: skip
        metrics = httpx.get(f"http://127.0.0.1:{health}/metrics", timeout=5).text
        assert 'nego_policies_total{reason="consensus"} 3.0' in metrics
        applied = [e for e in sim.log_events() if e.get("event") == "policy_applied"]
        assert [round(e["arrival_rate"], 4) for e in applied][:3] == [6.0, 3.0, 3.0]
        events = [e["event"] for e in nego.log_events()]
        assert "intents_reloaded" in events
        assert "negotiation_round" in events
    finally:
        nego.terminate()
        sim.terminate()
        rec.stop()
        broker.stop()
    assert nego.proc.returncode == 0 and sim.proc.returncode == 0
