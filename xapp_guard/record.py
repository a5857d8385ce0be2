"""``xapp-guard record``: run the real stack, inject scripted attacks, keep what the
sensor saw.

The recording is the ground truth the detector is trained and judged on. It starts
Mosquitto, the rApp (minilm), the xApp (shipped policy), the emulator and a passive
observer (:class:`~xapp_guard.stack.Stack`), with the sensor reading the broker's log,
the rApp's access log and the payloads from the first line on. Then, in time order:

- a benign warm-up;
- part ``train``: ``episodes`` fast and ``episodes`` slow episodes of every attack class,
  shuffled, each a scenario drawn from the class's ranges
  (:func:`~xapp_guard.scenarios.draw`) run by one attacker with its own client id, with
  benign gaps between them; some gaps hold a legitimate burst: an xApp restart (its
  persistent session delivers the requests it missed, a catch-up burst), an emulator
  restart at another rate, a broker restart (everyone reconnects), a dashboard client
  joining;
- part ``val``: the same with ``val_episodes`` per class and variant.

The broker admits only the deployment's users under their ACL (:mod:`xapp_guard.stack`).
Each attack episode runs as a compromised client of the identity allowed to do it
(:func:`~xapp_guard.attacks.compromised_identity`): that is what the guard is for. Each
part also holds one fast episode of every attack that writes on the bus run by a user
without the right (:data:`~xapp_guard.attacks.REFUSED_IDENTITY`); the broker refuses
its publishes, and the episode is kept with ``"refused": true`` and the number of
``Denied PUBLISH`` lines its client got, its windows left out of training and scoring.

With ``clean_requests`` the run has no attacks: the emulator runs until that many
requests were published, with the legitimate bursts spread over it (false alarms).

Writes ``events.jsonl.gz`` (every sensor event in arrival order) and ``labels.json`` (the
episodes with their client, class, parameters and times, the legitimate bursts, the
parts' time spans) into ``out``. Everything random (network, users, schedule, attack
parameters, client ids) follows ``seed``.
"""

from __future__ import annotations

import gzip
import json
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from servicekit.mqtt import MqttClient, parse_broker_url
from xapp_guard.attacks import REFUSED_IDENTITY, TAP_IDENTITY, Attack, compromised_identity
from xapp_guard.config import RecordConfig
from xapp_guard.events import Event
from xapp_guard.scenarios import ATTACKS, VARIANTS, draw
from xapp_guard.sensor import Sensor
from xapp_guard.stack import Stack

log = structlog.get_logger("xapp_guard.record")

_NAMES = ("mqtt-explorer", "paho", "node-red", "telegraf", "xapp-composer-default-2",
          "sim-ric-replica", "grafana-agent", "debug", "probe", "bridge", "tester",
          "mqttx", "collector", "monitor")  # fmt: skip
"""Client id stems of the attackers (generic tools and look-alikes of the services)."""


REFUSED_CLASSES = ("forged_decision", "forged_outcome", "request_flood", "oversize")
"""Attacks that write on the bus, run once per part by a user without the right."""


def sensor_client_id(network: str) -> str:
    """The sensor's MQTT client id (its own events are left out of the windows)."""
    return f"xapp-guard-sensor-{network}"


class _Writer:
    """Drains the sensor's queue into a JSON Lines file on a thread."""

    def __init__(self, events: queue.Queue[Event], path: Path):
        self.events = events
        self.fh = path.open("w", encoding="utf-8")
        self.count = 0
        self.denied: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="record-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not (self._stop.is_set() and self.events.empty()):
            try:
                ev = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            self.fh.write(json.dumps(ev.to_json(), separators=(",", ":")) + "\n")
            self.count += 1
            if ev.kind == "denied":
                self.denied[ev.client] = self.denied.get(ev.client, 0) + 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.fh.close()


class Recorder:
    """Runs one recording (see the module docstring)."""

    def __init__(self, cfg: RecordConfig):
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.labels: dict[str, Any] = {
            "seed": cfg.seed,
            "network": cfg.network,
            "sensor_client": sensor_client_id(cfg.network),
            "parts": [],
            "episodes": [],
            "benign_events": [],
        }
        self._names: set[str] = set()
        self.stack: Stack | None = None

    # ---- schedule -------------------------------------------------------------------
    def _client_id(self) -> str:
        while True:
            name = f"{self.rng.choice(_NAMES)}-{int(self.rng.integers(1000, 9999))}"
            if name not in self._names:
                self._names.add(name)
                return name

    def _plan(self, per_variant: int) -> list[tuple[str, Any]]:
        """Attack episodes and legitimate bursts of one part, in a seeded order."""
        items: list[tuple[str, Any]] = [
            ("attack", draw(cls, variant, self.rng))
            for cls in ATTACKS
            for variant in VARIANTS
            for _ in range(per_variant)
        ]
        items += [("refused", draw(cls, "fast", self.rng)) for cls in REFUSED_CLASSES]
        order = self.rng.permutation(len(items))
        items = [items[i] for i in order]
        bursts: list[tuple[str, Any]] = [
            ("xapp_restart", float(self.rng.uniform(2, 12))),
            ("sim_restart", float(self.rng.choice([1.5, 5.0, 8.0]))),
            ("observer", float(self.rng.uniform(10, 25))),
        ]
        if per_variant >= 2:
            bursts += [("xapp_restart", float(self.rng.uniform(2, 12))), ("broker_restart", 2.0)]
        slots = self.rng.choice(len(items), size=len(bursts), replace=False)
        plan: list[tuple[str, Any]] = []
        for i, item in enumerate(items):
            plan.append(item)
            for b, slot in zip(bursts, slots, strict=True):
                if slot == i:
                    plan.append(b)
        return plan

    # ---- actions --------------------------------------------------------------------
    def _gap(self) -> None:
        time.sleep(float(self.rng.uniform(0.7, 1.3)) * self.cfg.gap_s)
        assert self.stack is not None
        self.stack.check_alive()

    def _attack(self, scenario, part: str, refused: bool = False) -> None:
        s = self.stack
        assert s is not None
        client = self._client_id()
        user = REFUSED_IDENTITY if refused else compromised_identity(scenario)
        attack = Attack(scenario, parse_broker_url(s.url_for(user)), self.cfg.network, client,
                        rapp=s.rapp_target, seed=int(self.rng.integers(1 << 31)),
                        tap=parse_broker_url(s.url_for(TAP_IDENTITY)))  # fmt: skip
        t0 = time.time()
        done = attack.run()
        t1 = time.time()
        self.labels["episodes"].append({
            "class": scenario.cls, "variant": scenario.variant, "params": scenario.params,
            "client": client, "tap": f"{client}-tap", "identity": user, "refused": refused,
            "grpc": attack.over_grpc, "t_start": t0, "t_end": t1, "part": part, **done,
        })  # fmt: skip
        log.info("episode", cls=scenario.cls, variant=scenario.variant, client=client,
                 identity=user, refused=refused, **done)  # fmt: skip

    def _burst(self, kind: str, value: float) -> None:
        s = self.stack
        assert s is not None
        t0 = time.time()
        if kind == "xapp_restart":
            s.stop("xapp")
            time.sleep(value)
            s.start_xapp()
        elif kind == "sim_restart":
            s.stop("sim")
            time.sleep(1.0)
            s.start_sim(rate=value)
        elif kind == "broker_restart":
            s.stop("mosquitto")
            time.sleep(value)
            s.start_broker()
        elif kind == "observer":
            name = f"lameta-dashboard-{int(self.rng.integers(100, 999))}"
            c = MqttClient(s.url_for("observer"), "observer", client_id=name)
            c.subscribe(f"lameta/v1/{self.cfg.network}/#", lambda t, p: None, qos=1)
            c.start()
            time.sleep(value)
            c.stop(timeout=2.0)
        self.labels["benign_events"].append(
            {"kind": kind, "value": value, "t_start": t0, "t_end": time.time()}
        )
        log.info("legitimate_burst", kind=kind, value=value)

    def _part(self, name: str, per_variant: int) -> None:
        t0 = time.time()
        for kind, item in self._plan(per_variant):
            self._gap()
            if kind in ("attack", "refused"):
                self._attack(item, name, refused=kind == "refused")
            else:
                self._burst(kind, item)
        self._gap()
        self.labels["parts"].append({"name": name, "t_start": t0, "t_end": time.time()})

    def _clean(self) -> None:
        """No attacks: legitimate bursts spread over ``clean_requests`` requests."""
        s = self.stack
        assert s is not None
        total_s = self.cfg.clean_requests / self.cfg.rate
        bursts = [("xapp_restart", 5.0), ("observer", 20.0), ("sim_restart", 8.0),
                  ("broker_restart", 2.0), ("sim_restart", self.cfg.rate),
                  ("xapp_restart", 10.0)]  # fmt: skip
        t0 = time.time()
        for i, (kind, value) in enumerate(bursts):
            time.sleep(max(0.0, t0 + total_s * (i + 1) / (len(bursts) + 1) - time.time()))
            s.check_alive()
            self._burst(kind, value)
        time.sleep(max(0.0, t0 + total_s - time.time()))
        self.labels["parts"].append({"name": "clean", "t_start": t0, "t_end": time.time()})

    # ---- run ------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        run_dir = cfg.out / "run"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        cfg.out.mkdir(parents=True, exist_ok=True)
        stack = self.stack = Stack(run_dir, seed=cfg.seed, rate=cfg.rate, network=cfg.network,
                                   rapp=cfg.rapp, policy=cfg.policy)  # fmt: skip
        raw = cfg.out / "events.jsonl"
        sensor = writer = None
        try:
            stack.start_broker()
            sid = sensor_client_id(cfg.network)
            sensor = Sensor(cfg.network, stack.broker_log,
                            MqttClient(stack.url_for("xapp-guard"), "xapp-guard", client_id=sid),
                            stack.access_log, from_start=True).start()  # fmt: skip
            writer = _Writer(sensor.events, raw)
            if cfg.rapp:
                stack.start_rapp()
            stack.start_xapp()
            stack.start_sim()
            stack.start_observer()
            self.labels["t_ready"] = time.time()
            time.sleep(cfg.warmup_s)
            if cfg.clean_requests:
                self._clean()
            else:
                self._part(cfg.first_part, cfg.episodes)
                if cfg.val_episodes:
                    self._part("val", cfg.val_episodes)
        finally:
            stack.close()
            time.sleep(2.0)
            if sensor is not None:
                sensor.stop()
                self.labels["sensor"] = sensor.stats()
            if writer is not None:
                writer.close()
                self.labels["events"] = writer.count
                for ep in self.labels["episodes"]:
                    ep["denied"] = writer.denied.get(ep["client"], 0)
        with raw.open("rb") as src, gzip.open(cfg.out / "events.jsonl.gz", "wb", 6) as dst:
            shutil.copyfileobj(src, dst)
        raw.unlink()
        self.labels["config"] = {"rate": cfg.rate, "episodes": cfg.episodes, "seed": cfg.seed,
                                 "val_episodes": cfg.val_episodes, "rapp": cfg.rapp,
                                 "clean_requests": cfg.clean_requests}  # fmt: skip
        (cfg.out / "labels.json").write_text(json.dumps(self.labels, indent=1))
        return self.labels
