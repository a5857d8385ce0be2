"""Network-state messages per second through a real Mosquitto, N = 81 (target >= 200/s).

Starts a private Mosquitto on a free loopback port, then a publisher and a subscriber
(both ``servicekit.mqtt.MqttClient``, QoS 1 like the service). Two runs:

- ``transport``: pre-encoded state envelopes published back to back; the subscriber
  decodes every one (``codec.decode_state``). Rate = messages / (first publish -> last
  receive); latency = publish -> decoded at the subscriber.
- ``service_path``: what ``sim-ric run`` does per state: ``Emulator.tick()`` (dynamics
  and the message), ``codec.encode``, publish; same subscriber.
- ``round_trip_qos1``: the control loop's pattern at its pace (Poisson, 20/s by default):
  a responder publishes an answer from its message handler (as the xApp publishes a
  decision), the first client times request -> answer. Throughput runs hide what this
  one shows: with Nagle's algorithm on (no ``set_tcp_nodelay`` in Mosquitto, no
  ``TCP_NODELAY`` in the clients) a connection that carries a PUBACK and a PUBLISH back
  to back waits for the peer's delayed ACK, and the p99 reaches about 40 ms per hop.

Prints one JSON object. Usage: ``python bench/bench_mqtt.py [--messages M] [--agents N]``
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from agentnet.intents import LabelledIntent
from servicekit import codec
from servicekit.logs import configure_logging
from servicekit.mqtt import MqttClient, loopback_mosquitto_conf, status_topic
from sim_ric.emulator import Emulator, EmulatorConfig

TARGET_PER_S = 200.0
TOPIC = "lameta/v1/bench/state"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_mosquitto(workdir: Path, *conf_lines: str) -> tuple[subprocess.Popen, int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(loopback_mosquitto_conf(port, *conf_lines))
    proc = subprocess.Popen(
        [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"mosquitto did not start on port {port}")


class _Sink:
    """Subscriber side: decode every state, record receive times."""

    def __init__(self, expected: int):
        self.expected = expected
        self.recv_ns: dict[int, int] = {}
        self.errors = 0
        self.done = threading.Event()

    def __call__(self, topic: str, payload: bytes) -> None:
        try:
            state = codec.decode_state(payload)
        except codec.DecodeError:
            self.errors += 1
            return
        self.recv_ns[state.seq] = time.perf_counter_ns()
        if len(self.recv_ns) >= self.expected:
            self.done.set()


def _run(url: str, produce, n: int, qos: int, timeout: float, window: int) -> dict:
    """Publish ``n`` states made by ``produce(seq) -> bytes``; measure at the subscriber."""
    sink = _Sink(n)
    ready = threading.Event()
    sub = MqttClient(url, "bench-sub")
    sub.subscribe(TOPIC, sink, qos=qos)
    sub.subscribe("lameta/v1/status/bench-sub", lambda t, p: ready.set())
    pub = MqttClient(url, "bench-pub", max_inflight_messages=1000)
    with sub, pub:
        if not (sub.wait_connected(10) and pub.wait_connected(10) and ready.wait(10)):
            raise RuntimeError("bench clients did not connect")
        sent_ns: dict[int, int] = {}
        t0 = time.perf_counter_ns()
        for seq in range(1, n + 1):
            payload = produce(seq)
            # Flow control: at most `window` states in flight between the two clients, so
            # the rate is sustained throughput, not a burst the broker must drop (its
            # per-client queue is bounded).
            while seq - len(sink.recv_ns) > window and time.perf_counter_ns() - t0 < timeout * 1e9:
                time.sleep(0.0002)
            sent_ns[seq] = time.perf_counter_ns()
            pub.publish(TOPIC, payload, qos=qos)
        t_pub = time.perf_counter_ns()
        finished = sink.done.wait(timeout)
        t_end = max(sink.recv_ns.values(), default=t_pub)
    lat_ms = np.array([(sink.recv_ns[s] - sent_ns[s]) / 1e6 for s in sink.recv_ns])
    elapsed = (t_end - t0) / 1e9
    return {
        "messages": n,
        "received": len(sink.recv_ns),
        "decode_errors": sink.errors,
        "complete": bool(finished),
        "qos": qos,
        "window": window,
        "elapsed_s": round(elapsed, 4),
        "publish_s": round((t_pub - t0) / 1e9, 4),
        "states_per_s": round(len(sink.recv_ns) / elapsed, 1) if elapsed > 0 else None,
        "latency_ms_p50": round(float(np.percentile(lat_ms, 50)), 3) if len(lat_ms) else None,
        "latency_ms_p99": round(float(np.percentile(lat_ms, 99)), 3) if len(lat_ms) else None,
    }


def _round_trip(url: str, payloads: list[bytes], rate: float, timeout: float) -> dict:
    """Request -> answer through the broker, both QoS 1, requests paced at ``rate``/s."""
    back: dict[int, int] = {}
    done = threading.Event()
    asker_ready, responder_ready = threading.Event(), threading.Event()
    responder = MqttClient(url, "bench-responder")

    def answer(topic: str, payload: bytes) -> None:  # on the responder's network thread
        responder.publish(TOPIC + "/answer", payload[:8], qos=1)

    def record(topic: str, payload: bytes) -> None:
        back[int.from_bytes(payload[:8], "big")] = time.perf_counter_ns()
        if len(back) >= len(payloads):
            done.set()

    # Each client's own retained status arrives after the SUBACK of its last subscription,
    # so its data subscription before it is active by then.
    responder.subscribe(TOPIC, answer, qos=1)
    responder.subscribe(status_topic("bench-responder"), lambda t, p: responder_ready.set())
    asker = MqttClient(url, "bench-asker")
    asker.subscribe(TOPIC + "/answer", record, qos=1)
    asker.subscribe(status_topic("bench-asker"), lambda t, p: asker_ready.set())
    pace = random.Random(0)
    sent: dict[int, int] = {}
    with responder, asker:
        if not (responder_ready.wait(10) and asker_ready.wait(10)):
            raise RuntimeError("bench clients did not subscribe")
        for i, payload in enumerate(payloads):
            time.sleep(pace.expovariate(rate))
            sent[i] = time.perf_counter_ns()
            asker.publish(TOPIC, i.to_bytes(8, "big") + payload, qos=1)
        done.wait(timeout)
    rtt = np.array([(back[i] - sent[i]) / 1e6 for i in back if i in sent])
    return {
        "messages": len(payloads),
        "answered": len(back),
        "rate": rate,
        "round_trip_ms_p50": round(float(np.percentile(rtt, 50)), 3) if len(rtt) else None,
        "round_trip_ms_p99": round(float(np.percentile(rtt, 99)), 3) if len(rtt) else None,
        "round_trip_ms_max": round(float(rtt.max()), 3) if len(rtt) else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="states per run")
    parser.add_argument("--agents", type=int, default=81, help="N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--window", type=int, default=100, help="states in flight at most")
    parser.add_argument("--round-trips", type=int, default=400, help="paced request/answers")
    parser.add_argument("--round-trip-rate", type=float, default=20.0, help="requests/s")
    args = parser.parse_args(argv)
    configure_logging("WARNING", "console")  # logs to stderr; stdout is the JSON result

    intents = [LabelledIntent(prompt="bench", s=(0.25, 0.25, 0.25, 0.25), app="qa")]
    emu = Emulator(intents, EmulatorConfig(network="bench", seed=args.seed, n_agents=args.agents))
    base = emu.state()
    state_bytes = len(codec.encode(base))

    # Encoding cost alone (state message + envelope), best of a few repetitions.
    reps = 200
    t = time.perf_counter()
    for _ in range(reps):
        codec.encode(emu.state())
    encode_ms = (time.perf_counter() - t) / reps * 1e3

    def pre_encoded(seq: int, _base=base) -> bytes:
        _base.seq = seq
        return codec.encode(_base)

    payloads = [pre_encoded(s) for s in range(1, args.messages + 1)]

    def from_list(seq: int) -> bytes:
        return payloads[seq - 1]

    def service_path(seq: int) -> bytes:
        msg = emu.tick()
        msg.seq = seq  # keep the sink's keys aligned across runs
        return codec.encode(msg)

    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        proc, port = _start_mosquitto(Path(tmp))
        url = f"mqtt://127.0.0.1:{port}"
        try:
            runs = [
                _run(url, fn, args.messages, qos, args.timeout, args.window)
                for fn, qos in ((from_list, 1), (from_list, 0), (service_path, 1))
            ]
            transport, transport_qos0, service = runs
            round_trip = _round_trip(url, payloads[: args.round_trips], args.round_trip_rate,
                                     args.timeout)  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(10)

    result = {
        "bench": "mqtt_state_throughput",
        "broker": "mosquitto (local process, loopback)",
        "n_agents": emu.net.n_agents,
        "n_links": emu.net.n_links,
        "state_bytes": state_bytes,
        "encode_ms": round(encode_ms, 3),
        "target_states_per_s": TARGET_PER_S,
        "transport_qos1": transport,
        "transport_qos0": transport_qos0,
        "service_path_qos1": service,
        "round_trip_qos1": round_trip,
        "meets_target": bool(
            transport["complete"]
            and service["complete"]
            and transport["states_per_s"] >= TARGET_PER_S
            and service["states_per_s"] >= TARGET_PER_S
        ),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
