"""Helpers of the guard's tests: a calibration of the stack model, a Mosquitto that logs
every packet to a file, collecting the sensor's events."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import time
from pathlib import Path

from support.mqtt import MOSQUITTO, free_port, wait_until

from llmkit.chat import Completion
from servicekit.mqtt import loopback_mosquitto_conf
from xapp_guard.config import TrainConfig
from xapp_guard.events import Event
from xapp_guard.sensor import MOSQUITTO_LOG_LINES
from xapp_guard.stack import broker_conf, identity_lines
from xapp_guard.traffic import Calibration

CAL = Calibration(
    request_bytes=[90.0, 200.0], decision_bytes=[88.0, 92.0], served_bytes=[250.0, 320.0],
    state_bytes=12900.0, translate_bytes=[70.0, 180.0], report_bytes=[90.0, 200.0],
    check_bytes=25.0, health_period_s=2.0, decide_s=[0.0, 0.02], service_s=0.025,
    outcome_s=[0.0, 0.02], relay_s=[0.0, 0.02], rates=[3.0],
)  # fmt: skip
"""A calibration with the recorded stack's orders of magnitude (3 req/s, ms latencies)."""
TINY = TrainConfig(epochs=4, hidden=8)
"""A detector trained in seconds."""


class LoggingMosquitto:
    """Mosquitto on a free loopback port writing every packet to ``log`` (the sensor's
    source); anonymous, or with ``passwords`` only those users under the deployment's ACL."""

    def __init__(self, workdir: Path, passwords: dict[str, str] | None = None):
        self.port = free_port()
        self.log = workdir / "mosquitto.log"
        self.passwords = passwords
        conf = workdir / "mosquitto.conf"
        user = ["user root"] if os.geteuid() == 0 else []
        lines = [*user, f"log_dest file {self.log}", *MOSQUITTO_LOG_LINES]
        if passwords is None:
            conf.write_text(loopback_mosquitto_conf(self.port, *lines))
        else:
            conf.write_text(broker_conf(self.port, *identity_lines(workdir, passwords), *lines))
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        wait_until(lambda: self.log.exists() and "running" in self.log.read_text(), 10,
                   "mosquitto running")  # fmt: skip

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def url_for(self, user: str) -> str:
        """The URL with ``user``'s login (an ACL broker)."""
        assert self.passwords is not None
        return f"mqtt://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"

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


def model_corpus(directory: Path, seed: int, parts=("train", "val"), per_variant: int = 1) -> Path:
    """A small recording made by the stack model instead of the real stack, in the
    recorder's format: per part, ``per_variant`` fast and slow episodes of every attack
    class and a benign stretch, back to back."""
    import gzip
    import json

    import numpy as np

    from xapp_guard.scenarios import ATTACKS, draw
    from xapp_guard.traffic import StackModel

    model = StackModel(CAL, pre_s=4.0, post_s=2.0)
    rng = np.random.default_rng(seed)
    events: list[Event] = []
    labels = {"seed": seed, "network": "default", "sensor_client": "xapp-guard-sensor-default",
              "parts": [], "episodes": [], "benign_events": [], "config": {"rate": 3.0}}  # fmt: skip
    t = 1_800_000_000.0
    labels["t_ready"] = t
    k = 0
    for part in parts:
        start = t
        plan = [
            draw(c, v, rng) for c in ATTACKS for v in ("fast", "slow") for _ in range(per_variant)
        ]
        plan.append(draw("benign", "fast", rng))
        for s in plan:
            s = type(s)(s.cls, s.variant, {**s.params, "duration_s": 6.0})
            k += 1
            r = model.realise(s, seed * 1000 + k)
            shift = t - r.events[0].t
            moved = [Event(e.t + shift, e.kind, e.client, e.topic, e.size, e.code, e.rid, e.decoded)
                     for e in r.events]  # fmt: skip
            events += moved
            mine = [e.t for e in moved if e.client in r.attacker]
            if mine:
                (name,) = r.attacker
                labels["episodes"].append({
                    "class": s.cls, "variant": s.variant, "params": s.params, "client": name,
                    "grpc": name.startswith("grpc:"), "t_start": min(mine) - 0.01,
                    "t_end": max(mine) + 0.01, "part": part, "actions": len(mine), "errors": 0})  # fmt: skip
            t = moved[-1].t + 1.0
        labels["parts"].append({"name": part, "t_start": start, "t_end": t})
    directory.mkdir(parents=True, exist_ok=True)
    with gzip.open(directory / "events.jsonl.gz", "wt", encoding="utf-8") as fh:
        for e in events:
            fh.write(json.dumps(e.to_json()) + "\n")
    (directory / "labels.json").write_text(json.dumps(labels))
    return directory


class Perturb:
    """A deterministic stand-in language model: continues the list with its last example,
    every number scaled by a factor that cycles through 0.7, 1.3 and 40."""

    name = "perturb"

    def __init__(self) -> None:
        self.calls = 0

    def chat(self, conversations, *, max_tokens, temperature):
        out = []
        for conv in conversations:
            self.calls += 1
            factor = (0.7, 1.3, 40.0)[self.calls % 3]
            last = conv[-1]["content"].strip().splitlines()[-1]
            data = json.loads(last)

            def scale(v, factor=factor):
                if isinstance(v, bool) or not isinstance(v, int | float):
                    return v
                return float(v * factor) if isinstance(v, float) else round(v * factor)

            if isinstance(data, list):
                data = [{k: scale(v) for k, v in d.items()} for d in data]
            else:
                data = {k: scale(v) for k, v in data.items()}
            out.append(Completion(json.dumps(data)))
        return out
