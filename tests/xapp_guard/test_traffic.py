"""The stack model: each scenario's traffic and the stack's reactions to it."""

from __future__ import annotations

import numpy as np
import pytest

from xapp_guard.features import INDEX, windows_of
from xapp_guard.scenarios import CLASSES, Scenario, draw
from xapp_guard.traffic import StackModel

COMMON = {"jitter": 0.0, "burst": 1, "duration_s": 10.0}


def _sum(model: StackModel, s: Scenario, seed: int = 0):
    """Per-client sums of every feature over the realisation, and the attacker names."""
    r = model.realise(s, seed)
    ws = windows_of(r.events, "default")
    sums: dict[str, np.ndarray] = {}
    for w in ws:
        sums[w.client] = sums.get(w.client, 0) + w.x
    return sums, r


def f(sums: dict, client: str, name: str) -> float:
    return float(sums[client][INDEX[name]])


@pytest.fixture
def model(cal) -> StackModel:
    return StackModel(cal)


def test_a_flood_is_decided_then_refused_as_unknown(model) -> None:
    s = Scenario("request_flood", "fast", {**COMMON, "rate_hz": 20.0, "prompt_bytes": 100})
    sums, r = _sum(model, s)
    (atk,) = r.attacker
    assert f(sums, atk, "pub_req") == 200
    # The xApp decides every flooded request; the emulator knows none of them.
    assert f(sums, atk, "orphaned") == pytest.approx(200, abs=25)
    assert f(sums, "xapp-composer-default", "refused") == pytest.approx(200, abs=25)
    codes = [e.code for e in r.events if e.kind == "publish" and e.client == "sim-ric-default"]
    assert codes.count("unknown_request") == 200


def test_memory_poisoning_is_unbacked_reports_from_a_new_channel(model) -> None:
    s = Scenario("memory_poisoning", "fast", {**COMMON, "rate_hz": 5.0, "rid": "random",
                                              "prompt_bytes": 50})  # fmt: skip
    sums, r = _sum(model, s)
    (atk,) = r.attacker
    assert atk.startswith("grpc:") and atk not in r.benign_clients
    assert f(sums, atk, "rpc_report") == f(sums, atk, "report_unbacked") == 50


def test_forged_served_outcomes_are_relayed_by_the_xapp(model) -> None:
    s = Scenario("forged_outcome", "fast", {**COMMON, "rate_hz": 2.0, "target": "decided",
                                            "reward": 40.0})  # fmt: skip
    sums, r = _sum(model, s)
    (atk,) = r.attacker
    assert f(sums, atk, "pub_out") == 20
    xapp_grpc = next(c for c in sums if c.startswith("grpc:") and c in r.benign_clients)
    # Each forged outcome of one of the xApp's decisions is reported a second time.
    assert f(sums, xapp_grpc, "report_replay") >= 15


def test_replayed_decisions_are_refused_to_the_replayer(model) -> None:
    s = Scenario("replay", "fast", {**COMMON, "rate_hz": 5.0, "what": "decisions",
                                    "delay_s": 1.0})  # fmt: skip
    sums, r = _sum(model, s)
    (atk,) = r.attacker
    assert f(sums, atk, "pub_ctl") >= 40
    assert f(sums, atk, "refused") == pytest.approx(f(sums, atk, "pub_ctl"), abs=2)


def test_replayed_requests_are_not_decided_again(model) -> None:
    calm = Scenario("benign", "fast", {"kind": "steady", "outage_s": 1.0, "rate_factor": 1.0,
                                       "duration_s": 10.0})  # fmt: skip
    base, _ = _sum(model, calm, seed=4)
    s = Scenario("replay", "fast", {**COMMON, "rate_hz": 5.0, "what": "requests",
                                    "delay_s": 1.0})  # fmt: skip
    sums, r = _sum(model, s, seed=4)
    (atk,) = r.attacker
    assert f(sums, atk, "dup_other") >= 40
    decided = f(sums, "xapp-composer-default", "pub_ctl")
    assert decided == f(sums, "sim-ric-default", "pub_req")
    assert decided == pytest.approx(f(base, "xapp-composer-default", "pub_ctl"), rel=0.5)


def test_oversize_garbage_on_control_is_refused_without_an_id(model) -> None:
    s = Scenario("oversize", "fast", {**COMMON, "rate_hz": 1.0, "size_bytes": 500_000,
                                      "topic": "control", "garbage": "yes"})  # fmt: skip
    sums, r = _sum(model, s)
    (atk,) = r.attacker
    assert f(sums, atk, "undecodable") == 10
    ws = windows_of(r.events, "default")
    assert max(w.x[INDEX["pub_bytes_max"]] for w in ws if w.client == atk) == 500_000
    refusals = [e for e in r.events if e.kind == "publish" and e.code == "garbage"]
    assert len(refusals) == 10 and not any(e.rid for e in refusals)


def test_reconnect_storm_connects_at_its_rate(model) -> None:
    s = Scenario("reconnect_storm", "fast", {**COMMON, "rate_hz": 4.0, "clean": "no",
                                             "subscribe": "no"})  # fmt: skip
    sums, r = _sum(model, s)
    (atk,) = r.attacker
    assert f(sums, atk, "connects") == f(sums, atk, "abrupt") == 40


def test_xapp_restart_catches_up_in_a_burst_on_a_new_channel(model) -> None:
    s = Scenario("benign", "fast", {"kind": "xapp_restart", "outage_s": 8.0, "rate_factor": 1.0,
                                    "duration_s": 10.0})  # fmt: skip
    r = model.realise(s, 1)
    ws = windows_of(r.events, "default")
    xapp = [w for w in ws if w.client == "xapp-composer-default"]
    peak = max(w.x[INDEX["pub_ctl"]] for w in xapp)
    assert peak >= 10  # about 8 s of requests at 3/s, decided at once
    grpc = {e.client for e in r.events if e.kind == "rpc"}
    assert len(grpc) == 2  # the restarted xApp opens a new channel
    assert not r.attacker


@pytest.mark.parametrize("cls", CLASSES)
def test_every_class_labels_the_attacker_and_nobody_else(model, cls: str) -> None:
    s = draw(cls, "fast", np.random.default_rng(5))
    ws, y, span = model.windows(s, 2)
    k = CLASSES.index(cls)
    if k:
        assert (y == k).sum() >= 3
        assert {w.client for w, label in zip(ws, y, strict=True) if label == k} <= set(
            model.realise(s, 2).attacker
        )
    else:
        assert (y == 0).all() and span.any()


def test_realisations_are_reproducible(model) -> None:
    s = draw("forged_decision", "slow", np.random.default_rng(0))
    assert model.realise(s, 9).events == model.realise(s, 9).events
    assert model.realise(s, 9).events != model.realise(s, 10).events
