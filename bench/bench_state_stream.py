"""Size and rate of the large-state format (keyframe in chunks + a delta per tick).

Per network size: the whole ``NetworkState`` (bytes, build + encode time), the keyframe
(chunks under the deploy broker's ``message_size_limit``, 4 MiB), and per tick of the live
dynamics (:class:`sim_ric.dynamics.Dynamics`): the delta's bytes, what publishing costs
(build + compress + encode) and what assembling costs on the xApp's side (decode,
inflate, validate, rebuild the :class:`~agentnet.network.Network`). Then the same deltas
through a real Mosquitto configured with that limit: keyframe chunks retained, deltas
published back to back, the subscriber assembling every state.

Prints one JSON object. Usage:
``python bench/bench_state_stream.py [--agents 10000,100000] [--ticks 5]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from bench_mqtt import _start_mosquitto

from agentnet.network import generate_network
from servicekit import codec
from servicekit.logs import configure_logging
from servicekit.mqtt import MqttClient, Topics
from sim_ric.dynamics import Dynamics

LIMIT = 4 * 1024 * 1024
"""``message_size_limit`` of deploy/mosquitto/mosquitto.conf."""
CHUNK = 3 * 1024 * 1024
"""sim-ric's default ``state_chunk_bytes``."""


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1e3, 1)


def measure(n: int, ticks: int, broker: str | None) -> dict:
    net = generate_network(20_000 + n, n_agents=n)
    dyn = Dynamics(net, np.random.default_rng(1))
    t0 = time.perf_counter()
    whole = codec.encode(codec.state_message(net, network="bench", seq=0, timestamp_ns=0))
    out: dict = {"agents": n, "links": net.n_links, "whole_bytes": len(whole)}
    out["whole_encode_ms"] = _ms(t0)
    t0 = time.perf_counter()
    chunks = codec.keyframe_chunks(codec.keyframe_message(net, network="bench"), CHUNK)
    key_payloads = [codec.encode(c) for c in chunks]
    out["keyframe_encode_ms"] = _ms(t0)
    out["keyframe_chunks"] = len(chunks)
    out["keyframe_bytes"] = [len(p) for p in key_payloads]
    t0 = time.perf_counter()
    asm = codec.KeyframeAssembler()
    key, kid = [asm.add(codec.decode_chunk(p)) for p in key_payloads][-1]
    out["keyframe_assemble_ms"] = _ms(t0)
    deltas, publish_ms, assemble_ms = [], [], []
    for seq in range(1, ticks + 1):
        dyn.tick()
        t0 = time.perf_counter()
        payload = codec.encode(
            codec.delta_chunk(
                codec.delta_message(net, network="bench", seq=seq, timestamp_ns=0, keyframe=kid)
            )
        )
        publish_ms.append(_ms(t0))
        t0 = time.perf_counter()
        codec.network_from_parts(key, kid, codec.decode_delta(codec.decode_chunk(payload)))
        assemble_ms.append(_ms(t0))
        deltas.append(payload)
    sizes = [len(d) for d in deltas]
    out |= {
        "delta_bytes_max": max(sizes),
        "delta_bytes_mean": round(float(np.mean(sizes))),
        "delta_publish_ms": round(float(np.mean(publish_ms)), 1),
        "delta_assemble_ms": round(float(np.mean(assemble_ms)), 1),
        "publish_per_s": round(1e3 / float(np.mean(publish_ms)), 1),
        "assemble_per_s": round(1e3 / float(np.mean(assemble_ms)), 1),
        "under_limit": max(sizes + out["keyframe_bytes"]) < LIMIT,
    }
    if broker is not None:
        out["through_mosquitto"] = through_broker(broker, key_payloads, deltas)
    return out


def through_broker(url: str, key_payloads: list[bytes], deltas: list[bytes]) -> dict:
    """Keyframe chunks (retained) then every delta, assembled by a subscriber."""
    topics = Topics.for_network("bench")
    asm = codec.KeyframeAssembler()
    got: dict = {"key": None, "states": 0, "errors": 0}
    done = threading.Event()
    lock = threading.Lock()

    def on_key(topic: str, payload: bytes) -> None:
        with lock:
            got["key"] = asm.add(codec.decode_chunk(payload)) or got["key"]

    def on_state(topic: str, payload: bytes) -> None:
        with lock:
            try:
                key, kid = got["key"]
                codec.network_from_parts(key, kid, codec.decode_delta(codec.decode_chunk(payload)))
                got["states"] += 1
            except (TypeError, codec.DecodeError):
                got["errors"] += 1
            if got["states"] + got["errors"] >= len(deltas):
                done.set()

    ready = threading.Event()
    sub = MqttClient(url, "bench-sub")
    sub.subscribe(topics.keyframes, on_key, qos=1)
    sub.subscribe(topics.state, on_state, qos=1)
    sub.subscribe("lameta/v1/status/bench-sub", lambda t, p: ready.set())
    pub = MqttClient(url, "bench-pub")
    with sub, pub:
        if not (sub.wait_connected(10) and pub.wait_connected(10) and ready.wait(10)):
            raise RuntimeError("bench clients did not connect")
        t0 = time.perf_counter()
        for i, p in enumerate(key_payloads):
            pub.publish(topics.keyframe(i), p, qos=1, retain=True)
        deadline = time.monotonic() + 120
        while got["key"] is None and time.monotonic() < deadline:
            time.sleep(0.005)
        key_ms = _ms(t0)
        t0 = time.perf_counter()
        for p in deltas:
            pub.publish(topics.state, p, qos=1)
        done.wait(300)
        elapsed = time.perf_counter() - t0
    return {
        "keyframe_delivered_ms": key_ms,
        "states_assembled": got["states"],
        "errors": got["errors"],
        "states_per_s": round(got["states"] / elapsed, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", default="10000,100000", help="comma-separated sizes")
    ap.add_argument("--ticks", type=int, default=5, help="deltas per size")
    ap.add_argument("--no-broker", action="store_true", help="skip the Mosquitto run")
    args = ap.parse_args(argv)
    configure_logging("warning")
    sizes = [int(x) for x in args.agents.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        proc = None
        url = None
        if not args.no_broker:
            proc, port = _start_mosquitto(Path(tmp), f"message_size_limit {LIMIT}")
            url = f"mqtt://127.0.0.1:{port}"
        try:
            result = {str(n): measure(n, args.ticks, url) for n in sizes}
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(10)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
