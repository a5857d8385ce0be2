"""``xapp-guard run`` end to end: Mosquitto with the deployment's users and ACL, the emulator
and the xApp as processes, the guard as a process logged in as ``xapp-guard``, a real flood
from a compromised emulator identity; the alert arrives on the alerts topic."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from support.loop import XappProcess, e2e_policy
from support.mqtt import ServiceProcess, free_port, wait_until
from support.processes import ManagedProcess

from servicekit.mqtt import MqttClient, parse_broker_url
from xapp_guard.attacks import TAP_IDENTITY, Attack, compromised_identity
from xapp_guard.config import TrainConfig
from xapp_guard.export import export_onnx, write_card
from xapp_guard.features import sequences
from xapp_guard.scenarios import CLASSES, draw
from xapp_guard.traffic import StackModel
from xapp_guard.train import fit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy_detector(tmp_path_factory):
    """A detector trained in seconds on the stack model's floods and benign traffic."""
    from guard_support import CAL

    model = StackModel(CAL)
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for i in range(24):
        cls = ("request_flood", "benign", "forged_decision")[i % 3]
        ws, y, _ = model.windows(draw(cls, "fast", rng), i)
        keep = y >= 0
        xs.append(sequences(ws, 8)[keep])
        ys.append(y[keep])
    x, y = np.concatenate(xs), np.concatenate(ys)
    torch.manual_seed(0)
    det, _ = fit(x, y, x, y, TrainConfig(epochs=12, hidden=16))
    path = tmp_path_factory.mktemp("guard") / "toy.onnx"
    export_onnx(det, path)
    write_card(path, det, {"alert": {"threshold": 0.5}})
    return path


def test_a_flood_raises_an_alert_naming_the_flooder(acl_mosquitto, tmp_path, toy_detector) -> None:
    mosquitto = acl_mosquitto
    sim = ServiceProcess(["--broker", mosquitto.url_for("sim-ric"), "--seed", "0", "--rate", "3"],
                         tmp_path)  # fmt: skip
    xapp = XappProcess(tmp_path, mosquitto.url_for("xapp-composer"), f"127.0.0.1:{free_port()}",
                       e2e_policy())  # fmt: skip
    metrics_port = free_port()
    guard = ManagedProcess("xapp-guard", ["run"], tmp_path, env={
        "GUARD_BROKER": mosquitto.url_for("xapp-guard"), "GUARD_BROKER_LOG": str(mosquitto.log),
        "GUARD_MODEL": str(toy_detector), "GUARD_LOG_FORMAT": "json",
        "GUARD_METRICS_PORT": str(metrics_port), "GUARD_LAG": "1.0",
    })  # fmt: skip
    alerts: list[dict] = []
    lock = threading.Lock()

    def on_alert(topic: str, payload: bytes) -> None:
        with lock:
            alerts.append(json.loads(payload))

    watcher = MqttClient(mosquitto.url_for("observer"), "observer", client_id="alert-watcher")
    watcher.subscribe("lameta/v1/default/alerts", on_alert, qos=1)
    watcher.start()
    import httpx

    def scored() -> float:
        try:
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return 0.0
        line = [x for x in text.splitlines() if x.startswith("xapp_guard_windows_total")]
        return float(line[0].split()[-1]) if line else 0.0

    try:
        # Without the rApp the xApp decides on its fallback vector (never "ready"); the
        # guard scores the emulator's and the xApp's windows before the attack.
        wait_until(lambda: scored() >= 10, 60, "the guard scoring benign windows")
        flood = draw("request_flood", "fast", np.random.default_rng(1))
        flood = type(flood)(flood.cls, "fast", {**flood.params, "rate_hz": 30.0, "burst": 1,
                                                "duration_s": 6.0})  # fmt: skip
        user = compromised_identity(flood)
        attack = Attack(flood, parse_broker_url(mosquitto.url_for(user)), "default", "probe-42",
                        seed=1, tap=parse_broker_url(mosquitto.url_for(TAP_IDENTITY)))  # fmt: skip
        done = attack.run()
        assert done["actions"] >= 150
        wait_until(lambda: any(a["client"] == "probe-42" for a in list(alerts)), 20,
                   "an alert about the flooder")  # fmt: skip
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert "xapp_guard_windows_total" in text and "xapp_guard_alerts_total" in text
    finally:
        watcher.stop()
        for p in (guard, sim, xapp):
            p.terminate()
    mine = [a for a in alerts if a["client"] == "probe-42"]
    assert {a["class"] for a in mine} & {"request_flood"}
    first = mine[0]
    assert set(first) >= {"network", "client", "class", "score", "window", "probs", "detector"}
    assert first["score"] == pytest.approx(1 - first["probs"]["benign"], abs=1e-3)
    assert set(first["probs"]) == set(CLASSES)
    assert '"guard_stopped"' in guard.logs()
    # The guard's identity may publish its alerts and its status: the broker denied nothing.
    assert "Denied PUBLISH from xapp-guard" not in mosquitto.log.read_text()
