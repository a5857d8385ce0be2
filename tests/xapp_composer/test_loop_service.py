"""Parts of the xApp service without a broker: the outcome relay (bounded queue, retries,
drops), hot reload of the policy (settling, verification, rejection of a broken file),
the health server, and the settings."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading

import grpc
import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from support.loop import copy_policy, perturbed_copy, unit_policy

from lameta_proto.v1 import network_pb2
from servicekit.health import ALIVE_PATH, METRICS_PATH, READY_PATH, HealthServer
from xapp_composer.cli import main
from xapp_composer.control import ControlCore
from xapp_composer.metrics import XappMetrics
from xapp_composer.outcome_relay import OutcomeRelay
from xapp_composer.policy_watch import PolicyWatcher, policy_signature
from xapp_composer.runtime import PolicyRuntime
from xapp_composer.settings import XappSettings
from xapp_composer.translation import Translation


class FakeRpcError(grpc.RpcError):
    """What a grpc stub raises (status code and details)."""

    def __init__(self, code: grpc.StatusCode):
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return f"scripted {self._code.name}"


class ScriptedReport:
    """ReportOutcome that fails with the scripted codes first, then succeeds."""

    def __init__(self, *codes: grpc.StatusCode):
        self.codes = list(codes)
        self.reported: list[str] = []

    def __call__(self, prompt, vector, reward, app, request_id) -> int:
        if self.codes:
            raise FakeRpcError(self.codes.pop(0))
        self.reported.append(request_id)
        return len(self.reported)


def outcome(rid: str) -> network_pb2.Outcome:
    return network_pb2.Outcome(
        request_id=rid,
        code="served",
        prompt="p",
        app="qa",
        predicted=[0.25] * 4,
        reward=3.0,
        accepted=True,
    )


def test_relay_retries_while_the_rapp_is_down_and_keeps_order() -> None:
    report = ScriptedReport(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    m = XappMetrics()
    relay = OutcomeRelay(report, m, capacity=10, retry_max_s=0.05)
    for i in range(3):
        assert relay.offer(outcome(f"o{i}"))
    assert relay.run_once(0) is False and relay.run_once(0) is False  # down twice: kept
    assert len(relay) == 3
    while relay.run_once(0):
        pass
    assert report.reported == ["o0", "o1", "o2"] and len(relay) == 0
    snap = m.snapshot()
    assert snap["outcomes{relayed}"] == 3 and snap["outcome_retry"] == 2
    assert relay.memory_size == 3


def test_relay_drops_beyond_its_bound_and_what_the_rapp_refuses() -> None:
    report = ScriptedReport(grpc.StatusCode.INVALID_ARGUMENT)
    m = XappMetrics()
    relay = OutcomeRelay(report, m, capacity=2)
    assert relay.offer(outcome("a")) and relay.offer(outcome("b"))
    assert relay.offer(outcome("c")) is False  # full
    assert relay.run_once(0) is True  # "a" refused as invalid: dropped, not retried
    assert relay.run_once(0) is True
    assert report.reported == ["b"]
    snap = m.snapshot()
    assert snap["outcomes{dropped_queue_full}"] == 1 and snap["outcomes{refused_by_rapp}"] == 1


def test_relay_runs_in_the_background_and_drains_at_shutdown() -> None:
    report = ScriptedReport()
    relay = OutcomeRelay(report, XappMetrics())
    stop = threading.Event()
    t = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    t.start()
    for i in range(5):
        relay.offer(outcome(f"x{i}"))
    stop.set()
    t.join(5)
    assert relay.drain(2.0) == 0
    assert report.reported == [f"x{i}" for i in range(5)]


def test_relay_counts_what_it_cannot_report_at_shutdown() -> None:
    report = ScriptedReport(*[grpc.StatusCode.UNAVAILABLE] * 10)
    m = XappMetrics()
    relay = OutcomeRelay(report, m)
    relay.offer(outcome("z"))
    assert relay.drain(0.5) == 1
    assert m.snapshot()["outcomes{dropped_shutdown}"] == 1


class NoRapp:
    def translate(self, prompt, elam, app, request_id) -> Translation:
        return Translation((0.25, 0.25, 0.25, 0.25), elam)

    def served_models(self):
        return None


@pytest.fixture
def live_policy(tmp_path):
    path = copy_policy(unit_policy(), tmp_path / "live")
    core = ControlCore(PolicyRuntime(path), NoRapp())
    return path, core


def test_hot_reload_swaps_in_a_verified_new_policy(live_policy, tmp_path) -> None:
    path, core = live_policy
    old = core.runtime.version
    watcher = PolicyWatcher(path, core, PolicyRuntime, core.metrics)
    assert watcher.poll() == "unchanged"
    new = perturbed_copy(unit_policy(), tmp_path / "new")
    for f in new.parent.iterdir():  # what an export does: rewrite the files in place
        shutil.copy(f, path.parent / f.name)
    assert watcher.poll() == "settling"  # written just now: wait one period
    assert watcher.poll() == "loaded"
    assert core.runtime.version != old and watcher.poll() == "unchanged"
    assert core.metrics.snapshot()["reloads{loaded}"] == 1


def test_a_broken_policy_file_is_rejected_and_the_old_one_keeps_serving(live_policy) -> None:
    path, core = live_policy
    old = core.runtime
    watcher = PolicyWatcher(path, core, PolicyRuntime, core.metrics)
    with path.open("ab") as fh:
        fh.write(b"\x00corrupt")
    assert watcher.poll() == "settling"
    assert watcher.poll() == "rejected"
    assert core.runtime is old
    assert watcher.poll() == "unchanged"  # not tried again until the files change
    assert core.metrics.snapshot()["reloads{rejected}"] == 1
    # Touching a file without changing the policy: loaded, same version, nothing swapped.
    shutil.copy(unit_policy(), path)
    os.utime(path.with_suffix(".card.json"))
    assert watcher.poll() == "settling" and watcher.poll() == "same_version"
    assert core.runtime is old


def test_signature_covers_the_companion_files(tmp_path) -> None:
    path = copy_policy(unit_policy(), tmp_path / "sig")
    names = {n for n, *_ in policy_signature(path)}
    assert {"srl-general.onnx", "srl-general.encoder.onnx", "srl-general.card.json"} <= names


def test_health_paths() -> None:
    reg = CollectorRegistry()
    Counter("probe_total_things", "a counter", registry=reg).inc()
    checks = {"broker": True, "rapp": False, "policy": True}
    server = HealthServer("127.0.0.1", 0, lambda: dict(checks), reg).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert httpx.get(base + ALIVE_PATH).status_code == 200
        r = httpx.get(base + READY_PATH)
        assert r.status_code == 503 and r.json() == {"ready": False, **checks}
        checks["rapp"] = True
        r = httpx.get(base + READY_PATH)
        assert r.status_code == 200 and r.json()["ready"] is True
        assert "probe_total_things_total 1.0" in httpx.get(base + METRICS_PATH).text
        assert httpx.get(base + "/nope").status_code == 404
    finally:
        server.stop()


def test_settings_from_env_and_flags(monkeypatch) -> None:
    monkeypatch.setenv("XAPP_RAPP", "rapp.example:7000")
    monkeypatch.setenv("XAPP_MAX_STATE_AGE", "3.5")
    monkeypatch.setenv("XAPP_BROKER", "mqtt://u:p@broker:1883")
    s = XappSettings.from_cli(argparse.Namespace(max_state_age=None, rapp_deadline_ms=80.0))
    assert s.rapp == "rapp.example:7000" and s.max_state_age == 3.5 and s.rapp_deadline_ms == 80
    assert s.client_id == "xapp-composer-default"
    for bad in (
        {"rapp": "nohost"},
        {"broker": "http://x"},
        {"network": "a/b"},
        {"rapp_tls_cert": "c.pem"},
        {"reconnect_min_delay": 5, "reconnect_max_delay": 1},
    ):
        with pytest.raises(ValueError):
            XappSettings(**bad)


def test_run_refuses_a_missing_policy_with_a_clear_message(tmp_path, capsys) -> None:
    code = main(
        [
            "run",
            "--broker",
            "mqtt://127.0.0.1:1",
            "--policy",
            str(tmp_path / "no.onnx"),
            "--health-port",
            "0",
            "--log-format",
            "json",
        ]
    )
    assert code == 2
    assert "not found: train and export one" in capsys.readouterr().err


def test_run_refuses_a_policy_that_does_not_match_its_card(tmp_path, capsys) -> None:
    path = copy_policy(unit_policy(), tmp_path / "bad")
    card = json.loads(path.with_suffix(".card.json").read_text())
    card["sha256"] = "0" * 64
    path.with_suffix(".card.json").write_text(json.dumps(card))
    code = main(
        [
            "run",
            "--broker",
            "mqtt://127.0.0.1:1",
            "--policy",
            str(path),
            "--health-port",
            "0",
            "--log-format",
            "json",
        ]
    )
    assert code == 2 and "does not match its card" in capsys.readouterr().err
