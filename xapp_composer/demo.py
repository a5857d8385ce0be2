"""``make demo``: the whole closed loop on one machine, then a summary.

``python -m xapp_composer.demo [--requests 200] [--rate 10] [--broker embedded]`` starts

1. an MQTT broker: the embedded one (amqtt, in this process, password generated) or
   Mosquitto on a free loopback port (``--broker mosquitto``), or uses ``--broker URL``;
2. the intent rApp, ``rapp-intent serve --models minilm``, and waits for its gRPC health;
3. the xApp, ``xapp-composer run`` with the shipped policy
   ``models/policy/srl-general.onnx``, and waits for ``/ric/v1/health/ready``;
4. the emulator, ``sim-ric run``, for a bounded number of requests;

watches every request, decision and outcome on the broker, prints a summary (decisions,
rejections by reason, fallbacks, lost and duplicated decisions, mean normalised score,
request-to-decision latency p50/p99 as a subscriber sees it), and shuts everything down
(SIGTERM: each component finishes what it started). Credentials reach the components in
their environment, never on a command line. Component logs go to ``--logs DIR``
(default: a new temporary directory, printed).

:class:`ClosedLoop` is the same machinery for ``bench/bench_xapp.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lameta_proto.v1 import network_pb2
from servicekit import cli, codec
from servicekit.broker import EmbeddedBroker, quiet_amqtt_logs
from servicekit.mqtt import MqttClient, Topics, loopback_mosquitto_conf
from xapp_composer.artefacts import ROOT, SHIPPED_POLICY

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class DemoError(RuntimeError):
    """A component could not be started (the message says which and why)."""


def free_port() -> int:
    """A TCP port free a moment ago on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(pred, timeout: float, what: str, proc: Component | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if proc is not None and not proc.alive():
            raise DemoError(f"{proc.name} exited with {proc.proc.returncode}; see {proc.log}")
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


class Component:
    """One console script of this project as a subprocess, logging to a file."""

    def __init__(self, name: str, args: Sequence[str], log_dir: Path, env: dict[str, str]):
        exe = Path(sys.executable).with_name(name)
        if not exe.exists():
            raise DemoError(f"{exe} not found: install the project (make venv)")
        self.name = name
        self.log = log_dir / f"{name}.log"
        self._fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [str(exe), *args],
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=ROOT,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._fh.close()
        return self.proc.returncode


@dataclass
class Observer:
    """Watches a network's requests, decisions and outcomes on the broker."""

    url: str
    network: str = "default"
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: dict[str, int] = field(default_factory=dict)  # id -> request timestamp_ns
    decisions: dict[str, list[tuple[int, network_pb2.ControlDecision]]] = field(
        default_factory=dict
    )
    outcomes: dict[str, network_pb2.Outcome] = field(default_factory=dict)
    undecodable: int = 0

    def __post_init__(self) -> None:
        self.topics = Topics.for_network(self.network)
        self.client = MqttClient(
            self.url, "demo-observer", reconnect_min_delay_s=0.2, reconnect_max_delay_s=2.0
        )
        self._active = threading.Event()
        self.client.subscribe(self.topics.requests, self._on_request, qos=1)
        self.client.subscribe(self.topics.control, self._on_decision, qos=1)
        self.client.subscribe(self.topics.outcomes, self._on_outcome, qos=1)
        self.client.subscribe(self.client.status_topic, lambda t, p: self._active.set(), qos=1)

    def start(self, timeout: float = 10.0) -> Observer:
        self.client.start()
        if not (self.client.wait_connected(timeout) and self._active.wait(timeout)):
            raise DemoError(f"observer could not subscribe: {self.client.last_error}")
        return self

    def stop(self) -> None:
        self.client.stop(timeout=2.0)

    def _decoded(self, decode: Callable[[bytes], Any], payload: bytes) -> Any:
        """The decoded message, or None (counted) when it is not one."""
        try:
            return decode(payload)
        except codec.DecodeError:
            with self.lock:
                self.undecodable += 1
            return None

    def _on_request(self, topic: str, payload: bytes) -> None:
        if (r := self._decoded(codec.decode_request, payload)) is not None:
            with self.lock:
                self.requests.setdefault(r.request_id, r.timestamp_ns)

    def _on_decision(self, topic: str, payload: bytes) -> None:
        t = time.time_ns()
        if (d := self._decoded(codec.decode_decision, payload)) is not None:
            with self.lock:
                self.decisions.setdefault(d.request_id, []).append((t, d))

    def _on_outcome(self, topic: str, payload: bytes) -> None:
        o = self._decoded(codec.decode_outcome, payload)
        if o is not None and o.resolved:
            with self.lock:
                self.outcomes[o.request_id] = o

    def settled(self) -> int:
        """Requests with a resolving outcome."""
        with self.lock:
            return sum(1 for rid in self.requests if rid in self.outcomes)

    def summary(self) -> dict:
        """Counts, score and latency over every request seen."""
        with self.lock:
            requests = dict(self.requests)
            decisions = {k: list(v) for k, v in self.decisions.items()}
            outcomes = dict(self.outcomes)
        firsts = {rid: ds[0] for rid, ds in decisions.items() if rid in requests}
        # Request time and latency of each first decision, in request order.
        ordered = sorted(
            (requests[rid], (t - requests[rid]) / 1e6)
            for rid, (t, _) in firsts.items()
            if requests[rid] > 0
        )
        lat_ms = np.array([x for _, x in ordered])
        # When the xApp built each decision (its own clock, before publishing): the
        # difference to the latency above is the broker hop to this subscriber.
        made_ms = np.array(
            [
                (d.timestamp_ns - requests[rid]) / 1e6
                for rid, (_, d) in firsts.items()
                if requests[rid] > 0 and d.timestamp_ns > 0
            ]
        )
        rejections = Counter(
            d.rejection.split(":", 1)[0] for _, d in firsts.values() if d.rejection
        )
        # The same latency over consecutive tenths of the run: shows whether it drifts as
        # the run goes on (memory growth, queues) or is steady.
        windows = []
        for part in np.array_split(lat_ms, 10) if len(lat_ms) else []:
            if len(part):
                windows.append(
                    {
                        "requests": len(part),
                        "p50": round(float(np.percentile(part, 50)), 3),
                        "p99": round(float(np.percentile(part, 99)), 3),
                    }
                )
        chains = [d for _, d in firsts.values() if not d.rejection]
        scores = [
            o.normalized_score
            for o in outcomes.values()
            if o.code == "served" and math.isfinite(o.normalized_score)
        ]
        codes = Counter(o.code for rid, o in outcomes.items() if rid in requests)

        def pct(q: float, lat: np.ndarray = lat_ms) -> float | None:
            return round(float(np.percentile(lat, q)), 3) if len(lat) else None

        return {
            "requests": len(requests),
            "decisions": len(chains),
            "rejections": sum(rejections.values()),
            "rejections_by_reason": dict(rejections),
            "fallbacks": sum(1 for d in chains if d.fallback),
            "lost": sum(1 for rid in requests if rid not in decisions),
            "duplicated": sum(1 for rid, ds in decisions.items() if len(ds) > 1),
            "outcomes": dict(codes),
            "mean_normalized_score": round(float(np.mean(scores)), 4) if scores else None,
            "latency_ms": {
                "p50": pct(50),
                "p99": pct(99),
                "max": round(float(lat_ms.max()), 3) if len(lat_ms) else None,
                "mean": round(float(lat_ms.mean()), 3) if len(lat_ms) else None,
            },
            "decision_made_ms": {"p50": pct(50, made_ms), "p99": pct(99, made_ms)},
            "latency_by_tenth_ms": windows,
            "undecodable_messages": self.undecodable,
        }


class ClosedLoop:
    """Broker, rApp and xApp up (context manager); :meth:`run` drives the emulator.

    Args:
        policy: the xApp's ONNX policy.
        log_dir: where the components' logs go.
        broker: ``"embedded"``, ``"mosquitto"`` or an ``mqtt://`` URL.
        rapp_models: E-LAMs the rApp loads.
        network: network name in the topics.
        xapp_env: extra ``XAPP_*`` settings.
    """

    def __init__(
        self,
        policy: Path,
        log_dir: Path,
        *,
        broker: str = "embedded",
        rapp_models: str = "minilm",
        network: str = "default",
        xapp_env: dict[str, str] | None = None,
    ):
        self.policy = Path(policy)
        self.log_dir = Path(log_dir)
        self.broker_kind = broker
        self.rapp_models = rapp_models
        self.network = network
        self.xapp_env = dict(xapp_env or {})
        self.url = ""
        self.components: list[Component] = []
        self._stack = contextlib.ExitStack()
        self.observer: Observer | None = None
        self.xapp_health = 0

    # ---- start --------------------------------------------------------------------------
    def __enter__(self) -> ClosedLoop:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.url = self._start_broker()
        rapp_port = free_port()
        rapp = self._spawn(
            "rapp-intent",
            ["serve", "--models", self.rapp_models, "--port", str(rapp_port)],
            {
                "RAPP_HOST": "127.0.0.1",
                "RAPP_METRICS_PORT": "0",
                "RAPP_MEMORY_PATH": str(self.log_dir / "rapp-memory.sqlite3"),
                "RAPP_LOG_FORMAT": "json",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
            },
        )
        self.rapp_target = f"127.0.0.1:{rapp_port}"
        _wait(lambda: grpc_serving(self.rapp_target), 300, "the rApp's health SERVING", rapp)
        self.xapp_health = free_port()
        xapp = self._spawn(
            "xapp-composer",
            [
                "run",
                "--rapp",
                self.rapp_target,
                "--policy",
                str(self.policy),
                "--network",
                self.network,
                "--health-host",
                "127.0.0.1",
                "--health-port",
                str(self.xapp_health),
            ],
            {"XAPP_BROKER": self.url, "XAPP_LOG_FORMAT": "json", **self.xapp_env},
        )
        _wait(self._xapp_ready, 120, "the xApp's readiness", xapp)
        self.observer = Observer(self.url, self.network).start()

    def _start_broker(self) -> str:
        if self.broker_kind == "embedded":
            quiet_amqtt_logs()
            broker = self._stack.enter_context(EmbeddedBroker())
            return broker.url
        if self.broker_kind == "mosquitto":
            port = free_port()
            conf = self.log_dir / "mosquitto.conf"
            conf.write_text(
                loopback_mosquitto_conf(
                    port, "max_queued_messages 100000", "max_inflight_messages 100"
                )
            )
            fh = (self.log_dir / "mosquitto.log").open("ab")
            proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=fh, stderr=fh)
            self._stack.callback(_terminate, proc)
            self._stack.callback(fh.close)
            _wait(lambda: _port_open(port) or proc.poll() is not None, 10, "mosquitto")
            if proc.poll() is not None:
                raise DemoError(f"mosquitto exited; see {self.log_dir / 'mosquitto.log'}")
            return f"mqtt://127.0.0.1:{port}"
        return self.broker_kind

    def _spawn(self, name: str, args: Sequence[str], env: dict[str, str]) -> Component:
        comp = Component(name, args, self.log_dir, env)
        self.components.append(comp)
        return comp

    def _xapp_ready(self) -> bool:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.xapp_health}/ric/v1/health/ready", timeout=1)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def xapp_metrics(self) -> str:
        """The xApp's ``/metrics`` text."""
        return httpx.get(f"http://127.0.0.1:{self.xapp_health}/metrics", timeout=5).text

    # ---- run ----------------------------------------------------------------------------
    def run(
        self, requests: int, rate: float, *, seed: int = 0, timeout: float | None = None
    ) -> dict:
        """Run the emulator for ``requests`` requests at ``rate`` per second.

        Returns:
            The observer's summary, plus the emulator's exit code and the wall time.
        """
        assert self.observer is not None
        t0 = time.monotonic()
        sim = self._spawn(
            "sim-ric",
            [
                "run",
                "--network",
                self.network,
                "--rate",
                str(rate),
                "--requests",
                str(requests),
                "--seed",
                str(seed),
            ],
            {"SIM_BROKER": self.url, "SIM_LOG_FORMAT": "json"},
        )
        timeout = timeout if timeout is not None else requests / max(rate, 1e-9) * 2 + 120
        try:
            sim.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            sim.stop()
            raise DemoError(f"the emulator did not finish within {timeout:g} s") from None
        # The last outcomes are on their way: wait until every request seen is settled.
        with contextlib.suppress(DemoError):
            _wait(lambda: self.observer.settled() >= len(self.observer.requests), 10, "outcomes")
        out = self.observer.summary()
        out["emulator_exit_code"] = sim.proc.returncode
        out["seconds"] = round(time.monotonic() - t0, 1)
        return out

    # ---- stop ---------------------------------------------------------------------------
    def __exit__(self, *exc: object) -> None:
        if self.observer is not None:
            self.observer.stop()
        for comp in reversed(self.components):  # the xApp before the rApp
            comp.stop()
        self._stack.close()


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def grpc_serving(target: str) -> bool:
    """The gRPC server at ``target`` (plaintext) answers its overall health with SERVING."""
    with grpc.insecure_channel(target) as ch:
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0
            )
        except grpc.RpcError:
            return False
    return resp.status == health_pb2.HealthCheckResponse.SERVING


def format_summary(s: dict) -> str:
    """A human-readable rendering of :meth:`Observer.summary`."""
    lat = s["latency_ms"]
    lines = [
        f"requests              {s['requests']}",
        f"decisions             {s['decisions']}  (fallbacks: {s['fallbacks']})",
        f"rejections            {s['rejections']}  {s['rejections_by_reason'] or ''}",
        f"lost / duplicated     {s['lost']} / {s['duplicated']}",
        f"outcomes              {s['outcomes']}",
        f"mean normalised score {s['mean_normalized_score']}",
        f"request -> decision   p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(
        prog="python -m xapp_composer.demo", description="The closed loop, end to end."
    )
    p.add_argument(
        "--requests", type=cli.bounded(int, ge=1), default=200, help="requests the emulator issues"
    )
    p.add_argument(
        "--rate", type=cli.bounded(float, gt=0), default=10.0, help="requests per second"
    )
    p.add_argument("--broker", default="embedded", help="embedded, mosquitto or mqtt://...")
    p.add_argument("--policy", type=Path, default=SHIPPED_POLICY, help="the xApp's policy")
    p.add_argument("--seed", type=cli.bounded(int, ge=0), default=0, help="emulator seed")
    p.add_argument("--logs", type=Path, default=None, help="keep component logs here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``make demo``."""
    args = build_parser().parse_args(argv)
    policy = args.policy
    if not (policy.exists() and policy.with_suffix(".card.json").exists()):
        print(
            f"demo: no policy at {policy} (with its .card.json): the shipped policy is "
            "models/policy/srl-general.onnx; train and export one first:\n"
            "  xapp-composer train && xapp-composer export\n"
            "or pass --policy PATH",
            file=sys.stderr,
        )
        return 2
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="lameta-demo-"))
    print(
        f"demo: broker {args.broker}, rApp (minilm), xApp ({policy.name}), emulator: "
        f"{args.requests} requests at {args.rate:g}/s; logs in {log_dir}",
        file=sys.stderr,
    )
    try:
        with ClosedLoop(policy, log_dir, broker=args.broker) as loop:
            print("demo: rApp serving, xApp ready; running the emulator", file=sys.stderr)
            summary = loop.run(args.requests, args.rate, seed=args.seed)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted; components stopped", file=sys.stderr)
        return 130
    summary["logs"] = str(log_dir)
    print(json.dumps(summary) if args.json else format_summary(summary))
    ok = summary["lost"] == 0 and summary["duplicated"] == 0
    return 0 if ok and summary["emulator_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
