"""The gRPC IntentService in-process: every RPC, every bad input, limits, health, shutdown.

The server runs in the test process on a real localhost port with the session's minilm
E-LAM; clients use ordinary grpc channels.
"""

from __future__ import annotations

import math
import threading
import time
import uuid

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from lameta_proto.v1 import intent_pb2, intent_pb2_grpc
from rapp_intent.elam.registry import Registry
from rapp_intent.memory import angular_distance
from rapp_intent.server import SERVICE_NAME, RappServer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _start(settings, registry=None) -> RappServer:
    server = RappServer(settings, registry=registry)
    server.start()
    return server


@pytest.fixture
def server(running):
    return running()


def _stub(server: RappServer) -> intent_pb2_grpc.IntentServiceStub:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    return intent_pb2_grpc.IntentServiceStub(channel)


def _health(server: RappServer, service: str = SERVICE_NAME) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def _code(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value.code(), info.value.details()


def _long_prompts(n: int) -> list[str]:
    """Distinct 256-token prompts (nothing cached): a batch that takes a while."""
    words = [
        "render",
        "the",
        "exact",
        "figures",
        "quickly",
        "for",
        "the",
        "patient",
        "payment",
        "broadcast",
    ]
    return [
        f"{uuid.uuid4().hex} " + " ".join(words[(i + k) % len(words)] for k in range(300))
        for i in range(n)
    ]


# --- the four RPCs ------------------------------------------------------------------------
def test_translate(server):
    resp = _stub(server).Translate(
        intent_pb2.TranslateRequest(
            prompt="render the scene for my headset, no lag", app="immersive", request_id="r-1"
        ),
        timeout=30,
    )
    assert len(resp.preference) == 4
    assert math.isclose(sum(resp.preference), 1.0, abs_tol=1e-5)
    assert min(resp.preference) >= 0
    assert resp.model == "minilm" and resp.request_id == "r-1"
    assert not resp.fallback and not resp.calibrated and resp.failure == ""
    assert resp.latency_ms > 0
    assert resp.preference[2] == max(resp.preference)  # latency dominates this request


def test_translate_batch_keeps_order(server):
    prompts = ["exact account numbers, no errors", "what's 2+2, quick", "make me a logo"]
    resp = _stub(server).TranslateBatch(
        intent_pb2.TranslateBatchRequest(
            requests=[
                intent_pb2.TranslateRequest(prompt=p, request_id=str(i), app="qa")
                for i, p in enumerate(prompts)
            ]
        ),
        timeout=30,
    )
    assert [r.request_id for r in resp.responses] == ["0", "1", "2"]
    single = _stub(server).Translate(
        intent_pb2.TranslateRequest(prompt=prompts[1], app="qa"), timeout=30
    )
    assert list(resp.responses[1].preference) == pytest.approx(list(single.preference))


def test_list_models(server, minilm):
    resp = _stub(server).ListModels(intent_pb2.ListModelsRequest(), timeout=10)
    (info,) = resp.models
    assert info.id == "minilm" and info.family == "encoder" and info.artefact == "raw"
    assert info.parameters == minilm.n_parameters
    assert info.fee == pytest.approx(minilm.fee) and info.is_default
    assert {"translations", "failures", "failure_rate", "mean_latency_ms"} <= set(info.metrics)


def test_report_outcome_appends_to_memory(server):
    stub = _stub(server)
    for i in range(3):
        resp = stub.ReportOutcome(
            intent_pb2.ReportOutcomeRequest(
                prompt=f"live match {i}",
                preference=[0.1, 0.1, 0.6, 0.2],
                reward=5.0 + i,
                app="immersive",
            ),
            timeout=10,
        )
        assert resp.memory_size == i + 1
    assert server.memory.size("immersive") == 3


# --- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_kwargs", "code", "needle"),
    [
        ({"prompt": ""}, grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        ({"prompt": " \t\n "}, grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        ({"prompt": "x" * 4097}, grpc.StatusCode.INVALID_ARGUMENT, "4097 bytes"),
        ({"prompt": "é" * 2049}, grpc.StatusCode.INVALID_ARGUMENT, "limit is 4096"),
        ({"prompt": "hello\x07world"}, grpc.StatusCode.INVALID_ARGUMENT, "U+0007"),
        ({"prompt": "null\x00byte"}, grpc.StatusCode.INVALID_ARGUMENT, "control"),
        ({"prompt": "ok", "model": "gpt-9"}, grpc.StatusCode.NOT_FOUND, "gpt-9"),
        ({"prompt": "ok", "app": "banana"}, grpc.StatusCode.INVALID_ARGUMENT, "banana"),
        ({"prompt": "ok", "request_id": "r" * 200}, grpc.StatusCode.INVALID_ARGUMENT, "128"),
    ],
)
def test_translate_bad_input(server, request_kwargs, code, needle):
    got, details = _code(
        _stub(server).Translate, intent_pb2.TranslateRequest(**request_kwargs), timeout=10
    )
    assert got == code and needle in details


def test_prompt_at_the_size_limit_is_accepted(server):
    resp = _stub(server).Translate(intent_pb2.TranslateRequest(prompt="x" * 4096), timeout=30)
    assert len(resp.preference) == 4


def test_invalid_utf8_is_invalid_argument(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    raw = channel.unary_unary(
        f"/{SERVICE_NAME}/Translate",
        request_serializer=lambda b: b,
        response_deserializer=intent_pb2.TranslateResponse.FromString,
    )
    # field 1 (prompt), length 4, bytes that are not UTF-8
    code, details = _code(raw, b"\x0a\x04\xff\xfeab", timeout=10)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "UTF-8" in details


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"reward": math.nan}, "finite"),
        ({"reward": math.inf}, "finite"),
        ({"reward": -math.inf}, "finite"),
        ({"preference": [0.5, 0.5, 0.0]}, "4 entries"),
        ({"preference": [0.2] * 5}, "4 entries"),
        ({"preference": [-0.5, 0.5, 0.5, 0.5]}, "negative"),
        ({"preference": [0.3, 0.3, 0.3, 0.3]}, "sums to"),
        ({"preference": [math.nan, 0.5, 0.25, 0.25]}, "NaN"),
        ({"app": ""}, "app is required"),
        ({"app": "banana"}, "banana"),
        ({"prompt": "   "}, "empty"),
    ],
)
def test_report_outcome_bad_input(server, kwargs, needle):
    fields = {"prompt": "p", "preference": [0.25] * 4, "reward": 1.0, "app": "qa"}
    fields.update(kwargs)
    code, details = _code(
        _stub(server).ReportOutcome, intent_pb2.ReportOutcomeRequest(**fields), timeout=10
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and needle in details
    assert server.memory.size() == 0


def test_batch_bad_input_names_the_item(server):
    stub = _stub(server)
    code, details = _code(stub.TranslateBatch, intent_pb2.TranslateBatchRequest(), timeout=10)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "empty" in details
    bad = intent_pb2.TranslateBatchRequest(
        requests=[intent_pb2.TranslateRequest(prompt="fine"), intent_pb2.TranslateRequest()]
    )
    code, details = _code(stub.TranslateBatch, bad, timeout=10)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "requests[1].prompt" in details
    too_many = intent_pb2.TranslateBatchRequest(
        requests=[intent_pb2.TranslateRequest(prompt="p")] * 257
    )
    code, details = _code(stub.TranslateBatch, too_many, timeout=10)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "limit is 256" in details
    unknown = intent_pb2.TranslateBatchRequest(
        requests=[intent_pb2.TranslateRequest(prompt="p", model="nope")]
    )
    code, details = _code(stub.TranslateBatch, unknown, timeout=10)
    assert code == grpc.StatusCode.NOT_FOUND and "requests[0]" in details


# --- limits --------------------------------------------------------------------------------
def test_deadline_too_short_is_refused_before_work(server, minilm):
    stub = _stub(server)
    stub.Translate(intent_pb2.TranslateRequest(prompt="warm the latency estimate"), timeout=30)
    before = minilm.stats.snapshot()["translations"]
    batch = intent_pb2.TranslateBatchRequest(
        requests=[intent_pb2.TranslateRequest(prompt=p) for p in _long_prompts(256)]
    )
    code, _ = _code(stub.TranslateBatch, batch, timeout=0.001)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(0.2)
    assert minilm.stats.snapshot()["translations"] == before  # no work was started


def _in_flight(server: RappServer) -> float:
    return server.metrics.in_flight._value.get()


def _slow_call(server: RappServer, n: int = 96):
    """Start a slow TranslateBatch in a thread; returns (thread, result holder)."""
    result: dict = {}
    batch = intent_pb2.TranslateBatchRequest(
        requests=[intent_pb2.TranslateRequest(prompt=p) for p in _long_prompts(n)]
    )

    def run():
        try:
            result["response"] = _stub(server).TranslateBatch(batch, timeout=300)
        except grpc.RpcError as exc:
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while _in_flight(server) < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert _in_flight(server) >= 1, "the slow call never started"
    return thread, result


def test_too_many_concurrent_calls_is_resource_exhausted(running):
    server = running(max_concurrent_rpcs=1)
    thread, result = _slow_call(server)
    code, details = _code(
        _stub(server).Translate, intent_pb2.TranslateRequest(prompt="me too"), timeout=10
    )
    thread.join(300)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "concurrent" in details
    assert len(result["response"].responses) == 96
    # with the slot free again, calls go through
    assert _stub(server).Translate(intent_pb2.TranslateRequest(prompt="now"), timeout=10)


# --- health, reflection, metrics, shutdown --------------------------------------------------
def test_health_not_serving_until_loaded_then_serving_then_not_serving(make_settings):
    settings = make_settings(models=["minilm"])
    server = _start(settings)  # loads its own minilm in the background
    try:
        assert _health(server) == NOT_SERVING
        assert _health(server, "") == NOT_SERVING
        code, details = _code(
            _stub(server).Translate, intent_pb2.TranslateRequest(prompt="hi"), timeout=10
        )
        if server.registry is None:  # still loading (almost always)
            assert code == grpc.StatusCode.UNAVAILABLE and "loading" in details
        assert server.wait_ready(300)
        assert _health(server) == SERVING and _health(server, "") == SERVING
        assert _stub(server).Translate(intent_pb2.TranslateRequest(prompt="hi"), timeout=30)
    finally:
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 5})
        stopper.start()
        stopper.join(60)
    assert server.health._server_status[SERVICE_NAME] == NOT_SERVING
    assert server.health._server_status[""] == NOT_SERVING


def test_encoder_warms_up_before_ready_and_leaves_the_vectors_unchanged(make_settings, minilm):
    from rapp_intent.elam.encoder_onnx import OnnxEncoder
    from rapp_intent.elam.minilm import MiniLMELam

    settings = make_settings()
    encoder = OnnxEncoder(settings.cache_dir, warm_lengths=6)
    seen: list = []
    warm = encoder.warmup

    def observed_warmup():
        # asked over gRPC while the warm-up runs: not ready, Translate refused
        seen.append(_health(server))
        seen.append(_code(_stub(server).Translate, intent_pb2.TranslateRequest(prompt="hi"))[0])
        seen.append(warm())
        return seen[-1]

    encoder.warmup = observed_warmup
    server = _start(settings, Registry([MiniLMELam(encoder)]))
    try:
        assert server.wait_ready(120)
        assert seen == [NOT_SERVING, grpc.StatusCode.UNAVAILABLE, [(1, n) for n in range(2, 7)]]
        prompt = "render the scene for my headset, no lag"
        got = _stub(server).Translate(intent_pb2.TranslateRequest(prompt=prompt), timeout=30)
        want = minilm.translate([prompt])[0].vector
        np.testing.assert_allclose(got.preference, want, atol=1e-6)
    finally:
        server.stop(grace=5)


def test_graceful_shutdown_lets_the_call_in_flight_finish(running):
    server = running()
    thread, result = _slow_call(server)
    statuses: list[int] = []
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 120})
    stopper.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not statuses:
        status = server.health._server_status.get(SERVICE_NAME)
        if status == NOT_SERVING:
            statuses.append(status)
        time.sleep(0.01)
    assert statuses == [NOT_SERVING]  # health flips while the call is still running
    assert thread.is_alive()
    thread.join(300)
    stopper.join(300)
    assert "error" not in result, result.get("error")
    assert len(result["response"].responses) == 96
    # new calls are refused once stopped
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = intent_pb2_grpc.IntentServiceStub(ch)
        code, _ = _code(stub.Translate, intent_pb2.TranslateRequest(prompt="late"), timeout=2)
    assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_reflection_lists_the_services(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        db = ProtoReflectionDescriptorDatabase(ch)
        services = set(db.get_services())
        assert {"lameta.v1.IntentService", "grpc.health.v1.Health"} <= services
        desc = db.FindFileContainingSymbol("lameta.v1.IntentService")
        methods = {m.name for m in desc.service[0].method}
        assert methods == {"Translate", "TranslateBatch", "ReportOutcome", "ListModels"}


def test_prometheus_metrics(running, free_port):
    server = running(metrics_port=free_port())
    stub = _stub(server)
    stub.Translate(intent_pb2.TranslateRequest(prompt="hello"), timeout=10)
    _code(stub.Translate, intent_pb2.TranslateRequest(prompt=""), timeout=10)
    text = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).text
    assert 'rapp_requests_total{code="OK",method="Translate"} 1.0' in text
    assert 'rapp_requests_total{code="INVALID_ARGUMENT",method="Translate"} 1.0' in text
    assert 'rapp_translations_total{model="minilm"} 1.0' in text
    assert "rapp_request_seconds_bucket" in text
    assert "rapp_ready 1.0" in text


# --- memory end to end ---------------------------------------------------------------------
def test_divergent_translation_is_calibrated_towards_recent_mean(server, minilm):
    stub = _stub(server)
    history = [[0.15, 0.1, 0.55, 0.2], [0.2, 0.1, 0.5, 0.2], [0.15, 0.15, 0.5, 0.2]]
    for i, vec in enumerate(history * 2):
        stub.ReportOutcome(
            intent_pb2.ReportOutcomeRequest(
                prompt=f"game {i}", preference=vec, reward=7.0, app="immersive"
            ),
            timeout=10,
        )
    prompt = "Copy the wire-transfer account numbers exactly, every digit must be correct."
    raw = minilm.translate([prompt])[0].vector  # what the E-LAM says without memory
    resp = stub.Translate(intent_pb2.TranslateRequest(prompt=prompt, app="immersive"), timeout=10)
    mean = [sum(v[k] for v in history) / 3 for k in range(4)]
    assert resp.calibrated and not resp.fallback
    assert angular_distance(resp.preference, mean) < angular_distance(raw, mean)
    assert math.isclose(sum(resp.preference), 1.0, abs_tol=1e-5)
    # without an application there is no memory context: nothing is calibrated
    plain = stub.Translate(intent_pb2.TranslateRequest(prompt=prompt), timeout=10)
    assert not plain.calibrated


def test_memory_survives_a_restart(running, make_settings, minilm):
    first = running()
    stub = _stub(first)
    for i in range(4):
        stub.ReportOutcome(
            intent_pb2.ReportOutcomeRequest(
                prompt=f"ambulance {i}",
                preference=[0.1, 0.2, 0.3, 0.4],
                reward=1.0,
                app="critical",
            ),
            timeout=10,
        )
    memory_path = first.settings.memory_path
    first.stop(grace=5)
    second = running(memory_path=memory_path)
    resp = _stub(second).ReportOutcome(
        intent_pb2.ReportOutcomeRequest(
            prompt="ambulance 5", preference=[0.1, 0.2, 0.3, 0.4], reward=1.0, app="critical"
        ),
        timeout=10,
    )
    assert resp.memory_size == 5
    records = second.memory.recent("critical", 10)
    assert [r.prompt for r in records][-1] == "ambulance 0"


def test_access_log_records_each_call_with_its_peer(running, tmp_path):
    """``RAPP_ACCESS_LOG``: one JSON line per call, what a control-plane monitor reads."""
    import json

    server = running(access_log=tmp_path / "access.jsonl")
    stub = _stub(server)
    stub.ReportOutcome(
        intent_pb2.ReportOutcomeRequest(prompt="p", preference=[0.25] * 4, reward=1.0,
                                        app="qa", request_id="r-9"),
        timeout=10,
    )  # fmt: skip
    code, _ = _code(stub.Translate, intent_pb2.TranslateRequest(prompt=""), timeout=10)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    lines = [json.loads(x) for x in (tmp_path / "access.jsonl").read_text().splitlines()]
    mine = [x for x in lines if x["method"].startswith("/lameta.v1.IntentService/")]
    assert [(x["method"].rsplit("/", 1)[1], x["code"]) for x in mine] == [
        ("ReportOutcome", "OK"),
        ("Translate", "INVALID_ARGUMENT"),
    ]
    assert mine[0]["request_id"] == "r-9" and mine[0]["peer"].startswith("ipv4:127.0.0.1:")
