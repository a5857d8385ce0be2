"""Intent rApp benchmarks: prints one JSON object.

Starts ``rapp-intent serve`` as its own process (so client and server do not share an
interpreter) and measures over gRPC on loopback:

- ``minilm`` Translate latency of single prompts, p50 / p99 (target p50 <= 25 ms);
- ``minilm`` TranslateBatch throughput, prompts per second (target >= 200);
- ``smollm2`` Translate latency, p50 (target <= 2 s);
- with ``--batching``, the cost of micro-batching: for no micro-batching
  (``RAPP_BATCH_MAX=1``) and windows of 0, 1 and 5 ms, the minilm Translate latency of one
  call at a time (low load: the wait a lone call pays) and the throughput and latency of
  ``--clients`` callers sending back to back (high load: what the shared passes gain);
- with ``--cold``, the cost of a prompt the server has not seen yet, on a server that has
  just turned SERVING: single ``minilm`` Translate latency of the first 10 new prompts,
  of the next new ones, of the same prompts again (embedding-cache hits), and of cached
  prompts sent back to back while another caller sends new ones, once per
  ``--threads`` value (``RAPP_TORCH_THREADS``), optionally with ``--busy`` processes
  spinning beside the server as the other services of a loop do.

Prompts are the project's labelled intents, each sent once (no embedding-cache hits).
The run holds the shared heavy-job lock (``/tmp/lameta-heavy.lock``) so that other heavy
jobs on the machine do not distort it; the load average is reported alongside.

Usage: ``python bench/bench_rapp.py [--single N] [--batch B] [--batches K] [--smollm2 M]
[--batching [--clients C]] [--cold [--threads 0,1,2] [--busy K]]``
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lameta_proto.v1 import intent_pb2, intent_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
INTENTS = REPO / "agentnet" / "data" / "intents"


def _prompts() -> list[tuple[str, str]]:
    rows = []
    for path in sorted(INTENTS.glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(rows))
    return [(rows[i]["prompt"], rows[i]["app"]) for i in order]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _heavy_lock(path: str):
    if not path:
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _server(models: str, tmp: Path, extra_env: dict[str, str] | None = None):
    port = _free_port()
    env = {
        **os.environ,
        "RAPP_PORT": str(port),
        "RAPP_METRICS_PORT": "0",
        "RAPP_MEMORY_PATH": str(tmp / "bench-memory.sqlite3"),
        "RAPP_LOG_LEVEL": "WARNING",
        "RAPP_MAX_CONCURRENT_RPCS": "64",
        **(extra_env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "rapp_intent.cli", "serve", "--models", models],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        health = health_pb2_grpc.HealthStub(channel)
        start = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"rapp-intent serve exited with {proc.returncode}")
            try:
                if (
                    health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    break
            except grpc.RpcError:
                pass
            if time.monotonic() - start > 900:
                raise RuntimeError("server not SERVING after 900 s")
            time.sleep(0.2)
        yield intent_pb2_grpc.IntentServiceStub(channel), time.monotonic() - start
    finally:
        channel.close()
        proc.terminate()
        proc.wait(120)


def _single(stub, prompts, model: str) -> list[float]:
    out = []
    for prompt, app in prompts:
        t = time.perf_counter()
        resp = stub.Translate(
            intent_pb2.TranslateRequest(prompt=prompt, app=app, model=model), timeout=120
        )
        out.append(time.perf_counter() - t)
        assert len(resp.preference) == 4
    return out


def _pct(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(seconds, q)) * 1e3, 2)


def _clients(stub, prompts, clients: int) -> tuple[list[float], float]:
    """``clients`` threads sending their share of ``prompts`` back to back; (latencies, s)."""
    shares = [prompts[i::clients] for i in range(clients)]
    lat: list[list[float]] = [[] for _ in shares]
    threads = [
        threading.Thread(target=lambda i=i: lat[i].extend(_single(stub, shares[i], "minilm")))
        for i in range(clients)
    ]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return [x for part in lat for x in part], time.perf_counter() - t


BATCHING = {
    "off": {"RAPP_BATCH_MAX": "1"},
    "window_0ms": {"RAPP_BATCH_WINDOW_MS": "0", "RAPP_BATCH_MAX": "16"},
    "window_1ms": {"RAPP_BATCH_WINDOW_MS": "1", "RAPP_BATCH_MAX": "16"},
    "window_5ms": {"RAPP_BATCH_WINDOW_MS": "5", "RAPP_BATCH_MAX": "16"},
}


def batching_bench(prompts, single: int, clients: int, tmp: Path) -> dict:
    """Low-load latency and high-load throughput of minilm Translate per batching setting."""
    warm, low, high = prompts[:10], prompts[10 : 10 + single], prompts[10 + single :]
    out = {}
    for name, env in BATCHING.items():
        with _server("minilm", tmp, env) as (stub, _):
            _single(stub, warm, "minilm")
            lat = _single(stub, low, "minilm")
            busy, seconds = _clients(stub, high, clients)
        out[name] = {
            "low_load_p50_ms": _pct(lat, 50),
            "low_load_p99_ms": _pct(lat, 99),
            f"{clients}_clients_per_s": round(len(high) / seconds, 1),
            f"{clients}_clients_p50_ms": _pct(busy, 50),
            f"{clients}_clients_p99_ms": _pct(busy, 99),
        }
    base = out["off"]["low_load_p50_ms"]
    for name in out:
        out[name]["low_load_p50_cost_ms"] = round(out[name]["low_load_p50_ms"] - base, 2)
    return out


def _spin() -> None:
    while True:
        pass


def cold_bench(prompts, threads: list[int], busy: int, tmp: Path) -> dict:
    """Latency of new and of cached prompts right after readiness, per thread count.

    The first half of ``prompts`` is sent new, then again (cached); the second half is
    sent new by a second caller while the first caller repeats cached prompts.
    """
    import multiprocessing

    out = {}
    half = len(prompts) // 2
    for n in threads:
        with _server("minilm", tmp, {"RAPP_TORCH_THREADS": str(n)}) as (stub, ready_s):
            spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(busy)]
            for proc in spinners:
                proc.start()
            try:
                cold = _single(stub, prompts[:half], "minilm")
                hot = _single(stub, prompts[:half], "minilm")
                # cached prompts sent back to back while new ones are being encoded
                mixed: list[float] = []
                news = threading.Thread(target=_single, args=(stub, prompts[half:], "minilm"))
                news.start()
                while news.is_alive():
                    mixed += _single(stub, prompts[:10], "minilm")
                news.join()
            finally:
                for proc in spinners:
                    proc.kill()
                    proc.join()
        out[f"threads_{n}"] = {
            "ready_s": round(ready_s, 2),
            "first_10_new_p50_ms": _pct(cold[:10], 50),
            "first_10_new_max_ms": _pct(cold[:10], 100),
            "new_p50_ms": _pct(cold[10:], 50),
            "new_p99_ms": _pct(cold[10:], 99),
            "cached_p50_ms": _pct(hot, 50),
            "cached_p99_ms": _pct(hot, 99),
            "cached_beside_new_p50_ms": _pct(mixed, 50),
            "cached_beside_new_p99_ms": _pct(mixed, 99),
            "n_new": half,
            "n_beside": len(prompts) - half,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=200, help="minilm single calls")
    parser.add_argument("--batch", type=int, default=64, help="prompts per TranslateBatch")
    parser.add_argument("--batches", type=int, default=6, help="TranslateBatch calls")
    parser.add_argument("--smollm2", type=int, default=15, help="smollm2 single calls")
    parser.add_argument("--lock", default="/tmp/lameta-heavy.lock", help="'' for no lock")
    parser.add_argument(
        "--batching", action="store_true", help="only the micro-batching comparison"
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent callers (--batching)")
    parser.add_argument("--cold", action="store_true", help="only new against cached prompts")
    parser.add_argument(
        "--threads", default="0", help="comma-separated RAPP_TORCH_THREADS values (--cold)"
    )
    parser.add_argument("--busy", type=int, default=0, help="spinning processes (--cold)")
    args = parser.parse_args()
    prompts = _prompts()
    if args.cold:
        tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-rapp-{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        threads = [int(t) for t in args.threads.split(",")]
        with _heavy_lock(args.lock):
            load = os.getloadavg()[0]
            res = cold_bench(prompts[: args.single], threads, args.busy, tmp)
        print(json.dumps({"load_avg_1m_start": load, "busy": args.busy, "cold": res}))
        return
    if args.batching:
        tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-rapp-{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        with _heavy_lock(args.lock):
            load = os.getloadavg()[0]
            res = batching_bench(prompts[: 10 + 2 * args.single], args.single, args.clients, tmp)
        print(json.dumps({"load_avg_1m_start": load, "micro_batching": res}))
        return
    need = 10 + args.single + args.batch * args.batches
    if need + args.smollm2 > len(prompts):
        raise SystemExit(f"only {len(prompts)} distinct prompts; asked for {need + args.smollm2}")
    warm, rest = prompts[:10], prompts[10:]
    single, rest = rest[: args.single], rest[args.single :]
    batched, rest = rest[: args.batch * args.batches], rest[args.batch * args.batches :]
    smol = rest[: args.smollm2]
    res: dict = {"torch_threads_env": os.environ.get("RAPP_TORCH_THREADS", "default")}
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-rapp-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    with _heavy_lock(args.lock):
        res["load_avg_1m_start"] = os.getloadavg()[0]
        with _server("minilm,smollm2", tmp) as (stub, ready_s):
            res["server_ready_s"] = round(ready_s, 2)
            _single(stub, warm, "minilm")
            lat = _single(stub, single, "minilm")
            res["minilm_single_ms_p50"] = round(float(np.percentile(lat, 50)) * 1e3, 2)
            res["minilm_single_ms_p99"] = round(float(np.percentile(lat, 99)) * 1e3, 2)
            res["minilm_single_n"] = len(lat)
            t = time.perf_counter()
            for k in range(args.batches):
                chunk = batched[k * args.batch : (k + 1) * args.batch]
                resp = stub.TranslateBatch(
                    intent_pb2.TranslateBatchRequest(
                        requests=[
                            intent_pb2.TranslateRequest(prompt=p, app=a, model="minilm")
                            for p, a in chunk
                        ]
                    ),
                    timeout=300,
                )
                assert len(resp.responses) == len(chunk)
            elapsed = time.perf_counter() - t
            res["minilm_batch_size"] = args.batch
            res["minilm_batch_prompts_per_s"] = round(len(batched) / elapsed, 1)
            _single(stub, warm[:2], "smollm2")
            lat = _single(stub, smol, "smollm2")
            res["smollm2_single_s_p50"] = round(float(np.percentile(lat, 50)), 3)
            res["smollm2_single_s_max"] = round(float(np.max(lat)), 3)
            res["smollm2_n"] = len(lat)
        res["load_avg_1m_end"] = os.getloadavg()[0]
    res["targets_met"] = {
        "minilm_single_p50_le_25ms": res["minilm_single_ms_p50"] <= 25,
        "minilm_batch_ge_200_per_s": res["minilm_batch_prompts_per_s"] >= 200,
        "smollm2_p50_le_2s": res["smollm2_single_s_p50"] <= 2,
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
