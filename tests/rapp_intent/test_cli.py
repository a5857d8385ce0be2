"""``rapp-intent`` end to end: eval, translate, and serve as a real process (SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
import httpx
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lameta_proto.v1 import intent_pb2, intent_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
HELDOUT = REPO / "agentnet" / "data" / "intents"


def _run(*args: str, env: dict | None = None, timeout: float = 600):
    return subprocess.run(
        [sys.executable, "-m", "rapp_intent.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


@pytest.fixture
def small_data(tmp_path) -> Path:
    rows = []
    for app in ("content", "qa", "immersive", "critical"):
        with (HELDOUT / f"{app}.jsonl").open(encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if '"heldout"' in line][:3]
    path = tmp_path / "small.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_eval_prints_the_documented_json(small_data):
    proc = _run("eval", "--data", str(small_data), "--models", "minilm", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"minilm", "even"}
    for rep in out.values():
        assert set(rep["overall"]) == {"mse", "mae", "failure_rate", "n"}
        assert rep["overall"]["n"] == 12
        assert set(rep["per_app"]) == {"content", "qa", "immersive", "critical"}
        assert all(v["n"] == 3 for v in rep["per_app"].values())
    assert out["minilm"]["overall"]["failure_rate"] == 0.0
    assert out["even"]["overall"]["mse"] > 0


def test_eval_raw_ignores_distilled_artefacts(small_data, tmp_path):
    from rapp_intent.elam.encoder_torch import TorchEncoder
    from rapp_intent.elam.minilm import MiniLMELam

    # a "distilled" head that pushes every vector towards latency: clearly worse
    model = MiniLMELam(TorchEncoder())
    with torch.no_grad():
        model.head.net[2].bias.copy_(torch.tensor([0.0, 0.0, 4.0, 0.0, 0.0]))
    model.save_head(tmp_path / "arts" / "minilm", {"metrics": {"mse": 0.5}})
    env = {"RAPP_MODELS_DIR": str(tmp_path / "arts")}
    args = ("eval", "--data", str(small_data), "--models", "minilm", "--json")
    distilled = json.loads(_run(*args, env=env).stdout)["minilm"]["overall"]
    raw = json.loads(_run(*args, "--raw", env=env).stdout)["minilm"]["overall"]
    assert distilled["mse"] > raw["mse"] + 0.01


def test_eval_refuses_a_bad_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "s": [1, 1, 1, 1], "app": "qa"}\n')
    proc = _run("eval", "--data", str(bad), "--models", "minilm", "--json")
    assert proc.returncode == 2 and "sums to" in proc.stderr
    proc = _run("eval", "--data", str(tmp_path / "missing.jsonl"), "--json")
    assert proc.returncode == 2 and "cannot read" in proc.stderr
    proc = _run("eval", "--data", str(bad), "--models", "gpt9")
    assert proc.returncode == 2 and "unknown model" in proc.stderr
    no_split = tmp_path / "dev-like.jsonl"
    no_split.write_text('{"prompt": "x", "s": [1, 0, 0, 0], "app": "qa"}\n')
    proc = _run("eval", "--data", str(no_split), "--split", "heldout", "--json")
    assert proc.returncode == 2 and "no intents of split 'heldout'" in proc.stderr
    proc = _run("eval", "--data", str(no_split), "--split", "dev")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_translate_prints_a_vector():
    proc = _run("translate", "stream the VR concert, no lag", "--app", "immersive", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["preference"]) == 4 and abs(sum(out["preference"]) - 1) < 1e-5
    assert out["model"] == "minilm" and out["fallback"] is False
    proc = _run("translate", "   ")
    assert proc.returncode == 2 and "empty" in proc.stderr
    proc = _run("translate", "hello", "--raw", "--server", "127.0.0.1:1")
    assert proc.returncode == 2 and "--raw applies to a local model" in proc.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Served:
    """A ``rapp-intent serve`` process on free ports."""

    def __init__(self, memory: Path):
        self.port, self.metrics_port = _free_port(), _free_port()
        env = {
            **os.environ,
            "RAPP_PORT": str(self.port),
            "RAPP_METRICS_PORT": str(self.metrics_port),
            "RAPP_MEMORY_PATH": str(memory),
            "RAPP_MODELS_DIR": str(memory.parent / "no-models"),
            "RAPP_LOG_FORMAT": "json",
            "RAPP_GRACE_S": "300",
            "RAPP_REPORT_IDENTITIES": "*",  # no TLS here: any caller may write
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rapp_intent.cli", "serve", "--models", "minilm"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = intent_pb2_grpc.IntentServiceStub(self.channel)

    def wait_serving(self, timeout: float = 300) -> None:
        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read()
            try:
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        raise AssertionError("the server never became SERVING")

    def report(self, prompt: str, reward: float) -> int:
        """Report an outcome of an immersive request; the memory's size after it."""
        request = intent_pb2.ReportOutcomeRequest(
            prompt=prompt, preference=[0.1, 0.1, 0.6, 0.2], reward=reward, app="immersive"
        )
        return self.stub.ReportOutcome(request, timeout=10).memory_size

    def in_flight(self) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        line = next(x for x in text.splitlines() if x.startswith("rapp_in_flight_requests "))
        return float(line.split()[1])

    def terminate(self, timeout: float = 120) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.channel.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def test_serve_shuts_down_gracefully_and_keeps_memory(tmp_path):
    memory = tmp_path / "memory.sqlite3"
    served = _Served(memory)
    try:
        served.wait_serving()
        assert served.report("vr game", 3.0) == 1
        words = [
            "keep",
            "every",
            "figure",
            "exact",
            "for",
            "the",
            "payment",
            "broadcast",
            "quickly",
        ]
        batch = intent_pb2.TranslateBatchRequest(
            requests=[
                intent_pb2.TranslateRequest(
                    prompt=uuid.uuid4().hex + " " + " ".join(words * 40), request_id=str(i)
                )
                for i in range(64)
            ]
        )
        result: dict = {}

        def slow():
            try:
                result["response"] = served.stub.TranslateBatch(batch, timeout=300)
            except grpc.RpcError as exc:
                result["error"] = exc

        thread = threading.Thread(target=slow)
        thread.start()
        deadline = time.monotonic() + 60
        while served.in_flight() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert served.in_flight() >= 1
        code = served.terminate()
        thread.join(60)
        assert code == 0
        assert "error" not in result, result.get("error")
        assert [r.request_id for r in result["response"].responses] == [str(i) for i in range(64)]
    finally:
        served.kill()

    again = _Served(memory)
    try:
        again.wait_serving()
        assert again.report("vr game 2", 4.0) == 2  # the first process's record survived
        assert again.terminate() == 0
    finally:
        again.kill()
