"""Helpers of the guard's tests: a calibration of the stack model, a Mosquitto that logs
every packet to a file, collecting the sensor's events."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import time
from pathlib import Path

from support.mqtt import MOSQUITTO, free_port, wait_until

from servicekit.mqtt import loopback_mosquitto_conf
from xapp_guard.events import Event
from xapp_guard.sensor import MOSQUITTO_LOG_LINES
from xapp_guard.traffic import Calibration

CAL = Calibration(
    request_bytes=[90.0, 200.0], decision_bytes=[88.0, 92.0], served_bytes=[250.0, 320.0],
    state_bytes=12900.0, translate_bytes=[70.0, 180.0], report_bytes=[90.0, 200.0],
    check_bytes=25.0, health_period_s=2.0, decide_s=[0.0, 0.02], service_s=0.025,
    outcome_s=[0.0, 0.02], relay_s=[0.0, 0.02], rates=[3.0],
)  # fmt: skip
"""A calibration with the recorded stack's orders of magnitude (3 req/s, ms latencies)."""


class LoggingMosquitto:
    """Mosquitto on a free loopback port writing every packet to ``log`` (the sensor's
    source)."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.log = workdir / "mosquitto.log"
        conf = workdir / "mosquitto.conf"
        user = ["user root"] if os.geteuid() == 0 else []
        conf.write_text(loopback_mosquitto_conf(self.port, *user, f"log_dest file {self.log}",
                                                *MOSQUITTO_LOG_LINES))  # fmt: skip
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        wait_until(lambda: self.log.exists() and "running" in self.log.read_text(), 10,
                   "mosquitto running")  # fmt: skip

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def drain(events: queue.Queue[Event], until, timeout: float = 10.0) -> list[Event]:
    """Collect events from a queue until ``until(collected)`` holds (or fail)."""
    got: list[Event] = []
    deadline = time.monotonic() + timeout
    while not until(got):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; got {len(got)} events: {got[-10:]}")
        with contextlib.suppress(queue.Empty):
            got.append(events.get(timeout=0.05))
    return got
