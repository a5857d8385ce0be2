"""The recording stack runs the deployment's identities: every component logs in as its
own broker user, the loop runs, the broker denies nothing of it, and the stack's own
readiness checks add no traffic."""

from __future__ import annotations

import time

from guard_support import drain

from servicekit.mqtt import MqttClient
from xapp_guard.sensor import Sensor
from xapp_guard.stack import Stack


def test_components_run_as_their_users_with_nothing_denied(tmp_path) -> None:
    stack = Stack(tmp_path / "run", seed=5, rate=5.0, rapp=False)
    stack.start_broker()
    sensor = Sensor("default", stack.broker_log,
                    MqttClient(stack.url_for("xapp-guard"), "xapp-guard", client_id="guard"),
                    None, from_start=True).start()  # fmt: skip
    try:
        stack.start_xapp()
        stack.start_sim()
        stack.start_observer()
        time.sleep(4.0)
        stack.check_alive()
    finally:
        stack.close()
        time.sleep(1.0)
        sensor.stop()
    events = drain(sensor.events, lambda g: sensor.events.empty(), timeout=5)
    log = stack.broker_log.read_text()
    assert "u'sim-ric'" in log and "u'xapp-composer'" in log and "u'observer'" in log
    published = {(e.client, e.topic.rsplit("/", 1)[-1]) for e in events if e.kind == "publish"}
    assert ("sim-ric-default", "requests") in published
    assert ("xapp-composer-default", "control") in published
    assert not [e for e in events if e.kind == "denied"]
    # The stack's own readiness checks leave no client without a CONNECT in the log.
    assert "<unknown>" not in log
